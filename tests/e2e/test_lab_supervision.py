"""Supervision end to end on the two-node lab (issue 7's "What it must show"): real systemd units, real
sparkd daemons, the stand-in told to crash or wedge (`sparkd lab fault`), simulated reboots.

Timings are printed, never asserted (benchmarks/supervision.py measures them over many trials)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sparkd.lab import lab as lab_mod
from tests.e2e.conftest import REPORTS, client, sparkd
from tests.e2e.test_lab import DEMO, demo, no_deployment, status, unit_props, wait_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("lab")

HEAD_UNIT, WORKER_UNIT = "sparkd-demo-rank0.service", "sparkd-demo-rank1.service"


def demo_status(node: str = "spark1") -> dict[str, Any]:
    (d,) = [d for d in status(node)["deployments"] if d["name"] == "demo"]
    return d  # type: ignore[no-any-return]


def restarts() -> int:
    return int(demo_status()["supervision"]["restarts"])


def fault(node: str, rank: int, mode: str) -> None:
    r = sparkd("lab", "fault", node, "demo", str(rank), mode)
    assert r.returncode == 0, r.stderr


def ready_after(count: int, timeout: float = 90) -> dict[str, Any]:
    """Waits until demo is READY again after `count` restarts in all."""
    last: list[dict[str, Any]] = []

    def ready() -> dict[str, Any] | None:
        last[:] = [demo_status()]
        ok = last[0]["state"] == "DEPLOYMENT_STATE_READY" and restarts() >= count
        return last[0] if ok else None

    try:
        return wait_for(f"demo READY after restart {count}", ready, timeout)  # type: ignore[no-any-return]
    except BaseException:
        print("last status:", json.dumps(last[:1], indent=1)[:3000])
        raise


@pytest.fixture
def clean_faults() -> Iterator[None]:
    yield
    for node, rank in (("spark1", 0), ("spark2", 1)):
        fault(node, rank, "none")


@pytest.mark.usefixtures("demo", "clean_faults")
def test_a_crashed_worker_rank_is_restarted_in_order_and_serves_again() -> None:
    before, pids = restarts(), (unit_props(HEAD_UNIT)["MainPID"], unit_props(WORKER_UNIT)["MainPID"])
    t0 = time.monotonic()
    fault("spark2", 1, "crash")
    d = ready_after(before + 1)
    REPORTS.append(f"supervision: worker rank crash -> READY again in {time.monotonic() - t0:.1f} s")
    f = d["supervision"]["last_failure"]
    assert (f["rank"], f["node_name"], f["cause"]) == (1, "spark2", "exited with status 3")
    assert any("EngineCore died unexpectedly" in line for line in f["journal_tail"]), f["journal_tail"]
    assert (unit_props(HEAD_UNIT)["MainPID"], unit_props(WORKER_UNIT)["MainPID"]) != pids
    # Workers first: the worker's rank (re)started before the head's.
    assert exec_start(WORKER_UNIT) <= exec_start(HEAD_UNIT)


def exec_start(unit: str) -> int:
    """ExecMainStartTimestampMonotonic of `unit` (µs): when its current process started."""
    out = subprocess.run(
        ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", unit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip() or 0)


@pytest.mark.usefixtures("demo", "clean_faults")
def test_a_wedged_head_is_detected_and_restarted() -> None:
    before = restarts()
    t0 = time.monotonic()
    fault("spark1", 0, "wedge")
    wait_for(
        "the wedge to be detected",
        lambda: (
            (f := demo_status()["supervision"].get("last_failure")) and f["cause"].startswith("wedged") and f["time"]
        ),
        timeout=30,
    )
    detected = time.monotonic() - t0
    # Cleared once the restart began: the restarted head must not wedge again (and a wedge that clears
    # itself before its restart is due is left serving, not restarted).
    wait_for("the restart", lambda: restarts() > before, timeout=30)
    fault("spark1", 0, "none")
    REPORTS.append(f"supervision: head wedge detected in {detected:.1f} s")
    ready_after(before + 1)


@pytest.mark.usefixtures("demo", "clean_faults")
def test_five_crashes_in_a_row_open_the_breaker_and_restart_closes_it() -> None:
    fault("spark2", 1, "crash_on_start")  # every start of the worker's rank dies at once, from now on ...
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", WORKER_UNIT], check=True)  # ... and the running one now
    d = wait_for(
        "the circuit breaker to open",
        lambda: (d := demo_status())["supervision"]["breaker_open"] and d,
        timeout=120,
    )
    assert d["state"] == "DEPLOYMENT_STATE_FAILED" and d["supervision"]["failures_in_row"] == 5
    assert d["message"].startswith(
        "circuit breaker open after 5 failures in a row, every rank stopped; last: rank 1 on spark2"
    )
    wait_for("every rank stopped", lambda: unit_props(HEAD_UNIT)["ActiveState"] in ("inactive", ""))
    tail = d["supervision"]["last_failure"]["journal_tail"]  # the last run's lines, not the first failure's
    assert any("EngineCore failed to start" in line for line in tail), tail
    events = client("spark1", "events")
    assert "breaker_open" in events.stdout, events.stdout
    fault("spark2", 1, "none")
    r = client("spark1", "deploy", "restart", "demo", "--wait", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    d = demo_status()
    assert not d["supervision"]["breaker_open"] and d["state"] == "DEPLOYMENT_STATE_READY"


@pytest.mark.usefixtures("demo")
def test_killing_every_sparkd_restarts_no_unit() -> None:
    before = {u: unit_props(u) for u in (HEAD_UNIT, WORKER_UNIT)}
    count = restarts()
    for node in ("spark1", "spark2"):
        daemon = lab_mod.daemon_unit(node)
        old = unit_props(daemon)["InvocationID"]
        subprocess.run(["systemctl", "kill", "--signal=SIGKILL", daemon], check=True)
        wait_for(f"{daemon} back", lambda d=daemon, o=old: unit_props(d)["InvocationID"] != o)
    wait_for("demo READY", lambda: demo_status()["state"] == "DEPLOYMENT_STATE_READY", timeout=60)
    time.sleep(3)  # a few supervisor ticks: still nothing restarted
    assert {u: unit_props(u) for u in (HEAD_UNIT, WORKER_UNIT)} == before
    assert restarts() == count


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("node", ["spark2", "spark1"])
def test_a_rebooted_node_brings_the_deployment_back_by_itself(node: str) -> None:
    before = restarts()
    t0 = time.monotonic()
    r = sparkd("lab", "reboot", node)
    assert r.returncode == 0, r.stderr
    ready_after(before + 1, timeout=120)
    REPORTS.append(f"supervision: {node} reboot -> READY again in {time.monotonic() - t0:.1f} s")


@pytest.mark.usefixtures("demo")
def test_two_deployments_side_by_side_both_answer() -> None:
    other = (
        DEMO.read_text()
        .replace("name: demo", "name: second")
        .replace("served_model_name: demo", "served_model_name: second")
    )
    other = other.replace("port: 8000", "port: 8001")
    r = client("spark1", "deploy", "up", "-f", "-", "--wait", "--timeout", "60", input=other)
    try:
        assert r.returncode == 0, r.stderr
        for port, name in ((8000, "demo"), (8001, "second")):
            body = f'{{"model": "{name}", "messages": [{{"role": "user", "content": "hi"}}]}}'
            chat = sparkd(
                "lab",
                "exec",
                "spark2",
                "--",
                "curl",
                "-sS",
                "--max-time",
                "10",
                f"http://192.168.100.1:{port}/v1/chat/completions",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            )
            assert chat.returncode == 0 and "passed pipeline" in chat.stdout, chat.stdout + chat.stderr
        ports = {d["name"]: d["master_port"] for d in status("spark1")["deployments"]}
        assert len(set(ports.values())) == 2, ports
    finally:
        client("spark1", "deploy", "down", "second")


@pytest.mark.usefixtures("demo")
def test_a_worker_refuses_deploy_down_and_names_the_head() -> None:
    r = client("spark2", "deploy", "down", "demo")
    assert r.returncode != 0 and "coordinated by spark1" in r.stderr, r.stderr
    assert unit_props(WORKER_UNIT)["ActiveState"] == "active"


@pytest.mark.usefixtures("demo")
def test_plan_and_logs() -> None:
    r = client("spark1", "deploy", "plan", "-f", str(DEMO))
    assert r.returncode == 0, r.stderr
    assert "every gate passes" in r.stdout, r.stdout  # its own running ranks hold its ports: no conflict
    assert "rank 1 on spark2" in r.stdout and "--headless" in r.stdout and "model: " in r.stdout
    logs = client("spark1", "deploy", "logs", "demo", "-n", "20")
    assert logs.returncode == 0, logs.stderr
    assert "spark1[0]" in logs.stdout and "spark2[1]" in logs.stdout, logs.stdout
