"""NodeService, HostService and PeerService on a whole daemon on fakes: answers and error mapping."""

from __future__ import annotations

import time

import grpc
import pytest

from sparkd import __version__
from sparkd.v1 import host_service_pb2, node_pb2, node_service_pb2, peer_pb2, peer_service_pb2
from tests.api.conftest import Daemon
from tests.api.test_deployments import error
from tests.fakes.host import NETDEVS


def test_get_node_reports_the_fixture_spark(daemon: Daemon) -> None:
    node = daemon.ro.node.GetNode(node_service_pb2.GetNodeRequest()).node
    assert (node.name, node.role, node.index) == ("spark1", node_pb2.NODE_ROLE_HEAD, 0)
    assert node.memory.total_bytes == 127600748 * 1024 and node.kernel == "6.11.0-1016-nvidia"
    twins = {p.netdev: (p.twin, p.cabled, p.carrier) for p in node.ports}
    assert twins == {
        "enp1s0f0np0": (node_pb2.TWIN_UNSPECIFIED, False, False),
        "enp1s0f1np1": (node_pb2.TWIN_A, True, True),
        "enP2p1s0f0np0": (node_pb2.TWIN_UNSPECIFIED, False, False),
        "enP2p1s0f1np1": (node_pb2.TWIN_B, True, True),
    }
    assert node.id == daemon.system.identity.node_id and len(node.key_fingerprint) == 64
    version = daemon.ro.node.GetVersion(node_service_pb2.GetVersionRequest())
    assert version.version == __version__ and version.api_revision >= 1


def test_plan_changes_nothing_and_apply_changes_the_host(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    plan = daemon.ro.host.PlanHost(host_service_pb2.PlanHostRequest())
    assert plan.changed and "/etc/nccl.conf" in [a.target for a in plan.actions]
    dry = daemon.admin.host.ApplyHost(host_service_pb2.ApplyHostRequest(dry_run=True))
    assert not dry.changed and len(dry.actions) == len(plan.actions)
    assert daemon.fake.dump() == before  # plan and dry run touch nothing
    applied = daemon.admin.host.ApplyHost(host_service_pb2.ApplyHostRequest())
    assert applied.changed and applied.verified
    dump = daemon.fake.dump()
    assert "link enp1s0f1np1 up carrier mtu=9000 addr=192.168.100.1/24" in dump
    assert "link enP2p1s0f1np1 up carrier mtu=9000 addr=192.168.101.1/24" in dump
    again = daemon.admin.host.ApplyHost(host_service_pb2.ApplyHostRequest())
    assert (again.changed, list(again.actions), again.verified) == (False, [], True)


def test_no_cabled_port_is_a_failed_precondition_naming_what_to_check(daemon: Daemon) -> None:
    for netdev in NETDEVS:
        daemon.fake.netlink.set_carrier(netdev, False)
    (daemon.fake.root / "sys/class/infiniband/rocep1s0f1/ports/1/state").write_text("1: DOWN\n")
    (daemon.fake.root / "sys/class/infiniband/roceP2p1s0f1/ports/1/state").write_text("1: DOWN\n")
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.host.ApplyHost(host_service_pb2.ApplyHostRequest())
    assert error(e.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_PRECONDITION_FAILED")
    assert "no cabled ConnectX-7 port" in str(e.value.details())


def test_a_failed_host_step_rolls_back_and_maps_to_its_reason(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    daemon.fake.netlink.fail.add("set_mtu:enP2p1s0f1np1")
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.host.ApplyHost(host_service_pb2.ApplyHostRequest())
    assert error(e.value)[1] == "ERROR_REASON_HOST_OPERATION_FAILED"
    assert daemon.fake.dump() == before


def test_list_peers_on_a_head_without_workers_and_on_a_paired_worker(daemon: Daemon, worker: Daemon) -> None:
    alone = daemon.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest())
    assert list(alone.peers) == [] and alone.pairing.role == node_pb2.NODE_ROLE_HEAD and alone.pairing.pinned
    answer = worker.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest())
    (head,) = answer.peers
    assert (head.name, head.index, head.address, head.state) == (
        "spark1",
        0,
        "127.0.0.1",
        peer_pb2.PEER_STATE_CONNECTED,
    )
    assert head.epoch >= 1 and head.protocol_version == 2 and head.versions.sparkd == "0.1.0"
    assert head.node_id == worker.cluster[0].system.identity.node_id
    assert head.key_fingerprint == worker.cluster[0].system.identity.fingerprint
    assert (answer.pairing.role, answer.pairing.index, answer.pairing.pinned) == (node_pb2.NODE_ROLE_WORKER, 1, False)


def test_a_worker_refuses_to_dial_a_head_the_kernel_routes_elsewhere(worker: Daemon) -> None:
    worker.fake.netlink.routes["127.0.0.1"] = "eno1"  # the management port, say: not a twin
    deadline = time.monotonic() + 10
    while True:
        (head,) = worker.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest()).peers
        if head.state == peer_pb2.PEER_STATE_DISCONNECTED:
            break
        assert time.monotonic() < deadline, head
        time.sleep(0.1)
    assert "refusing to dial 127.0.0.1: the kernel routes it via eno1" in head.last_error
