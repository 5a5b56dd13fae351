"""The authorization table covers every method of every service sparkd serves (walked from the descriptors)."""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.rpc import authz
from sparkd.v1 import (
    deployment_service_pb2,
    event_service_pb2,
    host_service_pb2,
    node_service_pb2,
    peer_service_pb2,
    status_service_pb2,
)

LOCAL_FILES = [
    node_service_pb2,
    host_service_pb2,
    peer_service_pb2,
    deployment_service_pb2,
    status_service_pb2,
    event_service_pb2,
    health_pb2,
    reflection_pb2,
]


def methods(modules: list[object]) -> set[str]:
    found = set()
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():  # type: ignore[attr-defined]
            for method in service.methods:
                found.add(f"/{service.full_name}/{method.name}")
    return found


def test_every_local_method_has_exactly_one_row() -> None:
    assert methods(LOCAL_FILES) == set(authz.LOCAL)


def test_every_peer_method_has_a_row_naming_its_callers() -> None:
    assert methods([peer_pb]) == set(authz.PEER)
    paired = {m: r for m, r in authz.PEER.items() if "/PeerService/" in m}
    assert all(roles and roles <= {"head", "worker"} for roles in paired.values())
    # Only pairing is open to callers without a paired key ("").
    assert {m for m, r in authz.PEER.items() if "" in r} == {"/sparkd.peer.v1.PairingService/Join"}


def test_the_read_only_socket_serves_reads_only_by_allow_list() -> None:
    for method, access in authz.LOCAL.items():
        assert authz.local_allowed(method, read_only=True) is (access is authz.Access.READ)
        assert authz.local_allowed(method, read_only=False)
    assert not authz.local_allowed("/sparkd.v1.NewService/Anything", read_only=False)  # fail closed


def test_mutating_methods_are_admin() -> None:
    admin = {m for m, a in authz.LOCAL.items() if a is authz.Access.ADMIN}
    assert admin == {
        "/sparkd.v1.HostService/ApplyHost",
        "/sparkd.v1.HostService/ConfirmHost",
        "/sparkd.v1.HostService/RollbackHost",
        "/sparkd.v1.HostService/RestoreHost",
        "/sparkd.v1.DeploymentService/CreateDeployment",
        "/sparkd.v1.DeploymentService/DeleteDeployment",
        "/sparkd.v1.DeploymentService/PlanDeployment",  # hashes the model on every node
        "/sparkd.v1.DeploymentService/RestartDeployment",
        "/sparkd.v1.DeploymentService/DeploymentLogs",  # journals can hold prompts
        "/sparkd.v1.PeerService/BeginPairing",
        "/sparkd.v1.PeerService/JoinPairing",
        "/sparkd.v1.PeerService/ResetPairing",
    }


def test_peer_roles() -> None:
    assert authz.peer_allowed("/sparkd.peer.v1.PeerService/StartPart", "head")
    assert not authz.peer_allowed("/sparkd.peer.v1.PeerService/StartPart", "worker")
    assert not authz.peer_allowed("/sparkd.peer.v1.PeerService/StopPart", "")
    assert authz.peer_allowed("/sparkd.peer.v1.PeerService/Hello", "worker")
    assert not authz.peer_allowed("/sparkd.peer.v1.PeerService/Hello", "head")
    assert not authz.peer_allowed("/sparkd.peer.v1.PeerService/Hello", "")
    assert authz.peer_allowed("/sparkd.peer.v1.PairingService/Join", "")
    for method in ("PreparePart", "PartLogs"):
        assert authz.peer_allowed(f"/sparkd.peer.v1.PeerService/{method}", "head")
        assert not authz.peer_allowed(f"/sparkd.peer.v1.PeerService/{method}", "worker")
