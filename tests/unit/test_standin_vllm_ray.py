"""The vLLM stand-in's Ray mode (sparkd/lab/standins/vllm_ray.py) where no Ray cluster is needed: vLLM's rules
for the Ray backend, the failures before the cluster, the lab's wrapper of the real Ray CLI, and the engine
over stage actors. tests/integration/test_standin_vllm_ray.py runs it on a real two-node Ray cluster.

Nothing here reaches a Ray cluster: RAY_ADDRESS is unset and RAY_TMPDIR is an empty directory, so the
stand-in's `ray.init(address="auto")` finds none and fails at once.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sparkd.lab import lab as lab_mod
from sparkd.lab.standins import vllm_ray
from sparkd.lab.standins.engine import Engine, Stage
from sparkd.lab.standins.switch import Switch

ROOT = Path(__file__).resolve().parents[2]
HAVE_RAY = importlib.util.find_spec("ray") is not None
SERVE = ["serve", "/models/demo", "--served-model-name", "demo", "--tensor-parallel-size", "1"]
SERVE += ["--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray", "--port", "0"]


def env(tmp: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    base = dict(keep, PYTHONPATH=str(ROOT), SPARKD_LAB_FAULTS_DIR=str(tmp / "faults"), RAY_TMPDIR=str(tmp))
    return dict(base, VLLM_HOST_IP="127.0.0.1", GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo", **extra)


def run(tmp: Path, *args: str, code: str = "pass", **extra: str) -> subprocess.CompletedProcess[str]:
    """The stand-in with `args` (after `code`, run first in its interpreter)."""
    main = f"{code}; from sparkd.lab.standins.vllm import main; main()"
    return subprocess.run(
        [sys.executable, "-c", main, *args], env=env(tmp, **extra), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1"], vllm_ray.NNODES),
        (["--node-rank", "1"], "--node-rank 1 needs --nnodes > 1"),
        (["--headless"], "--headless is for the mp backend's worker nodes"),
    ],
)
def test_the_ray_backend_refuses_the_native_multi_node_flags(tmp_path: Path, extra: list[str], message: str) -> None:
    r = run(tmp_path, *SERVE, *extra)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "connecting to the Ray cluster" not in r.stdout


def test_without_ray_installed_the_ray_mode_says_what_to_install(tmp_path: Path) -> None:
    r = run(tmp_path, *SERVE, code="import sys; sys.modules['ray'] = None")
    assert r.returncode == 1, r.stderr
    assert "the vLLM stand-in's Ray mode needs ray (pip install ray==2.60.0)" in r.stderr


def test_a_bad_placement_group_timeout_is_refused(tmp_path: Path) -> None:
    r = run(tmp_path, *SERVE, SPARKD_LAB_RAY_PG_TIMEOUT="soon")
    assert r.returncode == 1 and "SPARKD_LAB_RAY_PG_TIMEOUT must be seconds from 0 to 1800" in r.stderr


@pytest.mark.skipif(not HAVE_RAY, reason="needs ray (pip install ray==2.60.0)")
def test_without_ray_address_nor_a_local_ray_start_the_stand_in_exits_1(tmp_path: Path) -> None:
    r = run(tmp_path, *SERVE)
    assert r.returncode == 1, r.stderr
    assert "Could not find any running Ray instance: RAY_ADDRESS is not set and no `ray start` recorded" in r.stderr
    assert "connecting to the Ray cluster" not in r.stdout  # nothing was dialled


@pytest.mark.skipif(not HAVE_RAY, reason="needs ray (pip install ray==2.60.0)")
def test_the_lab_wraps_the_real_ray_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_mod, "LAB_DIR", tmp_path / "lab")
    lab_mod._write_standins()
    wrapper = tmp_path / "lab/frameworks/vllm/bin/ray"
    text = wrapper.read_text()
    assert "from ray.scripts.scripts import main" in text and "sparkd.lab.standins" not in text
    assert f"export SPARKD_LAB_FAULTS_DIR={tmp_path / 'lab/faults'}" in text  # for the stage actors
    keep = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(wrapper), "--version"], env=keep, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ray, version 2.60.0" in r.stdout, r.stderr
    r = subprocess.run([str(wrapper), "start", "--no-such-flag"], env=keep, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "No such option '--no-such-flag'" in r.stderr


class FakeStage:
    def __init__(self, rank: int, ip: str) -> None:
        self.rank, self.ip = rank, ip
        self.asked: list[dict[str, Any]] = []

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(obj)
        return {"stage": self.rank, "host_ip": self.ip}


def test_with_stage_actors_every_rank_is_an_actor_and_the_head_is_none() -> None:
    stages = {1: FakeStage(1, "192.168.100.2"), 0: FakeStage(0, "192.168.100.1")}
    workers: dict[int, Stage] = dict(stages)
    engine = Engine("demo", "10.9.9.9", workers, Switch(None), "vllm")
    tokens, _, reason = engine.generate("hello there", None)
    assert " ".join(tokens).endswith("pipeline stage 0 (192.168.100.1) -> stage 1 (192.168.100.2).")
    assert reason == "stop" and all(s.asked == [{"prompt": "hello there"}] for s in stages.values())


def test_the_stage_actor_answers_as_its_rank_and_a_wedge_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = type(sys)("ray")
    ray.util = type(sys)("ray.util")  # type: ignore[attr-defined]
    ray.util.get_node_ip_address = lambda: "192.168.100.2"
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setenv("VLLM_HOST_IP", "192.168.100.2")
    actor = vllm_ray.StageActor()
    assert actor.start(0, "demo") == "192.168.100.2" and actor.switch.path is None  # rank 0: the head's switch
    assert actor.forward({"prompt": "a b c"}) == {"stage": 0, "host_ip": "192.168.100.2", "tokens": 3}
    actor.switch.running.clear()
    answer: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: answer.append(actor.forward({"prompt": "x"})), daemon=True)
    t.start()
    t.join(0.3)
    assert not answer
    actor.switch.running.set()
    t.join(5)
    assert answer == [{"stage": 0, "host_ip": "192.168.100.2", "tokens": 1}]
