"""The local control API: the admin socket and the read-only socket.

Both are unix sockets under /run/sparkd (under the sysroot): the directory is 0750
and the admin socket 0660, owned by root and the `sparkd` group when it exists (that
group is root-equivalent, like the docker group). The read-only socket serves the same
services but refuses every method that changes something (PERMISSION_DENIED). No TCP
control port. Both servers carry the standard health and reflection services.
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sparkd.api.deployments import DeploymentServicer
from sparkd.api.errors import ErrorInterceptor
from sparkd.api.host import HostServicer
from sparkd.api.node import NodeServicer
from sparkd.api.peers import PeerServicer
from sparkd.api.status import StatusServicer
from sparkd.errors import PermissionDenied, SparkdError
from sparkd.v1 import (
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    host_service_pb2,
    host_service_pb2_grpc,
    node_service_pb2,
    node_service_pb2_grpc,
    peer_service_pb2,
    peer_service_pb2_grpc,
    status_service_pb2,
    status_service_pb2_grpc,
)

#: Methods that change the node; refused on the read-only socket.
MUTATING = frozenset(
    {
        "/sparkd.v1.HostService/ApplyHost",
        "/sparkd.v1.DeploymentService/CreateDeployment",
        "/sparkd.v1.DeploymentService/DeleteDeployment",
    }
)

SPARKD_SERVICES = [
    node_service_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
    host_service_pb2.DESCRIPTOR.services_by_name["HostService"].full_name,
    peer_service_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
    deployment_service_pb2.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
    status_service_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
]
SERVICE_NAMES = [*SPARKD_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME]


@dataclass
class Servicers:
    node: NodeServicer
    host: HostServicer
    peers: PeerServicer
    deployments: DeploymentServicer
    status: StatusServicer


def _read_only(method: str) -> SparkdError | None:
    if method in MUTATING:
        return PermissionDenied(f"{method} changes the node; use the admin socket (sparkd.sock)", method=method)
    return None


@dataclass
class ApiServer:
    """A gRPC server and its health servicer (marked SERVING once bound)."""

    grpc: grpc.aio.Server
    health: health.aio.HealthServicer


def build_server(servicers: Servicers, read_only: bool) -> ApiServer:
    server = grpc.aio.server(interceptors=[ErrorInterceptor(_read_only if read_only else None)])
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(servicers.node, server)
    host_service_pb2_grpc.add_HostServiceServicer_to_server(servicers.host, server)
    peer_service_pb2_grpc.add_PeerServiceServicer_to_server(servicers.peers, server)
    deployment_service_pb2_grpc.add_DeploymentServiceServicer_to_server(servicers.deployments, server)
    status_service_pb2_grpc.add_StatusServiceServicer_to_server(servicers.status, server)
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
    """Creates the socket directory, 0750, root:group."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o750)
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
