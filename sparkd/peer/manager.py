"""The peer table and the heartbeat: a star, the head at the centre, no gossip.

A worker says hello to the head (twin-A address .1) every heartbeat; the head records
each worker from its hellos and dials it back only to start or stop deployment parts.
A peer not heard from within `peer.timeout_s` is DISCONNECTED. Hellos carry this node's
deployment summaries from the state loop's snapshot, so answering one does no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from sparkd import PEER_PROTOCOL_VERSION, __version__
from sparkd.config import Config
from sparkd.errors import PeerUnavailable, PreconditionFailed, SparkdError
from sparkd.events import EventBus
from sparkd.identity import Identity
from sparkd.model.deployment import Assignment, DeploymentSpec, DeploymentState, PartSummary, WorkerInfo
from sparkd.model.observed import Snapshot
from sparkd.model.peer import PeerInfo, PeerState
from sparkd.peer import convert
from sparkd.peer.route_guard import RouteGuard
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

DIAL_TIMEOUT_S = 2.0
START_TIMEOUT_S = 30.0
MAX_RESPONSE_BYTES = 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
    ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


class PeerManager:
    """Tracks peers and talks to them. Implements the engine's `Cluster` protocol."""

    def __init__(
        self, config: Config, identity: Identity, guard: RouteGuard, snapshot: Snapshot, bus: EventBus
    ) -> None:
        self.config, self.identity, self.guard = config, identity, guard
        self.snapshot, self.bus = snapshot, bus
        self._peers: dict[str, PeerInfo] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.head_address = str(config.node_address(0).ip)
        if config.node.role == "worker":
            self._peers[self.head_address] = PeerInfo(
                address=self.head_address, state=PeerState.CONNECTING, role="head"
            )

    # --- identity and summaries ---------------------------------------------------------------

    def hello(self) -> pb.NodeHello:
        return pb.NodeHello(
            node_id=self.identity.node_id,
            name=self.config.node.name,
            role=convert.role_to_proto(self.config.node.role),
            index=self.config.node.index,
            address=str(self.config.node_address().ip),
            sparkd_version=__version__,
            protocol_version=PEER_PROTOCOL_VERSION,
        )

    def summaries(self) -> list[pb.DeploymentSummary]:
        return convert.summaries_to_proto(self.snapshot.deployments)

    def peers(self) -> list[PeerInfo]:
        self._expire()
        return sorted(self._peers.values(), key=lambda p: tuple(int(x) for x in p.address.split(".")))

    def _set(self, info: PeerInfo, reason: str = "") -> None:
        self._peers[info.address] = info
        self.bus.transition("peer", info.name or info.address, info.state.value, reason)

    # --- heartbeat ----------------------------------------------------------------------------

    async def heartbeat_once(self) -> None:
        """One heartbeat: a worker says hello to the head; everyone expires silent peers."""
        if self.config.node.role == "worker":
            await self._hello_head()
        self._expire()

    def _expire(self) -> None:
        now = time.time()
        for p in list(self._peers.values()):
            if p.state is PeerState.CONNECTED and now - p.last_seen > self.config.peer.timeout_s:
                self._set(dataclasses.replace(p, state=PeerState.DISCONNECTED), "no hello within peer.timeout_s")

    async def _hello_head(self) -> None:
        address = self.head_address
        current = self._peers[address]
        try:
            stub = await self._stub(address)
            request = pb.HelloRequest(node=self.hello(), deployments=self.summaries())
            t0 = time.perf_counter()
            response = await stub.Hello(request, timeout=DIAL_TIMEOUT_S)
            rtt = int((time.perf_counter() - t0) * 1e6)
            convert.check_hello(response.node)
            deployments = convert.summaries_from_proto(response.deployments)
        except (SparkdError, grpc.aio.AioRpcError) as e:
            message = e.message if isinstance(e, SparkdError) else f"{e.code().name}: {e.details()}"
            state = PeerState.DISCONNECTED if current.state is PeerState.CONNECTED else current.state
            if isinstance(e, grpc.aio.AioRpcError) and e.code() is grpc.StatusCode.FAILED_PRECONDITION:
                state = PeerState.REFUSED
            if message != current.last_error:
                log.warning("peer.hello_failed", address=address, error=message[:500])
            self._set(dataclasses.replace(current, state=state, last_error=message[:500]), message[:200])
            return
        self._record(address, response.node, deployments, rtt)

    def _record(self, address: str, node: pb.NodeHello, deployments: dict[str, PartSummary], rtt: int) -> None:
        info = PeerInfo(
            address=address,
            state=PeerState.CONNECTED,
            node_id=node.node_id,
            name=node.name,
            role=convert.role_from_proto(node.role),
            index=node.index,
            sparkd_version=node.sparkd_version,
            last_seen=time.time(),
            rtt_us=rtt,
            deployments=deployments,
        )
        self._set(info, f"hello from {node.name} ({node.node_id}, sparkd {node.sparkd_version})")

    # --- the head's side ----------------------------------------------------------------------

    def handle_hello(self, request: pb.HelloRequest, caller_ip: str) -> pb.HelloResponse:
        """A worker's hello, received by the head. Answers from the snapshot: no I/O."""
        convert.check_hello(request.node)
        deployments = convert.summaries_from_proto(request.deployments)
        node = request.node
        if self.config.node.role != "head":
            raise PreconditionFailed("this node is a worker; workers say hello to the head only")
        if node.protocol_version != PEER_PROTOCOL_VERSION:
            raise PreconditionFailed(
                f"peer protocol {node.protocol_version} is not {PEER_PROTOCOL_VERSION}; upgrade both nodes to "
                "the same sparkd version",
                peer=node.name,
            )
        expected = str(self.config.node_address(node.index).ip) if node.index >= 1 else ""
        if convert.role_from_proto(node.role) != "worker" or node.index < 1 or node.address != expected:
            raise PreconditionFailed(
                f"hello from {node.name} claims role {convert.role_from_proto(node.role)}, index {node.index}, "
                f"address {node.address}; a worker has an index from 1 and the address of its index",
                peer=node.name,
            )
        if caller_ip != node.address:
            raise PreconditionFailed(f"hello for {node.address} arrived from {caller_ip[:64]}", peer=node.name)
        self._record(node.address, node, deployments, 0)
        return pb.HelloResponse(node=self.hello(), deployments=self.summaries())

    def connected_workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(p.node_id, p.name, p.index, p.address)
            for p in self.peers()
            if p.state is PeerState.CONNECTED and p.role == "worker"
        ]

    def _by_id(self, node_id: str) -> PeerInfo:
        for p in self._peers.values():
            if p.node_id == node_id:
                return p
        raise PeerUnavailable(f"no peer with node ID {node_id}", peer=node_id)

    async def start_part(self, node_id: str, spec: DeploymentSpec, assignment: Assignment) -> str:
        peer = self._by_id(node_id)
        request = pb.StartPartRequest(
            spec=convert.spec_to_proto(spec), assignment=convert.assignment_to_proto(assignment)
        )
        response = await self._call(peer, "StartPart", request, START_TIMEOUT_S)
        # Fresh evidence until the worker's next hello reports the unit itself.
        summary = PartSummary(spec.name, None, str(response.unit)[:128], str(response.unit_active_state)[:32])
        now = self._peers.get(peer.address)  # read again: hellos may have come in during the call
        if now is not None and now.node_id == node_id:
            self._peers[peer.address] = dataclasses.replace(now, deployments={**now.deployments, spec.name: summary})
        log.info("peer.part_started", peer=peer.name, unit=summary.unit, state=summary.unit_active_state)
        return summary.unit

    async def stop_part(self, node_id: str, name: str) -> str:
        peer = self._by_id(node_id)
        response = await self._call(peer, "StopPart", pb.StopPartRequest(name=name), START_TIMEOUT_S)
        return str(response.unit)[:256]

    async def _call(self, peer: PeerInfo, method: str, request: object, timeout: float) -> Any:
        self._expire()
        state = self._peers[peer.address].state
        if state is not PeerState.CONNECTED:  # fail fast rather than wait out a timeout
            raise PeerUnavailable(f"{peer.name} ({peer.address}) is {state.value.lower()}", peer=peer.name)
        stub = await self._stub(peer.address)
        try:
            return await getattr(stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise PeerUnavailable(
                f"{method} on {peer.name} ({peer.address}) failed: {e.code().name}: {str(e.details())[:500]}",
                peer=peer.name,
            ) from e

    def worker_unit_state(self, node_id: str, name: str) -> str:
        for p in self._peers.values():
            if p.node_id == node_id and p.state is PeerState.CONNECTED:
                d = p.deployments.get(name)
                return d.unit_active_state if d else "unknown"
        return ""

    def head_state(self, name: str) -> DeploymentState | None:
        head = self._peers.get(self.head_address)
        if head is None or head.state is not PeerState.CONNECTED:
            return None
        d = head.deployments.get(name)
        return d.state if d else None

    # --- dialing ------------------------------------------------------------------------------

    async def _stub(self, address: str) -> pb_grpc.PeerServiceStub:
        """A stub for the peer at `address`, after checking the route stays on the interconnect."""
        await self.guard.check(address)
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(f"{address}:{self.config.peer.port}", options=CHANNEL_OPTIONS)
            self._channels[address] = channel
        return pb_grpc.PeerServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


async def run_heartbeat(manager: PeerManager, before: Callable[[], Awaitable[None]], interval: float) -> None:
    """Runs `before()` (e.g. make sure the listener is up) and a heartbeat, forever."""
    while True:
        try:
            await before()
            await manager.heartbeat_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer.heartbeat_error")
        await asyncio.sleep(interval)
