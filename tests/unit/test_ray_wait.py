"""Waiting for Ray's GPUs: `ray status` read until it counts the world size, or a clear refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sparkd.engine import ray_wait
from sparkd.errors import PreconditionFailed
from sparkd.host.protocols import CommandResult

# Ray 2.60's `ray status` layout (the autoscaler summary), two nodes of one GPU each.
STATUS = """======== Autoscaler status: 2026-12-01 17:20:11.154102 ========
Node status
---------------------------------------------------------------
Active:
 1 node_3f0c1d9a8e7b
 1 node_9b2e4f61c0aa
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------
Total Usage:
 0.0/2.0 CPU
 0.0/{gpus} GPU
 0B/1.05GiB memory
 0B/381.47MiB object_store_memory

Total Demands:
 (no resource demands)
"""


class Answers:
    """A runner answering `ray status` from a script of results, then the last one forever."""

    def __init__(self, *results: CommandResult) -> None:
        self.results, self.calls = list(results), 0

    def which(self, name: str) -> str | None:
        return None

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.calls += 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


def ok(gpus: str) -> CommandResult:
    return CommandResult(("ray",), 0, STATUS.format(gpus=gpus), "")


def test_the_gpu_total_is_read_from_the_usage_line() -> None:
    assert ray_wait.cluster_gpus(STATUS.format(gpus="2.0")) == 2.0
    assert ray_wait.cluster_gpus("no resources here") is None
    assert ray_wait.cluster_gpus(" 0.0/2.0 GPUs_fake\n") is None


def test_the_status_argv_runs_natively_or_inside_the_heads_ray_container() -> None:
    assert ray_wait.status_argv("/opt/vllm/bin/ray", "192.168.100.1:29501") == [
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--no-new-privs",
        "/opt/vllm/bin/ray",
        "status",
        "--address",
        "192.168.100.1:29501",
    ]
    assert ray_wait.status_argv("ray", "h:1", "sparkd-a-rank0-ray")[:3] == [
        "/usr/bin/docker",
        "exec",
        "sparkd-a-rank0-ray",
    ]


def test_it_waits_until_ray_counts_the_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_wait, "POLL_S", 0.01)
    failed = CommandResult(("ray",), 1, "", "ConnectionError: could not reach the GCS")
    runner = Answers(failed, ok("1.0"), ok("1.0"), ok("2.0"))
    asyncio.run(ray_wait.wait_for_gpus(runner, ["ray", "status"], 2, "demo", timeout=5))
    assert runner.calls == 4


def test_a_worker_that_never_joins_is_named_with_what_ray_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_wait, "POLL_S", 0.01)
    with pytest.raises(PreconditionFailed) as e:
        asyncio.run(ray_wait.wait_for_gpus(Answers(ok("1.0")), ["ray", "status"], 2, "demo", timeout=0.05))
    assert "Ray counts 1 of 2 GPUs after 0.05 s" in e.value.message and "deploy logs demo" in e.value.message
