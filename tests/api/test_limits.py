"""Bounded servers: idle connections to the peer port cannot exhaust the daemon's file descriptors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest

from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.peer.v1 import peer_service_pb2_grpc as peer_grpc
from sparkd.rpc import limits
from sparkd.v1 import node_service_pb2
from tests.api.conftest import Daemon, peer_channel

HOLDER = """
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    held.append(s)
print("connected", flush=True)
time.sleep(60)
"""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def holder(worker: Daemon) -> Iterator[subprocess.Popen[str]]:
    host, port = worker.peer_target.split(":")
    process = subprocess.Popen([sys.executable, "-c", HOLDER, host, port, "1100"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "connected"
        yield process
    finally:
        process.kill()
        process.wait()


def test_1100_idle_connections_leave_the_daemon_serving(worker: Daemon, holder: object) -> None:
    """The walking skeleton accepted them all and ran out of descriptors (then failed to write a record).
    Now the peer server takes at most `max_connections`, drops those that never speak HTTP/2 after the
    handshake timeout, and the local API (a server of its own) never notices."""
    baseline = open_fds()
    time.sleep(1.0)  # let the server accept what it will
    held = open_fds() - baseline
    assert held <= limits.PEER.max_connections + 16, held
    assert worker.admin.node.GetVersion(node_service_pb2.GetVersionRequest(), timeout=2).version
    request = peer_pb.StartPartRequest(
        spec={"name": "held", "framework": 1, "model": "/m", "parallelism": {"pipeline": 2, "tensor": 1}},
        assignment=peer_pb.Assignment(rank=1, nnodes=2, master_addr="127.0.0.1", master_port=29501),
        epoch=worker.system.peer.session.epoch,
    )
    # The held connections are closed by the handshake timeout; the head's next try gets through.
    deadline = time.monotonic() + 4 * limits.PEER.handshake_timeout_ms / 1000
    while True:
        with peer_channel(worker.peer_target, worker.cluster[0], worker) as channel:
            try:
                answer = peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=2)
                break
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    pytest.fail(f"StartPart still refused after the handshake timeout: {e}")
                time.sleep(0.5)
    assert answer.unit == "sparkd-held-rank1.service"
    assert (worker.fake.root / "var/lib/sparkd/deployments/held.json").exists()
    assert open_fds() - baseline <= 16  # the idle connections are gone


def test_message_sizes_are_bounded(daemon: Daemon) -> None:
    from sparkd.v1 import deployment_service_pb2

    big = deployment_service_pb2.CreateDeploymentRequest(spec_yaml="#" * (limits.LOCAL.max_receive_bytes + 1))
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.deployments.CreateDeployment(big)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # refused by grpc before any handler runs
    spec = deployment_service_pb2.CreateDeploymentRequest(spec_yaml="#" * (100 * 1024))  # over 64 KiB
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.deployments.CreateDeployment(spec)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "64 KiB" in str(e.value.details())
    assert daemon.fake.systemd.calls == []
