"""Health as evidence (`sparkd.engine.health`), the serving probe's parsers (`sparkd.engine.serving`) and the
port probe (`sparkd.host.ports`, for real, on loopback)."""

from __future__ import annotations

import asyncio
import socket

from sparkd.engine import health, serving
from sparkd.host.ports import BindPorts
from sparkd.model.deployment import (
    Assignment,
    DeploymentRecord,
    DeploymentSpec,
    DeploymentState,
    Framework,
    NodePart,
    PartReport,
    PartSummary,
)
from sparkd.model.observed import ServingEvidence
from sparkd.model.unit import CLD_EXITED, UnitState
from tests.fakes.host import FakeHttp

SPEC = DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", 2, 1, 8000)
RECORD = DeploymentRecord(
    SPEC,
    Assignment(0, 2, "192.168.100.1", 29501),
    (NodePart("spark1", "", 0, "192.168.100.1"), NodePart("spark2", "w" * 16, 1, "192.168.100.2")),
    0.0,
)
ACTIVE = UnitState("sparkd-demo-rank0.service", "loaded", "active", "running", main_pid=7)
GOOD = ServingEvidence(200, 0, ("demo",), True, 0, "a probe completion answered", 1.0)


def worker(active: str = "active", reachable: bool = True, **kw: object) -> dict[int, PartReport]:
    summary = PartSummary("demo", None, "sparkd-demo-rank1.service", active, **kw)  # type: ignore[arg-type]
    return {1: PartReport(reachable, 0.4 if reachable else 4.2, summary)}


def verdict(
    own: UnitState = ACTIVE,
    s: ServingEvidence | None = GOOD,
    reports: dict[int, PartReport] | None = None,
    served_before: bool = False,
) -> health.Verdict:
    return health.evaluate_head(RECORD, own, s, reports or worker(), served_before=served_before, now=1000.0)


def test_ready_needs_every_piece_of_evidence() -> None:
    v = verdict()
    assert v.state is DeploymentState.READY and v.message == "serving demo on port 8000 (a probe completion answered)"
    assert [n.health for n in v.nodes] == ["active", "active, reported 0.4 s ago"]


def test_a_silent_worker_is_unhealthy_even_when_the_head_answers() -> None:
    v = verdict(reports=worker(reachable=False))
    assert v.state is DeploymentState.UNHEALTHY and not v.all_reachable
    assert v.message == "rank 1 on spark2: node silent for 4.2 s: no evidence that the deployment serves"


def test_the_rank_that_died_first_is_named() -> None:
    own = UnitState(ACTIVE.name, "loaded", "failed", "failed", 0, "exit-code", CLD_EXITED, 1, exit_time=20.0)
    v = verdict(own, reports=worker("failed", failure="exited with status 3", exit_time=10.0))
    assert v.state is DeploymentState.FAILED and v.failure is not None
    assert (v.failure.rank, v.failure.node_name, v.failure.cause) == (1, "spark2", "exited with status 3")
    assert v.message == "rank 1 on spark2 failed first: exited with status 3 (1 more rank(s) down)"


def test_a_wedge_takes_two_failed_probes_and_a_lost_health_three() -> None:
    once = ServingEvidence(200, 0, ("demo",), False, 1, "a probe completion got no token in 3 s", 5.0)
    assert verdict(s=once, served_before=True).state is DeploymentState.UNHEALTHY
    twice = ServingEvidence(200, 0, ("demo",), False, 2, "a probe completion got no token in 3 s", 5.0)
    v = verdict(s=twice, served_before=True)
    assert v.state is DeploymentState.FAILED and v.failure is not None and v.failure.cause.startswith("wedged")
    lost = ServingEvidence(None, 3)
    assert verdict(s=lost, served_before=True).state is DeploymentState.FAILED
    assert verdict(s=lost, served_before=False).state is DeploymentState.STARTING  # still starting


def test_another_model_on_the_port_is_not_this_deployment() -> None:
    s = ServingEvidence(200, 0, ("someone-else",), None)
    v = verdict(s=s)
    assert v.state is DeploymentState.UNHEALTHY and "not demo" in v.message


def test_parsers_are_defensive() -> None:
    assert serving.served_models(b'{"data": [{"id": "a"}, {"id": 3}, "x"]}') == ("a",)
    assert serving.served_models(b"[" * 100000) is None and serving.served_models(b"{}") is None
    text = b'# HELP x\nvllm:generation_tokens_total{model_name="a"} 7\nvllm:generation_tokens_total{model_name="b"} 3\n'
    assert serving.generated_tokens(text) == 10.0 and serving.generated_tokens(b"other 1\n") is None
    assert serving.completion_answered(b'{"choices": [{}]}') and not serving.completion_answered(b'{"choices": []}')


def test_the_probe_uses_tokens_as_evidence_and_probes_only_without_them() -> None:
    http = FakeHttp()
    http.serve(8000, "demo")
    first = asyncio.run(serving.probe(http, 8000, "demo", ServingEvidence(), 1.0))
    assert first.probe_ok and first.probe_detail == "a probe completion answered" and http.completions == 1
    http.tokens[8000] += 5  # someone else's requests
    second = asyncio.run(serving.probe(http, 8000, "demo", first, 1.0))
    assert second.probe_ok and second.probe_detail == "5 new tokens" and http.completions == 1
    http.wedged.add(8000)
    third = asyncio.run(serving.probe(http, 8000, "demo", second, 0.05))
    assert third.probe_ok is False and third.probe_failures == 1


def test_ports_busy_finds_a_listener_on_any_address() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            unused = free.getsockname()[1]
        assert BindPorts().busy([port, unused]) == [port]
