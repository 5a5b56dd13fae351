"""The cluster-wide host apply, from the head: every node applies, both sides verify, all commit or none.

1. Each connected worker applies its own desired state without committing (PrepareHost: it
   reverts by itself after CONFIRM_S unless told to commit, so a head that dies mid-way
   leaves no worker half-changed), then the head does the same.
2. Each twin is verified from both sides: the head pings each worker's addresses, and each
   worker pings the head's (VerifyHost), don't-fragment at the full MTU; every call is also
   a peer round trip over the link.
3. All good: every node commits (FinishHost). Anything wrong, anywhere: every node that
   applied rolls back, the head included, and the error names what failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from sparkd.engine.hostcfg.configurator import HostConfigurator, HostRequest
from sparkd.engine.hostcfg.linkcheck import MAX_TARGETS, ping_peers
from sparkd.engine.hostcfg.pipeline import Outcome
from sparkd.errors import InvalidSpec, PreconditionFailed, VerifyFailed
from sparkd.host.protocols import Runner
from sparkd.model.peer import PeerInfo, PeerState
from sparkd.peer.convert import host_action_to_proto
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb

log = structlog.get_logger(__name__)

#: How long an uncommitted node waits for the head before reverting by itself.
CONFIRM_S = 120.0
CALL_S = 90.0


class HostCluster:
    """Implements `sparkd.api.host.ClusterApply` on the head."""

    def __init__(self, peers: PeerManager, host: HostConfigurator, runner: Runner) -> None:
        self.peers, self.host, self.runner = peers, host, runner

    def _workers(self) -> list[PeerInfo]:
        if self.peers.membership.role != "head":
            raise PreconditionFailed("a cluster-wide host apply runs on the head: run it there")
        self.peers.expire()
        workers = [p for p in self.peers.peers() if p.role == "worker"]
        down = [f"{p.name} ({p.state.value.lower()})" for p in workers if p.state is not PeerState.CONNECTED]
        if down:
            raise PreconditionFailed(
                f"every worker must be connected for a cluster-wide host apply; not connected: {', '.join(down)}"
            )
        return workers

    async def apply(self, request: HostRequest) -> tuple[list[tuple[str, bool, list[Any]]], Outcome]:
        """Every worker's (name, changed, its sparkd.v1.HostAction messages), and this node's outcome."""
        workers = self._workers()
        if request.desired_state:
            raise PreconditionFailed("a desired-state file applies to one node: run `host apply -f` without --cluster")
        prepared: list[tuple[PeerInfo, pb.PrepareHostResponse]] = []
        own: Outcome | None = None
        try:
            for w in workers:  # workers first
                r = await self.peers._call(w, "PrepareHost", pb.PrepareHostRequest(confirm_timeout_s=CONFIRM_S), CALL_S)
                prepared.append((w, r))
            own = await self.host.apply(
                HostRequest(
                    accept_risk=request.accept_risk,
                    ssh_address=request.ssh_address,
                    confirm_timeout_s=CONFIRM_S,
                    what="a cluster-wide host apply",
                )
            )
            failures = await self._verify(own, prepared)
            if failures:
                raise VerifyFailed(
                    "the cluster-wide host apply did not verify: "
                    + "; ".join(failures[:8])
                    + ". Every node was rolled back."
                )
        except BaseException as e:
            log.warning("host.cluster_apply_failed", error=str(e))
            await asyncio.shield(self._finish(prepared, own, commit=False))
            raise
        await self._finish(prepared, own, commit=True)
        return [(w.name, bool(r.changed), list(r.actions)[:512]) for w, r in prepared], own

    async def _verify(self, own: Outcome, prepared: list[tuple[PeerInfo, pb.PrepareHostResponse]]) -> list[str]:
        desired = own.plan.desired
        head_addresses = [str(t.address.ip) for t in desired.twins]
        failures: list[str] = []
        for w, r in prepared:
            if int(r.mtu) != desired.mtu:
                failures.append(f"{w.name} has MTU {r.mtu}, this node {desired.mtu}: both ends must agree")
                continue
            addresses = [str(a)[:40] for a in r.addresses[:8]]
            failures += [f"to {w.name}: {f}" for f in await ping_peers(self.runner, desired, addresses, desired.mtu)]
            back = await self.peers._call(
                w, "VerifyHost", pb.VerifyHostRequest(addresses=head_addresses, mtu=desired.mtu), CALL_S
            )
            failures += [f"from {w.name}: {str(f)[:300]}" for f in back.failures[:8]]
        return failures

    async def _finish(
        self, prepared: list[tuple[PeerInfo, pb.PrepareHostResponse]], own: Outcome | None, commit: bool
    ) -> None:
        errors = []
        for w, r in prepared:
            if not r.changed:
                continue
            try:
                await self.peers._call(w, "FinishHost", pb.FinishHostRequest(commit=commit), CALL_S)
            except Exception as e:  # it reverts by itself at its deadline all the same
                errors.append(f"{w.name}: {e}")
        if own is not None and own.pending_until:
            if commit:
                await self.host.confirm()
            else:
                await self.host.rollback()
        if errors:
            log.error("host.cluster_finish_incomplete", commit=commit, errors=errors)


class WorkerHost:
    """A worker's side of the cluster-wide apply (the peer servicer's PrepareHost, VerifyHost, FinishHost)."""

    def __init__(self, host: HostConfigurator, runner: Runner) -> None:
        self.host, self.runner = host, runner

    async def prepare(self, request: pb.PrepareHostRequest) -> pb.PrepareHostResponse:
        timeout = request.confirm_timeout_s
        if not 5.0 <= timeout <= 600.0:
            raise InvalidSpec.one("confirm_timeout_s", f"must be 5 to 600 seconds, got {timeout:g}")
        outcome = await self.host.apply(
            HostRequest(confirm_timeout_s=timeout, what="a cluster-wide host apply (from the head)")
        )
        desired = outcome.plan.desired
        return pb.PrepareHostResponse(
            changed=outcome.changed,
            actions=[host_action_to_proto(a) for a in outcome.plan.actions] if outcome.changed else [],
            addresses=[str(t.address.ip) for t in desired.twins],
            mtu=desired.mtu,
        )

    async def verify(self, request: pb.VerifyHostRequest) -> pb.VerifyHostResponse:
        if not 1280 <= request.mtu <= 9216:
            raise InvalidSpec.one("mtu", f"must be 1280 to 9216, got {request.mtu}")
        if not 1 <= len(request.addresses) <= MAX_TARGETS:
            raise InvalidSpec.one("addresses", f"must list 1 to {MAX_TARGETS} addresses, got {len(request.addresses)}")
        desired, _ = await self.host.desired(HostRequest())
        addresses = [str(a)[:40] for a in request.addresses]
        return pb.VerifyHostResponse(failures=await ping_peers(self.runner, desired, addresses, int(request.mtu)))

    async def finish(self, request: pb.FinishHostRequest) -> pb.FinishHostResponse:
        if self.host.pipeline.pending is None:
            return pb.FinishHostResponse(apply_id="")
        apply_id = await (self.host.confirm() if request.commit else self.host.rollback())
        return pb.FinishHostResponse(apply_id=apply_id)
