"""Authorization in one table: every method of every service sparkd serves, and who may call it.

Local services (the unix sockets): each method is READ or ADMIN. The read-only socket
serves READ methods only, by allow-list; the admin socket serves both. The peer service:
each method names the peer roles that may call it. A method that is not in this table is
refused everywhere (fail closed), and `tests/unit/test_authz.py` walks the service
descriptors so that a new RPC without a row fails CI.
"""

from __future__ import annotations

from enum import Enum


class Access(Enum):
    READ = "read"  # observes only: served on both sockets
    ADMIN = "admin"  # changes the node or the cluster: the admin socket only


_V1 = "/sparkd.v1."
LOCAL: dict[str, Access] = {
    f"{_V1}NodeService/GetNode": Access.READ,
    f"{_V1}NodeService/GetVersion": Access.READ,
    f"{_V1}HostService/PlanHost": Access.READ,
    f"{_V1}HostService/ApplyHost": Access.ADMIN,
    f"{_V1}HostService/ConfirmHost": Access.ADMIN,
    f"{_V1}HostService/RollbackHost": Access.ADMIN,
    f"{_V1}HostService/RestoreHost": Access.ADMIN,
    f"{_V1}PeerService/ListPeers": Access.READ,
    f"{_V1}PeerService/BeginPairing": Access.ADMIN,
    f"{_V1}PeerService/JoinPairing": Access.ADMIN,
    f"{_V1}PeerService/ResetPairing": Access.ADMIN,
    f"{_V1}DeploymentService/CreateDeployment": Access.ADMIN,
    f"{_V1}DeploymentService/GetDeployment": Access.READ,
    f"{_V1}DeploymentService/ListDeployments": Access.READ,
    f"{_V1}DeploymentService/DeleteDeployment": Access.ADMIN,
    # Plans hash every model file on every node (minutes, the first time): not for any local user.
    f"{_V1}DeploymentService/PlanDeployment": Access.ADMIN,
    f"{_V1}DeploymentService/RestartDeployment": Access.ADMIN,
    # The units' journals can hold prompts and secrets: like `journalctl`, not for any local user.
    f"{_V1}DeploymentService/DeploymentLogs": Access.ADMIN,
    f"{_V1}StatusService/GetStatus": Access.READ,
    f"{_V1}EventService/WatchEvents": Access.READ,
    "/grpc.health.v1.Health/Check": Access.READ,
    "/grpc.health.v1.Health/Watch": Access.READ,
    "/grpc.health.v1.Health/List": Access.READ,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Access.READ,
}

_PEER = "/sparkd.peer.v1.PeerService/"
#: Peer methods and the roles whose daemons may call them.
PEER: dict[str, frozenset[str]] = {
    f"{_PEER}Hello": frozenset({"worker"}),  # workers say hello to the head
    f"{_PEER}StartPart": frozenset({"head"}),  # only the head hands out parts
    f"{_PEER}StopPart": frozenset({"head"}),
    f"{_PEER}PreparePart": frozenset({"head"}),
    f"{_PEER}PartLogs": frozenset({"head"}),
    f"{_PEER}PrepareHost": frozenset({"head"}),  # the head's cluster-wide host apply
    f"{_PEER}VerifyHost": frozenset({"head"}),
    f"{_PEER}FinishHost": frozenset({"head"}),
    # The pairing listener: callers are not authenticated yet ("" is any caller); the token is the check.
    "/sparkd.peer.v1.PairingService/Join": frozenset({""}),
}


def local_allowed(method: str, read_only: bool) -> bool:
    """May `method` be served on this socket?"""
    access = LOCAL.get(method)
    if access is None:
        return False
    return access is Access.READ or not read_only


def peer_allowed(method: str, caller_role: str) -> bool:
    """May a peer of `caller_role` ("head", "worker" or "" for unknown) call `method`?"""
    return caller_role in PEER.get(method, frozenset())
