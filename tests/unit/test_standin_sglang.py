"""The SGLang stand-in (sparkd/lab/standins/sglang.py) run for real: two node ranks on 127.0.0.1, as subprocesses
with their own ports and faults directory, killed by handle at the end."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkd.lab import faults
from sparkd.lab.faults import Fault
from tests.unit.standin_helpers import SERVED, Procs, base_env, chat, eventually, free_port, request, wait_status

MODULE = "sparkd.lab.standins.sglang"
HAVE_TORCH = importlib.util.find_spec("torch") is not None


class Nodes(Procs):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.ports = [free_port(), free_port()]
        self.dist_port = free_port()

    def argv(self, rank: int, nnodes: int = 2, *extra: str) -> list[str]:
        args = ["serve", "--model-path", "/models/demo", "--served-model-name", SERVED, "--tp-size", "1"]
        args += ["--pp-size", str(nnodes), "--dist-init-addr", f"127.0.0.1:{self.dist_port}", "--nnodes", str(nnodes)]
        return args + ["--node-rank", str(rank), "--host", "127.0.0.1", "--port", str(self.ports[rank]), *extra]

    def rank(self, rank: int, *extra: str, nnodes: int = 2, **env: str) -> subprocess.Popen[bytes]:
        return self.start(
            self.argv(rank, nnodes, *extra), base_env(self.tmp, **{"SGLANG_HOST_IP": "127.0.0.1", **env}), MODULE
        )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    try:
        yield n
    finally:
        n.close()


def test_two_ranks_serve_through_rank_0_and_the_worker_answers_health(nodes: Nodes) -> None:
    head = nodes.start(nodes.argv(0, 2, "--enable-metrics"), base_env(nodes.tmp, SGLANG_HOST_IP="127.0.0.1"), MODULE)
    worker = nodes.start(nodes.argv(1, 2, "--enable-metrics"), base_env(nodes.tmp, SGLANG_HOST_IP="127.0.0.1"), MODULE)
    wait_status(nodes, head, nodes.ports[0], "/health")
    assert "The server is fired up and ready to roll!" in nodes.output(head)
    answer = chat(nodes.ports[0])
    assert "stage 0 (127.0.0.1) -> stage 1 (127.0.0.1)" in answer["choices"][0]["message"]["content"]
    for path in ("/health_generate", "/ready", "/ping", "/model_info"):
        assert request(nodes.ports[0], "GET", path)[0] == 200, path
    status, listed = request(nodes.ports[0], "GET", "/v1/models")
    assert status == 200 and listed["data"][0]["id"] == SERVED
    status, text = request(nodes.ports[0], "GET", "/metrics")
    assert status == 200 and "# TYPE sglang:generation_tokens_total counter" in text
    tokens = len(answer["choices"][0]["message"]["content"].split())
    assert f'sglang:generation_tokens_total{{model_name="{SERVED}"}} {float(tokens)}' in text  # health is not counted
    assert re.search(r'sglang:prompt_tokens_total\{model_name="meta/demo-8b"\} 2\.0', text)
    assert "sglang:num_running_reqs" in text and "sglang:num_queue_reqs" in text
    for path in ("/ping", "/health", "/health_generate"):  # the worker's dummy health server
        assert request(nodes.ports[1], "GET", path)[0] == 200, path
    assert request(nodes.ports[1], "GET", "/v1/models")[0] == 404
    assert request(nodes.ports[1], "POST", "/v1/chat/completions", {"messages": []})[0] == 404
    backend = "gloo process group formed: world_size=2" if HAVE_TORCH else "built-in TCP rendezvous is used"
    assert backend in nodes.output(head) and backend in nodes.output(worker)


def test_metrics_need_enable_metrics(nodes: Nodes) -> None:
    head = nodes.rank(0, nnodes=1)
    wait_status(nodes, head, nodes.ports[0], "/health")
    assert request(nodes.ports[0], "GET", "/metrics")[0] == 404
    assert chat(nodes.ports[0], max_tokens=2)["usage"]["completion_tokens"] == 2


def test_a_killed_worker_ends_rank_0_and_a_killed_rank_0_ends_the_worker(nodes: Nodes) -> None:
    head, worker = nodes.rank(0), nodes.rank(1)
    wait_status(nodes, head, nodes.ports[0], "/health")
    worker.kill()
    assert head.wait(timeout=10) == 1
    assert "rank 1 went away; exiting (engine dead)" in nodes.output(head)
    nodes.dist_port = free_port()
    head, worker = nodes.rank(0), nodes.rank(1)
    wait_status(nodes, worker, nodes.ports[1], "/health")
    head.kill()
    assert worker.wait(timeout=10) == 1
    assert "the head rank went away" in nodes.output(worker)


def test_the_rank_1_fault_switch_wedges_the_pipeline_and_crash_ends_both(nodes: Nodes) -> None:
    head, worker = nodes.rank(0), nodes.rank(1)
    wait_status(nodes, head, nodes.ports[0], "/health")
    path = faults.fault_path(nodes.tmp / "faults", SERVED, 1)
    faults.write_fault(path, Fault("wedge"))
    eventually("the wedge", lambda: "wedged" in nodes.output(worker))
    assert request(nodes.ports[1], "GET", "/health")[0] == 200  # a wedged worker's health stays 200
    with pytest.raises(TimeoutError):
        chat(nodes.ports[0], timeout=0.5)
    faults.write_fault(path, Fault("crash"))
    assert worker.wait(timeout=10) == faults.CRASH_EXIT_STATUS
    assert head.wait(timeout=10) == 1


@pytest.mark.parametrize(
    ("env", "extra", "nnodes", "why"),
    [
        ({"SGLANG_HOST_IP": ""}, (), 2, "SGLANG_HOST_IP is not set"),
        ({"GLOO_SOCKET_IFNAME": ""}, (), 2, "GLOO_SOCKET_IFNAME is not set"),
        ({"NCCL_SOCKET_IFNAME": ""}, (), 2, "NCCL_SOCKET_IFNAME is not set"),
        ({"SGLANG_HOST_IP": "192.0.2.7"}, (), 2, "is not an address of this node"),
        ({}, ("--tp-size", "2"), 2, "tp-size x pp-size = 4 GPUs but 2 nodes"),
    ],
)
def test_start_up_rules_exit_1_naming_the_problem(
    nodes: Nodes, env: dict[str, str], extra: tuple[str, ...], nnodes: int, why: str
) -> None:
    proc = nodes.rank(0, *extra, nnodes=nnodes, **env)
    assert proc.wait(timeout=20) == 1
    assert why in nodes.output(proc)


@pytest.mark.parametrize("bad", [["--tp", "2"], ["--tp_size", "2"], ["--port", "x"]])
def test_flags_sglang_refuses_exit_2(nodes: Nodes, bad: list[str]) -> None:
    proc = nodes.rank(0, *bad, nnodes=1)
    assert proc.wait(timeout=20) == 2


def test_crash_on_start_and_the_forced_tcp_rendezvous(nodes: Nodes) -> None:
    path = faults.fault_path(nodes.tmp / "faults", SERVED, 0)
    faults.write_fault(path, Fault("crash_on_start"))
    proc = nodes.rank(0)
    assert proc.wait(timeout=20) == faults.CRASH_ON_START_EXIT_STATUS
    faults.write_fault(path, Fault())
    head, worker = nodes.rank(0, SPARKD_LAB_RENDEZVOUS="tcp"), nodes.rank(1, SPARKD_LAB_RENDEZVOUS="tcp")
    wait_status(nodes, head, nodes.ports[0], "/health")
    assert "built-in TCP rendezvous is used" in nodes.output(worker)
    assert chat(nodes.ports[0], max_tokens=1)["usage"]["completion_tokens"] == 1
