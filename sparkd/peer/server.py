"""The peer listener: sparkd.peer.v1 on port 7471 of this node's interconnect addresses only.

The listener binds the addresses the host configuration gives the twins, and only those
that are present on the host right now; `ensure()` (re)binds when they change (after a
host apply, or when a link comes back). It never binds a wildcard address. Every call is
authorized by the caller's role (`sparkd.rpc.authz.PEER`) and bounded
(`sparkd.rpc.limits.PEER`). In this revision the role comes from the caller's interconnect
address; mutual TLS pinned to the node keys replaces that with the peer protocol.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
import structlog

from sparkd.config import Config
from sparkd.engine.spec import validate_name
from sparkd.errors import PermissionDenied
from sparkd.model.deployment import Assignment, DeploymentSpec
from sparkd.model.unit import UnitState
from sparkd.peer import convert
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc
from sparkd.rpc import authz, limits
from sparkd.rpc.errors import Interceptor

log = structlog.get_logger(__name__)


class LocalParts(Protocol):
    """What the peer service asks of this node's deployments (the engine's DeploymentManager)."""

    async def start_part(self, spec: DeploymentSpec, assignment: Assignment) -> UnitState: ...

    async def stop_part(self, name: str) -> str: ...


def caller_ip(context: grpc.aio.ServicerContext) -> str:
    """ "ipv4:192.168.100.2:41234" -> "192.168.100.2"; anything else as it is."""
    peer = str(context.peer())
    if peer.startswith("ipv4:"):
        return peer[5:].rsplit(":", 1)[0]
    return peer[:64]


def caller_role(config: Config, ip: str) -> str:
    """The role whose address `ip` is on twin A ("" when it is no cluster address)."""
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        return ""
    subnet = config.interconnect.subnet_a
    if address not in subnet:
        return ""
    index = int(address) - int(subnet.network_address) - 1
    if index == 0:
        return "head"
    return "worker" if 1 <= index <= convert.MAX_INDEX else ""


def authorizer(config: Config) -> Callable[[str, grpc.aio.ServicerContext], None]:
    def authorize(method: str, context: grpc.aio.ServicerContext) -> None:
        ip = caller_ip(context)
        role = caller_role(config, ip)
        if not authz.peer_allowed(method, role):
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} may not be called by {role or 'an unknown node'} ({ip})",
                method=method,
                peer=ip,
            )

    return authorize


class PeerServicer(pb_grpc.PeerServiceServicer):  # type: ignore[misc]
    """Thin servicer: hellos go to the peer manager, parts to this node's deployments."""

    def __init__(self, peers: PeerManager, parts: LocalParts) -> None:
        self.peers, self.parts = peers, parts

    async def Hello(self, request: pb.HelloRequest, context: grpc.aio.ServicerContext) -> pb.HelloResponse:
        return self.peers.handle_hello(request, caller_ip(context))

    async def StartPart(self, request: pb.StartPartRequest, context: grpc.aio.ServicerContext) -> pb.StartPartResponse:
        spec = convert.spec_from_proto(request.spec)
        assignment = convert.assignment_from_proto(request.assignment, self.peers.head_address)
        state = await self.parts.start_part(spec, assignment)
        return pb.StartPartResponse(unit=state.name, unit_active_state=state.active_state)

    async def StopPart(self, request: pb.StopPartRequest, context: grpc.aio.ServicerContext) -> pb.StopPartResponse:
        name = validate_name(request.name)
        return pb.StopPartResponse(unit=await self.parts.stop_part(name))


def build_peer_server(
    servicer: PeerServicer, config: Config, authorize: Callable[[str, grpc.aio.ServicerContext], None] | None = None
) -> grpc.aio.Server:
    """The peer server; `authorize` replaces the role check only in tests that reach the handlers behind it."""
    server = grpc.aio.server(
        interceptors=[Interceptor(authorize or authorizer(config), limits.PEER.max_streams)],
        options=limits.PEER.options(),
        maximum_concurrent_rpcs=limits.PEER.max_concurrent_rpcs,
    )
    pb_grpc.add_PeerServiceServicer_to_server(servicer, server)
    return server


class PeerListener:
    """Owns the peer gRPC server and keeps it bound to the present interconnect addresses."""

    def __init__(self, servicer: PeerServicer, config: Config, addresses: Callable[[], Awaitable[list[str]]]) -> None:
        self.servicer, self.config, self.addresses = servicer, config, addresses
        self._server: grpc.aio.Server | None = None
        self._bound: list[str] = []

    async def ensure(self) -> None:
        """Binds the interconnect addresses present now; rebinds if they changed."""
        wanted = sorted(await self.addresses())
        if wanted == self._bound:
            return
        await self.stop()
        if not wanted:
            return
        server = build_peer_server(self.servicer, self.config)
        port = self.config.peer.port
        bound = []
        for address in wanted:
            try:
                if server.add_insecure_port(f"{address}:{port}"):
                    bound.append(address)
            except RuntimeError as e:
                log.warning("peer.bind_failed", address=address, port=port, error=str(e))
        await server.start()
        self._server, self._bound = server, bound
        log.info("peer.listening", addresses=bound, port=port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server, self._bound = None, []
