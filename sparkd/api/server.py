"""The local control API: the admin socket and the read-only socket.

Both are unix sockets under /run/sparkd (under the sysroot): the directory is 0755, so
any local user can reach the read-only socket (0666); the admin socket is 0660, owned by
root and the `sparkd` group when it exists (that group is root-equivalent, like the
docker group). Which methods each socket serves is decided by one table,
`sparkd.rpc.authz`: the read-only socket serves READ methods by allow-list and refuses
everything else with PERMISSION_DENIED. No TCP control port. Both servers carry the
standard health and reflection services, and the limits of `sparkd.rpc.limits.LOCAL`.
"""

from __future__ import annotations

import grp
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sparkd.api.deployments import DeploymentServicer
from sparkd.api.events import EventServicer
from sparkd.api.host import HostServicer
from sparkd.api.node import NodeServicer
from sparkd.api.peers import PeerServicer
from sparkd.api.status import StatusServicer
from sparkd.errors import HostOperationFailed, PermissionDenied
from sparkd.rpc import authz, limits
from sparkd.rpc.errors import Authorize, Interceptor
from sparkd.v1 import (
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    host_service_pb2,
    host_service_pb2_grpc,
    node_service_pb2,
    node_service_pb2_grpc,
    peer_service_pb2,
    peer_service_pb2_grpc,
    status_service_pb2,
    status_service_pb2_grpc,
)

SPARKD_SERVICES = [
    node_service_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
    host_service_pb2.DESCRIPTOR.services_by_name["HostService"].full_name,
    peer_service_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
    deployment_service_pb2.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
    status_service_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
]
SERVICE_NAMES = [*SPARKD_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME]


@dataclass
class Servicers:
    node: NodeServicer
    host: HostServicer
    peers: PeerServicer
    deployments: DeploymentServicer
    status: StatusServicer
    events: EventServicer


def authorizer(read_only: bool) -> Authorize:
    socket = "read-only socket (sparkd-ro.sock)" if read_only else "admin socket"

    def authorize(method: str, context: grpc.aio.ServicerContext) -> None:
        if not authz.local_allowed(method, read_only):
            hint = "use the admin socket (sparkd.sock, root or group sparkd)" if read_only else "not in the table"
            raise PermissionDenied(f"{method} is not served on the {socket}; {hint}", method=method)

    return authorize


@dataclass
class ApiServer:
    """A gRPC server and its health servicer (marked SERVING once bound)."""

    grpc: grpc.aio.Server
    health: health.aio.HealthServicer


def build_server(servicers: Servicers, read_only: bool) -> ApiServer:
    server = grpc.aio.server(
        interceptors=[Interceptor(authorizer(read_only), limits.LOCAL.max_streams)],
        options=limits.LOCAL.options(),
        maximum_concurrent_rpcs=limits.LOCAL.max_concurrent_rpcs,
    )
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(servicers.node, server)
    # A desired-state file only on the admin socket (it can point a plan at any netdev).
    host_service_pb2_grpc.add_HostServiceServicer_to_server(servicers.host.for_socket(read_only), server)
    peer_service_pb2_grpc.add_PeerServiceServicer_to_server(servicers.peers, server)
    # Journal lines of a failure only on the admin socket (they can hold prompts).
    deployment_service_pb2_grpc.add_DeploymentServiceServicer_to_server(
        servicers.deployments.for_socket(read_only), server
    )
    status_service_pb2_grpc.add_StatusServiceServicer_to_server(servicers.status.for_socket(read_only), server)
    event_service_pb2_grpc.add_EventServiceServicer_to_server(servicers.events, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    return ApiServer(server, health_servicer)


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return -1  # no such group: leave the group as is (root)


def prepare_socket_dir(path: Path, group: str) -> None:
    """Creates the socket directory, 0755 (any user reaches the read-only socket), root:group.

    Refuses a directory that others may write to (like /tmp): changing its mode would open or break it,
    and anyone could replace the sockets in it. The config requires a directory of its own under /run.
    """
    path.mkdir(parents=True, exist_ok=True)
    mode = path.lstat().st_mode
    if not stat.S_ISDIR(mode) or mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise HostOperationFailed(
            f"{path} is shared (sticky or writable by others) or not a directory; put the sockets in a "
            "directory of their own (api.socket, api.ro_socket)",
            path=str(path),
        )
    os.chmod(path, 0o755)
    os.chown(path, -1, _group_id(group))


async def serve_unix(api: ApiServer, socket_path: Path, mode: int, group: str) -> None:
    """Binds the server to `socket_path` with `mode`, starts it, and marks it SERVING."""
    prepare_socket_dir(socket_path.parent, group)
    old = os.umask(0o177)  # the socket is born 0600 and widened below: never briefly too open
    try:
        api.grpc.add_insecure_port(f"unix:{socket_path}")
    finally:
        os.umask(old)
    await api.grpc.start()
    os.chown(socket_path, -1, _group_id(group))
    os.chmod(socket_path, mode)
    for name in [*SPARKD_SERVICES, ""]:
        await api.health.set(name, health_pb2.HealthCheckResponse.SERVING)
