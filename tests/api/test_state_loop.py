"""The state loop: probes never block each other or a request; NVML is initialised once; repeated errors are
logged once per interval."""

from __future__ import annotations

import asyncio
import sys
import time
import types
from typing import Any

import grpc
import pytest
import structlog

from sparkd.host.gpu import NvmlGpus
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.v1 import deployment_pb2, deployment_service_pb2, status_service_pb2
from tests.api.conftest import Daemon, worker_hello
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
    """The probes' own tasks (`StateLoop.start`), not single calls: three /health endpoints hang, and the
    unit probe, GetStatus and a hello all go on."""
    for n in range(3):
        create(daemon, SOLO.replace("solo", f"solo{n}") + f"port: {8001 + n}\n")
    blocking = BlockingHttp()
    daemon.run(lambda: setattr(daemon.system.host.http, "status", blocking.status))
    daemon.run(daemon.system.loop.poke)  # every probe task runs now; the health one hangs
    deadline = time.monotonic() + 10
    while daemon.run(lambda: blocking.waiting) < 3:
        assert time.monotonic() < deadline, "the health probe never reached the endpoints"
        time.sleep(0.01)
    calls = len(daemon.fake.systemd.calls)
    daemon.fake.systemd.crash("sparkd-solo0-rank0.service")
    daemon.run(lambda: daemon.system.loop.poke("units"))
    while len(daemon.fake.systemd.calls) == calls:  # the unit probe's task runs while health hangs
        assert time.monotonic() < deadline, "the unit probe waited for the health probe"
        time.sleep(0.01)
    while daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest(), timeout=2).deployments[0].state != (
        deployment_pb2.DEPLOYMENT_STATE_FAILED
    ):
        assert time.monotonic() < deadline, "the failed unit never showed"
        time.sleep(0.01)
    cert = daemon.system.identity.cert_pem  # any certificate: the TLS layer's check is not under test here
    member = daemon.system.membership.add_worker("abcdefghijklmnop", "spark2", cert, "0" * 64)
    hello = peer_pb.HelloRequest(node=worker_hello(), rendezvous=True)
    answer = daemon.run(lambda: daemon.system.peers.handle_hello(hello, member))
    assert {d.name for d in answer.deployments} == {"solo0", "solo1", "solo2"}
    assert daemon.run(lambda: blocking.waiting) == 3 and not blocking.release.is_set()  # still hung throughout
    daemon.run(blocking.release.set)


class GatedSystemd:
    """Wraps FakeSystemd.states so that one probe's answer is held until the test lets it go."""

    def __init__(self, states: Any) -> None:
        self.states_of, self.gate, self.entered, self.calls = states, asyncio.Event(), asyncio.Event(), 0

    async def states(self, names: list[str]) -> Any:
        self.calls += 1
        answer = await self.states_of(names)  # observed now ...
        self.entered.set()
        await self.gate.wait()  # ... delivered later
        return answer


def test_a_probe_under_way_never_overwrites_what_a_mutation_just_saw(daemon: Daemon) -> None:
    """The unit probe asks systemd while the deployment is being created (its unit not started yet); its
    answer arrives after the start. That stale "inactive" must not turn the new deployment FAILED."""
    gated = GatedSystemd(daemon.fake.systemd.states)
    real_start = daemon.fake.systemd.start

    async def start_after_the_probe_asked(spec: Any) -> None:
        daemon.system.loop.poke("units")
        await gated.entered.wait()  # the probe holds an answer from before the start
        await real_start(spec)

    def rig() -> None:
        daemon.fake.systemd.states = gated.states  # type: ignore[method-assign]
        daemon.fake.systemd.start = start_after_the_probe_asked  # type: ignore[method-assign]

    daemon.run(rig)
    create(daemon)
    daemon.run(gated.gate.set)  # the stale answer arrives now
    deadline = time.monotonic() + 10
    while gated.calls < 2:
        assert time.monotonic() < deadline, "the probe was not run again after the stale answer"
        time.sleep(0.01)
    daemon.run(daemon.system.deployments.refresh)
    get = deployment_service_pb2.GetDeploymentRequest(name="solo")
    deployment = daemon.ro.deployments.GetDeployment(get).deployment
    assert deployment.state == deployment_pb2.DEPLOYMENT_STATE_STARTING, deployment.message
    assert [e.state for e in daemon.system.bus.recent if e.subject == "solo"] == ["STARTING"]


def test_an_exception_after_a_probe_never_ends_its_task(daemon: Daemon) -> None:
    loop = daemon.system.loop
    rounds = []

    def broken_round() -> None:
        rounds.append(1)
        raise RuntimeError("a bug in the round after the probe")

    loop.after_round = broken_round
    daemon.run(lambda: loop._step("units", loop.observe_units))
    daemon.run(lambda: loop._step("units", loop.observe_units))  # it runs again: the first did not escape
    assert len(rounds) == 2 and "units" in loop._failing


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


def test_a_hundred_bad_hellos_log_one_line_and_no_traceback(daemon: Daemon) -> None:
    """The head's peer server with its role check lifted (a loopback client is no worker address), so the
    bad hellos reach the handler and its validation: 100 of them log one line, with no traceback."""
    from sparkd.peer.server import build_peer_server

    async def serve() -> tuple[Any, int]:
        server = build_peer_server(
            daemon.system.peer.peer_servicer, daemon.system.membership, authorize=lambda method, context: None
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = daemon.run(serve)
    bad = peer_pb.HelloRequest(node=peer_pb.NodeHello(node_id="x" * 5000, name="../\n", address="nowhere"))
    try:
        with structlog.testing.capture_logs() as logs, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            hello = channel.unary_unary(
                "/sparkd.peer.v1.PeerService/Hello",
                request_serializer=peer_pb.HelloRequest.SerializeToString,
                response_deserializer=peer_pb.HelloResponse.FromString,
            )
            for _ in range(100):
                with pytest.raises(grpc.RpcError) as e:
                    hello(bad, timeout=5)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "node.node_id" in str(e.value.details())
    finally:
        daemon.run(lambda: server.stop(None))
    api = [e for e in logs if e["event"].startswith("api.")]
    assert len(api) == 1 and api[0]["reason"] == "ERROR_REASON_INVALID_SPEC" and "exc_info" not in api[0]
    assert sum(len(str(e)) for e in logs) < 4096
