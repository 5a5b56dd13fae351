"""The peer listener: sparkd.peer.v1 on port 7471 of this node's interconnect addresses only.

The listener binds the addresses the host configuration gives the twins, and only those
that are present on the host right now; `ensure()` (re)binds when they change (after a
host apply, or when a link comes back). It never binds a wildcard address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import structlog

from sparkd.api import convert
from sparkd.api.errors import ErrorInterceptor
from sparkd.engine.deployments import DeploymentManager
from sparkd.errors import PermissionDenied
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)


def caller_ip(context: grpc.aio.ServicerContext) -> str:
    """ "ipv4:192.168.100.2:41234" -> "192.168.100.2"."""
    peer = str(context.peer())
    if peer.startswith("ipv4:"):
        return peer[5:].rsplit(":", 1)[0]
    return peer


class PeerServicer(pb_grpc.PeerServiceServicer):  # type: ignore[misc]
    """Thin servicer: hellos go to the peer manager, parts to the deployment manager."""

    def __init__(self, peers: PeerManager, deployments: DeploymentManager) -> None:
        self.peers, self.deployments = peers, deployments

    def _from_head(self, context: grpc.aio.ServicerContext) -> None:
        ip = caller_ip(context)
        if ip != self.peers.head_address:
            raise PermissionDenied(
                f"only the head ({self.peers.head_address}) may start or stop parts; call came from {ip}", peer=ip
            )

    async def Hello(self, request: pb.HelloRequest, context: grpc.aio.ServicerContext) -> pb.HelloResponse:
        return await self.peers.handle_hello(request, caller_ip(context))

    async def StartPart(self, request: pb.StartPartRequest, context: grpc.aio.ServicerContext) -> pb.StartPartResponse:
        self._from_head(context)
        spec = convert.spec_from_proto(request.spec)
        state = await self.deployments.start_part(spec, convert.assignment_from_proto(request.assignment))
        return pb.StartPartResponse(unit=state.name, unit_active_state=state.active_state)

    async def StopPart(self, request: pb.StopPartRequest, context: grpc.aio.ServicerContext) -> pb.StopPartResponse:
        self._from_head(context)
        return pb.StopPartResponse(unit=await self.deployments.stop_part(request.name))


class PeerListener:
    """Owns the peer gRPC server and keeps it bound to the present interconnect addresses."""

    def __init__(self, servicer: PeerServicer, port: int, addresses: Callable[[], Awaitable[list[str]]]) -> None:
        self.servicer, self.port, self.addresses = servicer, port, addresses
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
        server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        pb_grpc.add_PeerServiceServicer_to_server(self.servicer, server)
        bound = []
        for address in wanted:
            try:
                if server.add_insecure_port(f"{address}:{self.port}"):
                    bound.append(address)
            except RuntimeError as e:
                log.warning("peer.bind_failed", address=address, port=self.port, error=str(e))
        await server.start()
        self._server, self._bound = server, bound
        log.info("peer.listening", addresses=bound, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server, self._bound = None, []
