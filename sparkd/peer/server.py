"""The peer listener (port 7471) and the pairing listener (port 7473), on interconnect addresses only.

The peer listener serves sparkd.peer.v1.PeerService over mutual TLS: the client must
present the certificate of a paired peer (`sparkd.peer.tls`), and its role comes from
that pairing, never from its address. It binds the interconnect addresses present on
the twins now, never a wildcard, and only while some peer is paired; `ensure()` rebinds
when the addresses or the paired peers change. Every call is authorized by the caller's
role (`sparkd.rpc.authz.PEER`) and bounded (`sparkd.rpc.limits.PEER`); a worker checks
every part request against its session's epoch and its paired head.

The pairing listener serves PairingService while a pairing token is live on a head, on
the twins' IPv6 link-local addresses (a fresh node has no other) and their interconnect
addresses. Its clients are not authenticated yet, so it is small and short: 4 KiB
messages, 5 s to finish the TLS handshake, connections closed after 5 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import grpc
import structlog

from sparkd.engine.launchers.mpi import MAX_COMMAND_BYTES
from sparkd.engine.membership import Member, Membership
from sparkd.engine.spec import validate_name
from sparkd.errors import FieldViolation, InvalidSpec, PermissionDenied, PreconditionFailed
from sparkd.host.protocols import Journal
from sparkd.model.deployment import RENDEZVOUS_PORTS, Assignment, DeploymentSpec, PartPlan
from sparkd.model.unit import JournalLine, UnitState
from sparkd.peer import convert, tls
from sparkd.peer.hostcluster import WorkerHost
from sparkd.peer.manager import PeerManager
from sparkd.peer.pairing import PairingOffice
from sparkd.peer.parts import plan_to_proto
from sparkd.peer.session import WorkerSession
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc
from sparkd.rpc import authz, limits
from sparkd.rpc.errors import Interceptor

log = structlog.get_logger(__name__)

MAX_LOG_LINES = 1000


class LocalParts(Protocol):
    """What the peer service asks of this node's deployments (the engine's DeploymentManager)."""

    async def start_part(self, spec: DeploymentSpec, assignment: Assignment, launch_command: str = "") -> UnitState: ...

    async def stop_part(self, name: str) -> str: ...

    async def prepare_part(self, spec: DeploymentSpec, assignment: Assignment) -> PartPlan: ...

    def part_unit(self, name: str) -> str:
        """This node's unit of deployment `name`; NotFound when it has no part of it."""
        ...

    @property
    def journal(self) -> Journal: ...


def caller(membership: Membership, context: grpc.aio.ServicerContext) -> Member | None:
    """The paired peer whose certificate the TLS layer verified for this call."""
    cert = tls.caller_certificate(context)
    return membership.by_cert(cert) if cert else None


def authorizer(membership: Membership) -> Callable[[str, grpc.aio.ServicerContext], None]:
    def authorize(method: str, context: grpc.aio.ServicerContext) -> None:
        member = caller(membership, context)
        role = member.role if member else ""
        if not authz.peer_allowed(method, role):
            who = f"{member.name} ({role})" if member else "a caller without a paired key"
            raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} may not be called by {who}", method=method)

    return authorize


def check_assignment(assignment: Assignment, spec: DeploymentSpec) -> None:
    """A worker's own check of what the head planned: the world size of the spec, the planned port."""
    bad = []
    if assignment.nnodes != spec.world_size:
        bad.append(
            FieldViolation(
                "assignment.nnodes", f"must be the spec's world size {spec.world_size}, got {assignment.nnodes}"
            )
        )
    if assignment.master_port not in RENDEZVOUS_PORTS:
        bad.append(
            FieldViolation(
                "assignment.master_port",
                f"must be in the rendezvous range {RENDEZVOUS_PORTS.start}-{RENDEZVOUS_PORTS.stop - 1}, "
                f"got {assignment.master_port}",
            )
        )
    if bad:
        raise InvalidSpec(bad)


