"""The peer table and the head's side of the protocol: a star, the head at the centre, no gossip.

Every peer here is a paired one (`sparkd.engine.membership`): its certificate is pinned,
and the TLS layer has proved the caller holds its key before any handler runs. Workers
say hello to the head every `peer.heartbeat_s` (`sparkd.peer.session`); the head records
each worker from its hellos and dials it back only to start or stop deployment parts.
The head declares a worker DISCONNECTED when no hello came for `peer.timeout_s` (checked
every 100 ms, so the event is on time), and forgets its session: the worker's next hello
must rendezvous again, under a new epoch. Hellos carry deployment summaries from the
state loop's snapshot, so answering one does no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from sparkd import PEER_PROTOCOL_MAX, PEER_PROTOCOL_MIN, __version__
from sparkd.config import Config
from sparkd.engine.membership import Member, Membership
from sparkd.errors import PeerUnavailable, PermissionDenied, PreconditionFailed
from sparkd.events import EventBus
from sparkd.identity import Identity
from sparkd.model.deployment import Assignment, DeploymentSpec, DeploymentState, PartReport, PartSummary, WorkerInfo
from sparkd.model.observed import Snapshot
from sparkd.model.peer import PeerInfo, PeerState
from sparkd.model.versions import Versions, blocking, compare
from sparkd.peer import convert, tls
from sparkd.peer.route_guard import RouteGuard
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 30.0
#: A worker stops its units and waits for them (a rank's 30 s TimeoutStopSec= at worst, per unit).
STOP_TIMEOUT_S = 90.0
MONITOR_S = 0.1
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a PreparePart answer (limits.PEER)
CAPABILITIES = ("epochs", "versions")
CHANNEL_OPTIONS: list[tuple[str, object]] = [
    ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
    ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
    # No keepalive pings: the hellos (every heartbeat) are the liveness check, and pings more often than the
    # server allows would get the connection closed (GOAWAY too_many_pings).
    # Our session redials by itself (sparkd.peer.session); the channel's own backoff must not add to it.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


@dataclasses.dataclass
class Session:
    """The head's record of a worker's current session."""

    epoch: int
    boot_id: str


class PeerManager:
    """Tracks the paired peers and talks to them. Implements the engine's `Cluster` protocol."""

    def __init__(
        self,
        config: Config,
        identity: Identity,
        keys: tls.KeyPair,
        membership: Membership,
        guard: RouteGuard,
        snapshot: Snapshot,
        bus: EventBus,
        versions: Callable[[], Versions],
        boot_id: str,
    ) -> None:
        self.config, self.identity, self.keys, self.membership = config, identity, keys, membership
        self.guard, self.snapshot, self.bus, self.versions, self.boot_id = guard, snapshot, bus, versions, boot_id
        self._peers: dict[str, PeerInfo] = {}
        self._sessions: dict[str, Session] = {}  # the head's, by worker node ID
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._pinned: dict[str, tuple[int, str]] = {}  # node ID -> (index, certificate) its channel was made for
        self._closing: set[asyncio.Task[None]] = set()
        self.sync()

    def _forget_channel(self, node_id: str) -> None:
        """Drops the channel to a peer (closed in the background), so the next call dials afresh."""
        channel = self._channels.pop(node_id, None)
        self._pinned.pop(node_id, None)
        if channel is None:
            return
        task = asyncio.get_running_loop().create_task(channel.close(grace=None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- the table ----------------------------------------------------------------------------

    def address_of(self, index: int) -> str:
        return str(self.config.node_address(index).ip)

    @property
    def head_address(self) -> str:
        return self.address_of(0)

    def sync(self) -> None:
        """Makes the table match the paired peers (after pairing or a reset)."""
        members = {m.node_id: m for m in self.membership.peers()}
        for node_id in list(self._peers):
            if node_id not in members:
                del self._peers[node_id]
                self._sessions.pop(node_id, None)
                self._forget_channel(node_id)
                self.bus.forget("peer", node_id)
        for node_id, m in members.items():
            current = self._peers.get(node_id)
            pinned = self._pinned.get(node_id)
            if pinned != (m.index, m.cert_pem):  # a channel dials an address and trusts a certificate: both pinned
                self._forget_channel(node_id)
                self._pinned[node_id] = (m.index, m.cert_pem)
            if current is None or current.key_fingerprint != m.fingerprint or current.index != m.index:
                self._peers[node_id] = PeerInfo(
                    node_id, m.name, m.role, m.index, self.address_of(m.index), PeerState.CONNECTING, m.fingerprint
                )

    def peers(self) -> list[PeerInfo]:
        self.expire()
        return sorted(self._peers.values(), key=lambda p: p.index)

    def peer(self, node_id: str) -> PeerInfo | None:
        return self._peers.get(node_id)

    def set(self, info: PeerInfo, reason: str = "") -> None:
        self._peers[info.node_id] = info
        self.bus.transition("peer", info.name, info.state.value, reason)

    def own_hello(self) -> pb.NodeHello:
        index = self.membership.index
        return pb.NodeHello(
            node_id=self.identity.node_id,
            name=self.config.node.name,
            role=convert.role_to_proto(self.membership.role),
            index=index,
            address=self.address_of(index),
            sparkd_version=__version__,
            protocol_version=PEER_PROTOCOL_MAX,
            protocol_min=PEER_PROTOCOL_MIN,
            protocol_max=PEER_PROTOCOL_MAX,
            capabilities=CAPABILITIES,
            versions=convert.versions_to_proto(self.versions()),
            boot_id=self.boot_id,
        )

    def summaries(self) -> list[pb.DeploymentSummary]:
        return convert.summaries_to_proto(self.snapshot.deployments)

    def received(
        self, member: Member, node: pb.NodeHello, deployments: dict[str, PartSummary], epoch: int, rtt_us: int
    ) -> None:
        """Records a hello exchanged with `member` (either direction)."""
        remote = convert.versions_from_proto(node.versions)
        differences = tuple(compare(self.versions(), remote, self.config.node.name, member.name))
        old = self._peers.get(member.node_id)
        if old is not None and old.versions is not None and old.differences != differences:
            self.bus.publish("peer", member.name, "versions", "; ".join(d.message for d in differences) or "agree")
        info = PeerInfo(
            node_id=member.node_id,
            name=member.name,
            role=member.role,
            index=member.index,
            address=self.address_of(member.index),
            state=PeerState.CONNECTED,
            key_fingerprint=member.fingerprint,
            sparkd_version=node.sparkd_version,
            last_seen=time.time(),
            seen=time.monotonic(),
            rtt_us=rtt_us,
            epoch=epoch,
            protocol_version=min(node.protocol_max, PEER_PROTOCOL_MAX),
            boot_id=node.boot_id,
            versions=remote,
            differences=differences,
            deployments=deployments,
        )
        reason = f"epoch {epoch}, sparkd {node.sparkd_version}"
        if any(d.blocking for d in differences):
            reason += f"; versions differ: {differences[0].message}"
        self.set(info, reason)

    def expire(self) -> None:
        """The head declares silent workers down. (A worker's session owns its view of the head.)"""
        if self.membership.role != "head":
            return
        now = time.monotonic()
        for p in list(self._peers.values()):
            if p.state is PeerState.CONNECTED and now - p.seen > self.config.peer.timeout_s:
                self._sessions.pop(p.node_id, None)
                why = f"no hello for {now - p.seen:.1f} s (peer.timeout_s is {self.config.peer.timeout_s:g})"
                self.set(dataclasses.replace(p, state=PeerState.DISCONNECTED, last_error=why), why)

    async def monitor(self) -> None:
        """Declares silent peers down on time (the head; a worker's session does its own)."""
        while True:
            self.expire()
            await asyncio.sleep(MONITOR_S)

    # --- the head's side ----------------------------------------------------------------------

    def handle_hello(self, request: pb.HelloRequest, member: Member | None) -> pb.HelloResponse:
        """A worker's hello, received by the head; `member` is the peer the TLS layer authenticated (None only
        where the authorizer is lifted: the hello is checked all the same, then refused)."""
        if self.membership.role != "head":
            raise PreconditionFailed("this node is not the head; workers say hello to the head only")
        convert.check_hello(request.node)
        if member is None:
            raise PermissionDenied("Hello may not be called by a caller without a paired key")
        node = request.node
        deployments = convert.summaries_from_proto(request.deployments)
        expected = self.address_of(member.index)
        if node.node_id != member.node_id or node.index != member.index or node.address != expected:
            raise PreconditionFailed(
                f"hello claims node {node.node_id}, index {node.index}, address {node.address}; its key was paired "
                f"as {member.node_id}, index {member.index} ({expected})",
                peer=member.name,
            )
        if not (node.protocol_min <= PEER_PROTOCOL_MAX and node.protocol_max >= PEER_PROTOCOL_MIN):
            raise PreconditionFailed(
                f"{member.name} speaks peer protocol {node.protocol_min}..{node.protocol_max}, this head "
                f"{PEER_PROTOCOL_MIN}..{PEER_PROTOCOL_MAX}; upgrade the older sparkd",
                peer=member.name,
            )
        session = self._sessions.get(member.node_id)
        if request.rendezvous:
            session = Session(self.membership.next_epoch(), node.boot_id)
            self._sessions[member.node_id] = session
            log.info("peer.rendezvous", peer=member.name, epoch=session.epoch, boot_id=node.boot_id)
        elif session is None or request.epoch != session.epoch or node.boot_id != session.boot_id:
            raise PreconditionFailed(
                f"stale session: epoch {request.epoch} is not the current one "
                f"({session.epoch if session else 'none'}); rendezvous again",
                peer=member.name,
                stale_epoch="1",
            )
        self.received(member, node, deployments, session.epoch, 0)
        return pb.HelloResponse(node=self.own_hello(), deployments=self.summaries(), epoch=session.epoch)

    def connected_workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(p.node_id, p.name, p.index, p.address)
            for p in self.peers()
            if p.state is PeerState.CONNECTED and p.role == "worker"
        ]

    def consistency_blockers(self) -> list[str]:
        """Why the connected workers' versions refuse a deployment (empty when they agree)."""
        return [
            d.message + "; " + d.advice
            for p in self.peers()
            if p.state is PeerState.CONNECTED
            for d in blocking(list(p.differences))
        ]

    async def start_part(
        self, node_id: str, spec: DeploymentSpec, assignment: Assignment, launch_command: str = ""
    ) -> str:
        peer = self._connected(node_id)
        request = pb.StartPartRequest(
            spec=convert.spec_to_proto(spec),
            assignment=convert.assignment_to_proto(assignment),
            epoch=peer.epoch,
            launch_command=launch_command,
        )
        response = await self._call(peer, "StartPart", request, START_TIMEOUT_S)
        # Fresh evidence until the worker's next hello reports the unit itself.
        summary = PartSummary(spec.name, None, str(response.unit)[:128], str(response.unit_active_state)[:32])
        now = self._peers.get(node_id)  # read again: hellos may have come in during the call
        if now is not None:
            self._peers[node_id] = dataclasses.replace(now, deployments={**now.deployments, spec.name: summary})
        log.info("peer.part_started", peer=peer.name, unit=summary.unit, state=summary.unit_active_state)
        return summary.unit

    async def stop_part(self, node_id: str, name: str) -> str:
        peer = self._connected(node_id)
        request = pb.StopPartRequest(name=name, epoch=peer.epoch)
        response = await self._call(peer, "StopPart", request, STOP_TIMEOUT_S)
        return str(response.unit)[:256]

    def _connected(self, node_id: str) -> PeerInfo:
        self.expire()
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerUnavailable(f"no paired peer with node ID {node_id}", peer=node_id)
        if peer.state is not PeerState.CONNECTED:  # fail fast rather than wait out a timeout
            raise PeerUnavailable(f"{peer.name} ({peer.address}) is {peer.state.value.lower()}", peer=peer.name)
        return peer

    async def _call(self, peer: PeerInfo, method: str, request: object, timeout: float) -> Any:
        stub = await self.stub(peer.node_id)
        try:
            return await getattr(stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise PeerUnavailable(
                f"{method} on {peer.name} ({peer.address}) failed: {e.code().name}: "
                f"{convert.printable(str(e.details()), 500)}",
                peer=peer.name,
            ) from e

    def part_report(self, node_id: str, name: str) -> PartReport:
        """A worker's part as its hellos report it; a node that is not connected is unreachable."""
        self.expire()
        p = self._peers.get(node_id)
        silent = time.monotonic() - p.seen if p is not None and p.seen else float("inf")
        if p is None or p.state is not PeerState.CONNECTED:
            return PartReport(False, silent, None)
        return PartReport(True, silent, p.deployments.get(name))

    @property
    def head_name(self) -> str:
        """The head's node name ("" when unpaired)."""
        if self.membership.role == "head":
            return self.config.node.name
        return next((m.name for m in self.membership.peers() if m.role == "head"), "")

    def head_state(self, name: str) -> DeploymentState | None:
        head = next((p for p in self._peers.values() if p.index == 0), None)
        if head is None or head.state is not PeerState.CONNECTED:
            return None
        d = head.deployments.get(name)
        return d.state if d else None

    # --- dialing ------------------------------------------------------------------------------

    async def stub(self, node_id: str) -> pb_grpc.PeerServiceStub:
        """A stub for a paired peer, over mutual TLS pinned to its certificate, after checking that the
        kernel routes its address out of the interconnect."""
        member = self.membership.by_id(node_id)
        if member is None:
            raise PeerUnavailable(f"no paired peer with node ID {node_id}", peer=node_id)
        address = self.address_of(member.index)
        await self.guard.check(address)
        channel = self._channels.get(node_id)
        if channel is None:
            channel = grpc.aio.secure_channel(
                f"{address}:{self.config.peer.port}",
                tls.channel_credentials(self.keys, member.cert_pem),
                options=[*CHANNEL_OPTIONS, *tls.channel_options(node_id)],
            )
            self._channels[node_id] = channel
        return pb_grpc.PeerServiceStub(channel)

    async def drop_channel(self, node_id: str) -> None:
        """Closes the channel to a peer, so the next call dials afresh (after a peer was declared down)."""
        channel = self._channels.pop(node_id, None)
        if channel is not None:
            await channel.close(grace=None)

    async def close(self) -> None:
        for node_id in list(self._channels):
            await self.drop_channel(node_id)
