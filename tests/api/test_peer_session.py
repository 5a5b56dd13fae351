"""Sessions between paired daemons on loopback: rendezvous and epochs, boot IDs, peer down and back, the
version handshake as a deployment gate."""

from __future__ import annotations

import dataclasses
import shutil
import time

import grpc
import pytest

from sparkd.errors import PreconditionFailed
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.v1 import deployment_service_pb2, peer_pb2, peer_service_pb2
from tests.api.conftest import Daemon, close_all, loopback_cluster, wait_connected

SPEC = {"name": "gate", "framework": 1, "model": "/models/demo", "parallelism": {"pipeline": 2, "tensor": 1}}


def peer_state(d: Daemon) -> int:
    (p,) = d.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest()).peers
    return int(p.state)


def wait_state(d: Daemon, state: int, timeout: float = 10) -> float:
    t0 = time.monotonic()
    while peer_state(d) != state:
        assert time.monotonic() - t0 < timeout, peer_service_pb2.ListPeersResponse()
        time.sleep(0.02)
    return time.monotonic() - t0


def test_each_rendezvous_gets_a_new_epoch_and_the_old_one_is_refused(worker: Daemon) -> None:
    head = worker.cluster[0]
    first = worker.system.peer.session.epoch
    member = head.system.membership.by_id(worker.system.identity.node_id)
    assert member is not None and first >= 1
    hello = worker.run(worker.system.peers.own_hello)
    again = head.run(lambda: head.system.peers.handle_hello(peer_pb.HelloRequest(node=hello, rendezvous=True), member))
    assert again.epoch > first  # strictly increasing, persisted before it is handed out
    assert head.system.membership.record.epoch == again.epoch
    with pytest.raises(PreconditionFailed, match="stale session"):
        head.run(lambda: head.system.peers.handle_hello(peer_pb.HelloRequest(node=hello, epoch=first), member))
    wait_connected(worker)  # the worker's next hello is refused as stale; it rendezvous again by itself
    deadline = time.monotonic() + 10
    while worker.system.peer.session.epoch <= again.epoch:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_changed_boot_id_without_a_rendezvous_is_refused(worker: Daemon) -> None:
    """A worker that rebooted comes back with another boot ID: its old session is not its to continue."""
    head = worker.cluster[0]
    member = head.system.membership.by_id(worker.system.identity.node_id)
    assert member is not None
    hello = worker.run(worker.system.peers.own_hello)
    hello.boot_id = "00000000-0000-4000-8000-000000000001"
    request = peer_pb.HelloRequest(node=hello, epoch=worker.system.peer.session.epoch)
    with pytest.raises(PreconditionFailed, match="stale session"):
        head.run(lambda: head.system.peers.handle_hello(request, member))


def test_a_stopped_worker_is_declared_down_then_a_new_one_rendezvous() -> None:
    nodes = loopback_cluster()
    head, worker = nodes
    try:
        assert peer_state(head) == peer_pb2.PEER_STATE_CONNECTED
        worker.close()  # the worker's daemon is gone: no more hellos
        took = wait_state(head, peer_pb2.PEER_STATE_DISCONNECTED)
        print(f"head declared the stopped worker down after {took:.2f} s")
        events = head.run(lambda: [e for e in head.system.bus.recent if e.kind == "peer"])
        assert events[-1].state == "DISCONNECTED" and "no hello for" in events[-1].message
    finally:
        close_all([head])
        shutil.rmtree(worker.fake.root, ignore_errors=True)


def test_versions_that_differ_refuse_a_deployment_naming_both_sides(cluster: list[Daemon]) -> None:
    head, worker = cluster
    base = head.system.versions
    head.run(lambda: setattr(head.system, "versions", dataclasses.replace(base, frameworks=(("vllm", "0.11.0"),))))
    worker.run(lambda: setattr(worker.system, "versions", dataclasses.replace(base, frameworks=(("vllm", "0.10.2"),))))
    deadline = time.monotonic() + 10
    while True:
        (p,) = head.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest()).peers
        if any(d.blocking for d in p.differences):
            break
        assert time.monotonic() < deadline, p
        time.sleep(0.05)
    (d,) = [d for d in p.differences if d.blocking]
    assert (d.field, d.local, d.remote) == ("frameworks.vllm", "0.11.0", "0.10.2")
    assert "spark1" in d.message and "spark2" in d.message
    with pytest.raises(grpc.RpcError) as e:
        head.admin.deployments.CreateDeployment(deployment_service_pb2.CreateDeploymentRequest(spec=SPEC))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "software differs" in str(e.value.details())
    assert head.fake.systemd.units == {} and worker.fake.systemd.units == {}
    # Fixed on the worker: the next hello clears the report, and the deployment goes ahead.
    worker.run(lambda: setattr(worker.system, "versions", dataclasses.replace(base, frameworks=(("vllm", "0.11.0"),))))
    while True:
        (p,) = head.ro.peers.ListPeers(peer_service_pb2.ListPeersRequest()).peers
        if not any(d.blocking for d in p.differences):
            break
        assert time.monotonic() < deadline + 10
        time.sleep(0.05)
    head.admin.deployments.CreateDeployment(deployment_service_pb2.CreateDeploymentRequest(spec=SPEC))
    assert "sparkd-gate-rank1.service" in worker.fake.systemd.units