class PeerServicer(pb_grpc.PeerServiceServicer):  # type: ignore[misc]
    """Thin servicer: hellos go to the peer manager, parts to this node's deployments."""

    def __init__(
        self, peers: PeerManager, session: WorkerSession, parts: LocalParts, host: WorkerHost | None = None
    ) -> None:
        self.peers, self.session, self.parts, self.host = peers, session, parts, host

    def _host(self) -> WorkerHost:
        if self.host is None:
            raise PreconditionFailed("this node's host configuration is not served to peers")
        return self.host

    async def PrepareHost(
        self, request: pb.PrepareHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.PrepareHostResponse:
        return await self._host().prepare(request)

    async def VerifyHost(
        self, request: pb.VerifyHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyHostResponse:
        return await self._host().verify(request)

    async def FinishHost(
        self, request: pb.FinishHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.FinishHostResponse:
        return await self._host().finish(request)

    async def Hello(self, request: pb.HelloRequest, context: grpc.aio.ServicerContext) -> pb.HelloResponse:
        return self.peers.handle_hello(request, caller(self.peers.membership, context))

    async def StartPart(self, request: pb.StartPartRequest, context: grpc.aio.ServicerContext) -> pb.StartPartResponse:
        self.session.check_epoch(request.epoch)
        spec = convert.spec_from_proto(request.spec)
        assignment = convert.assignment_from_proto(request.assignment, self.peers.head_address)
        check_assignment(assignment, spec)
        if len(request.launch_command) > MAX_COMMAND_BYTES:
            raise InvalidSpec.one("launch_command", f"must be at most {MAX_COMMAND_BYTES} bytes")
        state = await self.parts.start_part(spec, assignment, request.launch_command)
        return pb.StartPartResponse(unit=state.name, unit_active_state=state.active_state)

    async def StopPart(self, request: pb.StopPartRequest, context: grpc.aio.ServicerContext) -> pb.StopPartResponse:
        self.session.check_epoch(request.epoch)
        name = validate_name(request.name)
        return pb.StopPartResponse(unit=await self.parts.stop_part(name))

    async def PreparePart(
        self, request: pb.PreparePartRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreparePartResponse:
        self.session.check_epoch(request.epoch)
        spec = convert.spec_from_proto(request.spec)
        assignment = convert.assignment_from_proto(request.assignment, self.peers.head_address)
        check_assignment(assignment, spec)
        return plan_to_proto(await self.parts.prepare_part(spec, assignment))

    async def PartLogs(
        self, request: pb.PartLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PartLogsResponse]:
        self.session.check_epoch(request.epoch)
        unit = self.parts.part_unit(validate_name(request.name))
        if not 1 <= request.lines <= MAX_LOG_LINES:
            raise InvalidSpec.one("lines", f"must be from 1 to {MAX_LOG_LINES}, got {request.lines}")
        if request.follow:
            lines: AsyncIterator[JournalLine] = self.parts.journal.follow(unit, request.lines)
        else:
            lines = _each(await self.parts.journal.tail(unit, request.lines))
        async for line in lines:
            yield pb.PartLogsResponse(unit=line.unit, time=line.timestamp, message=line.message)


async def _each(lines: list[JournalLine]) -> AsyncIterator[JournalLine]:
    for line in lines:
        yield line


class PairingServicer(pb_grpc.PairingServiceServicer):  # type: ignore[misc]
    def __init__(self, office: PairingOffice) -> None:
        self.office = office

    async def Join(self, request: pb.JoinRequest, context: grpc.aio.ServicerContext) -> pb.JoinResponse:
        return await self.office.join(request, str(context.peer())[:80])


def build_peer_server(
    servicer: PeerServicer,
    membership: Membership,
    authorize: Callable[[str, grpc.aio.ServicerContext], None] | None = None,
) -> grpc.aio.Server:
    """The peer server; `authorize` replaces the role check only in tests that reach the handlers behind it."""
    server = grpc.aio.server(
        interceptors=[Interceptor(authorize or authorizer(membership), limits.PEER.max_streams)],
        options=limits.PEER.options(),  # its handshake deadline (3 s) is within the 5 s before authentication
        maximum_concurrent_rpcs=limits.PEER.max_concurrent_rpcs,
    )
    pb_grpc.add_PeerServiceServicer_to_server(servicer, server)
    return server


def _anyone(method: str, context: grpc.aio.ServicerContext) -> None:
    if not authz.peer_allowed(method, ""):
        raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} is not served on the pairing listener", method=method)


def build_pairing_server(servicer: PairingServicer) -> grpc.aio.Server:
    server = grpc.aio.server(
        interceptors=[Interceptor(_anyone, 4)],
        options=[
            ("grpc.max_receive_message_length", tls.PRE_AUTH_MAX_MESSAGE),
            ("grpc.max_send_message_length", 8 * 1024),
            ("grpc.server_handshake_timeout_ms", tls.HANDSHAKE_TIMEOUT_MS),
            ("grpc.max_connection_age_ms", tls.HANDSHAKE_TIMEOUT_MS),
            ("grpc.max_connection_age_grace_ms", 1_000),
            ("grpc.max_concurrent_streams", 4),
            ("grpc.max_allowed_incoming_connections", 8),  # file descriptors: an unauthenticated flood stays small
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=8,
    )
    pb_grpc.add_PairingServiceServicer_to_server(servicer, server)
    return server


#: What a listener should serve now: (addresses, a version of its credentials, the credentials' maker or None
#: for "do not listen"). The credentials are made only when the version changed.
Wanted = tuple[list[str], object, Callable[[], grpc.ServerCredentials] | None]


class Listener:
    """Owns one gRPC server and keeps it bound to the addresses (and credentials) wanted now."""

    def __init__(
        self,
        what: str,
        port: Callable[[], int],
        build: Callable[[], grpc.aio.Server],
        wanted: Callable[[], Awaitable[Wanted]],
    ) -> None:
        self.what, self.port, self.build, self.wanted = what, port, build, wanted
        self._server: grpc.aio.Server | None = None
        self._key: tuple[list[str], object] = ([], None)
        self.bound: list[str] = []
        self._lock = asyncio.Lock()  # one (re)bind at a time: a change, a host apply and housekeeping overlap
        self._partial: tuple[tuple[list[str], object], float] | None = None  # (wanted, when) of a partial bind

    async def ensure(self) -> None:
        """Binds the addresses wanted now with the credentials wanted now; rebinds if either changed. What it
        binds is recorded only once every address is bound and the server started: a failed bind (a port
        squatted, an address still tentative) is retried at the next call."""
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> None:
        addresses, version, credentials = await self.wanted()
        addresses = sorted(addresses) if credentials is not None else []
        if (addresses, version) == self._key:
            return
        if self._partial and self._partial[0] == (addresses, version) and time.monotonic() - self._partial[1] < 10:
            return  # some address would not bind: retried every 10 s, not at every call (a rebind drops calls)
        await self._stop()
        if not addresses or credentials is None:
            self._key = (addresses, version)
            return
        creds = credentials()
        server = self.build()
        bound = []
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            try:
                if server.add_secure_port(f"{host}:{self.port()}", creds):
                    bound.append(address)
            except RuntimeError as e:
                log.warning("peer.bind_failed", listener=self.what, address=address, error=str(e)[:200])
        if not bound:
            self._partial = ((addresses, version), time.monotonic())
            return
        await server.start()
        self._server, self.bound = server, bound
        if bound == addresses:
            self._key, self._partial = (addresses, version), None
        else:
            self._partial = ((addresses, version), time.monotonic())
        log.info("peer.listening", listener=self.what, addresses=bound, port=self.port())

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        self._server, self.bound, self._key = None, [], ([], None)
