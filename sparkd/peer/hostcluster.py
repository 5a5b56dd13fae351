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
import time
from typing import Any

import structlog

from sparkd.engine.hostcfg.configurator import ACCEPT_RISK, HostConfigurator, HostRequest
from sparkd.engine.hostcfg.linkcheck import MAX_TARGETS, ping_peers
from sparkd.engine.hostcfg.pipeline import Outcome
from sparkd.errors import HostOperationFailed, InvalidSpec, PreconditionFailed, VerifyFailed
from sparkd.host.protocols import Runner
from sparkd.model.peer import PeerInfo, PeerState
from sparkd.peer.convert import host_action_to_proto
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb

log = structlog.get_logger(__name__)

#: What a worker's pending apply from the head is called (FinishHost finishes only that one).
HEAD_APPLY = "a cluster-wide host apply (from the head)"

#: How long an uncommitted node waits for the head before reverting by itself.
CONFIRM_S = 300.0
CALL_S = 60.0
#: The commit starts only while every node has at least this long left before it reverts by itself.
COMMIT_MARGIN_S = 60.0


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
        started = time.monotonic()  # the first node's revert timer starts now: the commit must come well before
        try:
            for w in workers:  # workers first
                prepare = pb.PrepareHostRequest(confirm_timeout_s=CONFIRM_S, accept_risk=request.accept_risk)
                r = await self.peers._call(w, "PrepareHost", prepare, CALL_S)
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
            if time.monotonic() - started > CONFIRM_S - COMMIT_MARGIN_S:
                raise PreconditionFailed(
                    "the cluster-wide host apply took too long to commit safely (the first node would revert by "
                    "itself soon); every node was rolled back: apply again"
                )
            if own.pending_until:
                await self.host.confirm()  # this node first: if that fails, no worker has committed yet
        except BaseException as e:
            log.warning("host.cluster_apply_failed", error=str(e))
            await asyncio.shield(self._rollback(prepared, own))
            raise
        errors = await self._commit(prepared)
        if errors:
            raise HostOperationFailed(
                "the cluster-wide host apply committed on this node but not on every worker: "
                + "; ".join(errors)
                + ". Those workers revert by themselves; run `host apply --cluster` again",
            )
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

    async def _commit(self, prepared: list[tuple[PeerInfo, pb.PrepareHostResponse]]) -> list[str]:
        errors = []
        for w, r in prepared:
            if not r.apply_id:
                continue  # nothing changed there
            try:
                done = await self.peers._call(
                    w, "FinishHost", pb.FinishHostRequest(commit=True, apply_id=r.apply_id), CALL_S
                )
                if done.apply_id != r.apply_id:
                    errors.append(f"{w.name} did not commit apply {r.apply_id}")
            except Exception as e:
                errors.append(f"{w.name}: {e}")
        if errors:
            log.error("host.cluster_commit_incomplete", errors=errors)
        return errors

    async def _rollback(self, prepared: list[tuple[PeerInfo, pb.PrepareHostResponse]], own: Outcome | None) -> None:
        errors = []
        for w, r in prepared:
            if not r.apply_id:
                continue
            try:
                await self.peers._call(w, "FinishHost", pb.FinishHostRequest(commit=False, apply_id=r.apply_id), CALL_S)
            except Exception as e:  # it reverts by itself at its deadline all the same
                errors.append(f"{w.name}: {e}")
        if own is not None and own.pending_until and self.host.pipeline.pending is not None:
            await self.host.rollback()
        if errors:
            log.error("host.cluster_rollback_incomplete", errors=errors)


class WorkerHost:
    """A worker's side of the cluster-wide apply (the peer servicer's PrepareHost, VerifyHost, FinishHost)."""

    def __init__(self, host: HostConfigurator, runner: Runner) -> None:
        self.host, self.runner = host, runner
        self._verifying = asyncio.Lock()

    async def prepare(self, request: pb.PrepareHostRequest) -> pb.PrepareHostResponse:
        timeout = request.confirm_timeout_s
        if not 5.0 <= timeout <= 600.0:
            raise InvalidSpec.one("confirm_timeout_s", f"must be 5 to 600 seconds, got {timeout:g}")
        if request.accept_risk not in ("", ACCEPT_RISK):
            raise InvalidSpec.one("accept_risk", f"must be empty or {ACCEPT_RISK!r}")
        outcome = await self.host.apply(
            HostRequest(accept_risk=request.accept_risk, confirm_timeout_s=timeout, what=HEAD_APPLY)
        )
        desired = outcome.plan.desired
        return pb.PrepareHostResponse(
            changed=outcome.changed,
            actions=[host_action_to_proto(a) for a in outcome.plan.actions] if outcome.changed else [],
            addresses=[str(t.address.ip) for t in desired.twins],
            mtu=desired.mtu,
            apply_id=outcome.apply_id if outcome.pending_until else "",
        )

    async def verify(self, request: pb.VerifyHostRequest) -> pb.VerifyHostResponse:
        if not 1280 <= request.mtu <= 9216:
            raise InvalidSpec.one("mtu", f"must be 1280 to 9216, got {request.mtu}")
        if not 1 <= len(request.addresses) <= MAX_TARGETS:
            raise InvalidSpec.one("addresses", f"must list 1 to {MAX_TARGETS} addresses, got {len(request.addresses)}")
        async with self._verifying:  # one link check at a time: each is up to 8 pings of a few seconds
            desired, _ = await self.host.desired(HostRequest())
            addresses = [str(a)[:40] for a in request.addresses]
            failures = await ping_peers(self.runner, desired, addresses, int(request.mtu))
        return pb.VerifyHostResponse(failures=failures)

    async def finish(self, request: pb.FinishHostRequest) -> pb.FinishHostResponse:
        """Commits or rolls back the head's apply `apply_id`, and nothing else (not a local operator's)."""
        pending = self.host.pipeline.pending
        if pending is None or pending.id != request.apply_id[:64] or pending.what != HEAD_APPLY:
            raise PreconditionFailed(
                f"no apply {request.apply_id[:64]!r} from the head is waiting here (it may have reverted by itself)"
            )
        apply_id = await (self.host.confirm() if request.commit else self.host.rollback())
        return pb.FinishHostResponse(apply_id=apply_id)
