"""The state loop: probes never block each other or a request; NVML is initialised once; repeated errors are
logged once per interval."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

import grpc
import pytest
import structlog

from sparkd.host.gpu import NvmlGpus
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.v1 import deployment_service_pb2, status_service_pb2
from tests.api.conftest import Daemon
from tests.api.test_deployments import SOLO, create


class BlockingHttp:
    """A /health that never answers until released: a hung framework."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        self.waiting += 1
        await self.release.wait()
        return 200


def test_hung_health_endpoints_never_delay_status_hellos_or_the_unit_probe(daemon: Daemon) -> None:
    for n in range(3):
        create(daemon, SOLO.replace("solo", f"solo{n}").replace("tiny", f"tiny{n}") + f"port: {8001 + n}\n")
    blocking = BlockingHttp()
    daemon.run(lambda: setattr(daemon.system.host.http, "status", blocking.status))
    health = daemon.run(lambda: asyncio.ensure_future(daemon.system.loop.observe_health()))
    for _ in range(1000):
        if daemon.run(lambda: blocking.waiting) == 3:
            break
    # The three endpoints hang; everything else goes on.
    daemon.fake.systemd.crash("sparkd-solo0-rank0.service")
    daemon.run(daemon.system.loop.observe_units)
    daemon.run(daemon.system.deployments.refresh)
    status = daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest(), timeout=2)
    assert status.deployments[0].message == "unit sparkd-solo0-rank0.service is failed"
    hello = peer_pb.HelloRequest(
        node=peer_pb.NodeHello(
            node_id="abcdefghijklmnop",
            name="spark2",
            role="NODE_ROLE_WORKER",
            index=1,
            address="192.168.100.2",
            protocol_version=1,
        )
    )
    answer = daemon.run(lambda: daemon.system.peers.handle_hello(hello, "192.168.100.2"))
    assert {d.name for d in answer.deployments} == {"solo0", "solo1", "solo2"}
    assert not daemon.run(health.done)
    daemon.run(blocking.release.set)
    daemon.run(lambda: health)


def test_nvml_is_initialised_once_and_shut_down_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class NVMLError(Exception):
        pass

    fake: Any = types.ModuleType("pynvml")
    fake.NVMLError = NVMLError
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlShutdown = lambda: calls.append("shutdown")
    fake.nvmlSystemGetDriverVersion = lambda: b"580.95.05"
    fake.nvmlSystemGetCudaDriverVersion_v2 = lambda: 13000
    fake.nvmlDeviceGetCount = lambda: 1
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA GB10"
    fake.nvmlDeviceGetUUID = lambda h: "GPU-1"
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = NvmlGpus()
    for _ in range(3):
        found, reason = gpus.gpus()
        assert [g.name for g in found] == ["NVIDIA GB10"] and reason == ""
    gpus.close()
    assert calls == ["init", "shutdown"]


def test_repeated_bad_calls_are_logged_once_per_interval(daemon: Daemon) -> None:
    with structlog.testing.capture_logs() as logs:
        for _ in range(100):
            with pytest.raises(grpc.RpcError):
                daemon.admin.deployments.GetDeployment(deployment_service_pb2.GetDeploymentRequest(name="../x"))
    errors = [e for e in logs if e["event"] == "api.error"]
    assert len(errors) == 1 and errors[0]["reason"] == "ERROR_REASON_INVALID_SPEC"
    assert not [e for e in logs if e.get("log_level") in ("error", "exception")]


def test_a_hundred_bad_hellos_log_one_line_and_no_traceback(worker: Daemon) -> None:
    bad = peer_pb.HelloRequest(node=peer_pb.NodeHello(node_id="x" * 5000, name="../\n", address="nowhere"))
    with structlog.testing.capture_logs() as logs, grpc.insecure_channel(worker.peer_target) as channel:
        hello = channel.unary_unary(
            "/sparkd.peer.v1.PeerService/Hello",
            request_serializer=peer_pb.HelloRequest.SerializeToString,
            response_deserializer=peer_pb.HelloResponse.FromString,
        )
        for _ in range(100):
            with pytest.raises(grpc.RpcError) as e:
                hello(bad, timeout=5)
            assert e.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)
    api = [e for e in logs if e["event"].startswith("api.")]
    assert len(api) == 1 and "exc_info" not in api[0] and "exception" not in api[0]
    assert sum(len(str(e)) for e in logs) < 4096
