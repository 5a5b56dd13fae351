"""The lab's fault switches (sparkd/lab/faults.py) and the vLLM stand-in run for real (sparkd/lab/standins/vllm.py).

The stand-in runs as a subprocess on 127.0.0.1, without namespaces or the lab, with a faults directory of its
own (SPARKD_LAB_FAULTS_DIR) and free ports; every process a test starts is killed by its handle at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkd.lab import cli, faults
from sparkd.lab import lab as lab_mod
from sparkd.lab.faults import Fault, FaultError

ROOT = Path(__file__).resolve().parents[2]
SERVED = "meta/demo-8b"  # a '/' in the served name, as real model names have


# ---- the fault file and its path rule


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b'{"mode": "crash"}', Fault("crash")),
        (b'{"mode": "wedge"}\n', Fault("wedge")),
        (b'{"mode": "slow_start", "seconds": 20}', Fault("slow_start", 20.0)),
        (b'{"mode": "slow_start", "seconds": 0.5}', Fault("slow_start", 0.5)),
        (b'{"mode": "crash_on_start"}', Fault("crash_on_start")),
        (b'{"mode": "none"}', Fault()),
    ],
)
def test_fault_files_parse(data: bytes, fault: Fault) -> None:
    assert faults.parse_fault(data) == fault
    assert faults.parse_fault(faults.encode_fault(fault)) == fault


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"mode": "explode"}', "unknown mode"),
        (b'{"mode": "crash", "extra": 1}', "unknown keys extra"),
        (b'{"mode": "slow_start"}', "slow_start needs seconds"),
        (b'{"mode": "slow_start", "seconds": 4000}', "at most 3600"),
        (b'{"mode": "slow_start", "seconds": true}', "must be a number"),
        (b'{"mode": "crash", "seconds": 3}', "for slow_start only"),
        (b'["crash"]', "not a JSON object"),
        (b'{"mode": 1}', "mode must be"),
        (b"crash", "not JSON"),
        (b"\xff", "not JSON"),
        (b'{"mode": "crash"}' + b" " * 4096, "larger than 4096 bytes"),
    ],
)
def test_bad_fault_files_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(FaultError, match=why):
        faults.parse_fault(data)


def test_fault_path_is_one_component_per_served_name(tmp_path: Path) -> None:
    assert faults.fault_path(tmp_path, "demo", 1) == tmp_path / "demo" / "rank1"
    assert faults.fault_path(tmp_path, "meta-llama/Llama-3.1-8B", 0) == tmp_path / "meta-llama%2FLlama-3.1-8B/rank0"
    assert faults.served_component("..") == "%2E."
    assert faults.served_component(".hidden") == "%2Ehidden"
    long_a, long_b = "é" * 128, "é" * 127 + "è"
    assert faults.served_component(long_a) != faults.served_component(long_b)
    assert all(len(faults.served_component(n)) <= 200 for n in (long_a, long_b))
    with pytest.raises(FaultError, match="empty"):
        faults.fault_path(tmp_path, "", 0)
    with pytest.raises(FaultError, match="rank must be from 0 to 63"):
        faults.fault_path(tmp_path, "demo", 64)


def test_write_fault_replaces_the_file_and_none_removes_it(tmp_path: Path) -> None:
    path = faults.fault_path(tmp_path, SERVED, 0)
    faults.write_fault(path, Fault("wedge"))
    assert faults.read_fault(path) == Fault("wedge")
    faults.write_fault(path, Fault("slow_start", 2))
    assert faults.read_fault(path) == Fault("slow_start", 2.0)
    assert [p.name for p in path.parent.iterdir()] == ["rank0"]  # no temporary file left
    faults.write_fault(path, Fault())
    assert faults.read_fault(path) is None
    faults.write_fault(path, Fault())  # clearing twice is fine


def test_read_fault_refuses_what_is_not_a_small_regular_file(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b" " * 10_000)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "big")
    for name in ("big", "dir", "link"):
        with pytest.raises(FaultError):
            faults.read_fault(tmp_path / name)


# ---- the lab command


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab with nodes spark1 and spark2 as far as `lab fault` reads it; spark2 runs rank 1 of `demo`."""
    monkeypatch.setattr(lab_mod, "LAB_DIR", tmp_path)
    monkeypatch.setattr(lab_mod, "STATE", tmp_path / "lab.json")
    lab_mod.LabState(nodes=["spark1", "spark2"]).save()
    records = lab_mod.sysroot("spark2") / "var/lib/sparkd/deployments"
    records.mkdir(parents=True)
    doc = {"spec": {"name": "demo", "served_model_name": SERVED}, "assignment": {"rank": 1}}
    (records / "demo.json").write_text(json.dumps(doc))
    (records / "broken.json").write_text("{")
    return tmp_path


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["lab", *argv])
    return int(args.func(args))


def test_lab_fault_resolves_the_deployment_and_writes_the_rank_file(lab_dir: Path) -> None:
    path = lab_dir / "faults" / "meta%2Fdemo-8b" / "rank1"
    assert run_cli("fault", "spark2", "demo", "1", "slow_start", "--seconds", "20") == 0
    assert json.loads(path.read_text()) == {"mode": "slow_start", "seconds": 20.0}
    assert run_cli("fault", "spark2", SERVED, "1", "wedge") == 0  # by served model name
    assert faults.read_fault(path) == Fault("wedge")
    assert run_cli("fault", "spark2", "demo", "1", "none") == 0
    assert not path.exists()


def test_lab_fault_checks_node_rank_and_mode(lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("fault", "spark9", "demo", "1", "crash") == 1
    assert "no lab node 'spark9'" in capsys.readouterr().err
    assert run_cli("fault", "spark2", "demo", "0", "crash") == 1
    assert "spark2 runs rank 1 of demo, not rank 0" in capsys.readouterr().err
    assert run_cli("fault", "spark2", "demo", "1", "slow_start") == 1
    assert "slow_start needs seconds" in capsys.readouterr().err
    assert run_cli("fault", "spark2", "demo", "1", "crash", "--seconds", "2") == 1
    assert "seconds is for slow_start only" in capsys.readouterr().err
    assert not (lab_dir / "faults").exists()
    # A name no record knows is a served model name, for a deployment yet to come.
    assert run_cli("fault", "spark1", "later", "0", "crash_on_start") == 0
    assert "knows no deployment 'later'" in capsys.readouterr().out
    assert faults.read_fault(lab_dir / "faults/later/rank0") == Fault("crash_on_start")


def test_the_lab_wrapper_points_the_stand_in_at_the_lab_faults(lab_dir: Path) -> None:
    lab_mod._write_standins()
    wrapper = lab_dir / "frameworks/vllm/bin/vllm"
    faults.write_fault(faults.fault_path(lab_dir / "faults", "demo", 0), Fault("crash_on_start"))
    env = {k: v for k, v in base_env().items() if k != faults.FAULTS_DIR_ENV}
    r = subprocess.run(
        [str(wrapper), *argv(0, 1, free_port(), free_port(), "demo")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=20,
    )
    assert r.returncode == faults.CRASH_ON_START_EXIT_STATUS
    assert b"lab fault switch crash_on_start" in r.stderr


# ---- the stand-in, for real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    env = dict(os.environ, VLLM_HOST_IP="127.0.0.1", GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = str(ROOT)
    return env


def argv(rank: int, nnodes: int, port: int, master_port: int, served: str = SERVED) -> list[str]:
    args = ["serve", "/models/demo", "--served-model-name", served, "--tensor-parallel-size", "1"]
    args += ["--pipeline-parallel-size", str(nnodes), "--distributed-executor-backend", "mp", "--nnodes", str(nnodes)]
    args += ["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(master_port)]
    return args + (["--host", "127.0.0.1", "--port", str(port)] if rank == 0 else ["--headless"])


class Cluster:
    """Stand-in processes started by one test, all on 127.0.0.1, with their own faults directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.faults = tmp, tmp / "faults"
        self.port, self.master_port = free_port(), free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, rank: int = 0, nnodes: int = 1) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        env = dict(base_env(), **{faults.FAULTS_DIR_ENV: str(self.faults)})
        with (self.tmp / f"out{n}").open("wb") as out, (self.tmp / f"err{n}").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sparkd.lab.standins.vllm", *argv(rank, nnodes, self.port, self.master_port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = self.procs.index(proc)
        return (self.tmp / f"out{n}").read_text() + (self.tmp / f"err{n}").read_text()

    def set(self, rank: int, fault: Fault) -> Path:
        path = faults.fault_path(self.faults, SERVED, rank)
        faults.write_fault(path, fault)
        return path

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            text = r.read().decode()
            return r.status, (
                json.loads(text) if r.getheader("Content-Type", "").startswith("application/json") else text
            )
        finally:
            conn.close()

    def chat(self, timeout: float = 5, **extra: Any) -> Any:
        body = {"model": SERVED, "messages": [{"role": "user", "content": "hello there"}], **extra}
        status, answer = self.request("POST", "/v1/chat/completions", body, timeout)
        assert status == 200, answer
        return answer

    def metrics(self) -> dict[str, float]:
        status, text = self.request("GET", "/metrics")
        assert status == 200
        found = {}
        for line in text.splitlines():
            m = re.fullmatch(
                r'(vllm:[a-z_]+)\{model_name="meta/demo-8b",engine="0"(?:,finished_reason="(\w+)")?\} (\S+)', line
            )
            if m:
                found[m[1] + (f"/{m[2]}" if m[2] else "")] = float(m[3])
        return found

    def healthy(self) -> bool:
        try:
            return bool(self.request("GET", "/health", timeout=1)[0] == 200)
        except OSError:
            return False

    def wait_healthy(self, proc: subprocess.Popen[bytes], timeout: float = 10) -> float:
        """Seconds until /health answers 200; fails if the process exits first or it takes too long."""
        t0 = time.monotonic()
        while not self.healthy():
            assert proc.poll() is None, f"stand-in exited {proc.returncode}:\n{self.output(proc)}"
            assert time.monotonic() - t0 < timeout, f"no /health within {timeout} s:\n{self.output(proc)}"
            time.sleep(0.05)
        return time.monotonic() - t0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 5) -> int:
    return proc.wait(timeout=timeout)


def eventually(what: str, check: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_metrics_advance_with_completions_and_max_tokens_is_honoured(cluster: Cluster) -> None:
    cluster.wait_healthy(cluster.start())
    assert cluster.metrics() == {
        "vllm:num_requests_running": 0,
        "vllm:num_requests_waiting": 0,
        "vllm:prompt_tokens_total": 0,
        "vllm:generation_tokens_total": 0,
        "vllm:request_success_total/stop": 0,
        "vllm:request_success_total/length": 0,
    }
    full = cluster.chat()
    assert full["choices"][0]["finish_reason"] == "stop"
    words = full["usage"]["completion_tokens"]
    assert words == len(full["choices"][0]["message"]["content"].split()) > 1
    t0 = time.monotonic()
    probe = cluster.chat(max_tokens=1)
    assert time.monotonic() - t0 < 1
    assert probe["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "Hello"},
        "finish_reason": "length",
    }
    assert probe["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
    status, legacy = cluster.request("POST", "/v1/completions", {"model": SERVED, "prompt": "a b c", "max_tokens": 3})
    assert status == 200 and legacy["object"] == "text_completion"
    assert legacy["choices"][0]["text"] == "Hello from the" and legacy["usage"]["completion_tokens"] == 3
    m = cluster.metrics()
    assert m["vllm:generation_tokens_total"] == words + 1 + 3
    assert m["vllm:prompt_tokens_total"] == 2 + 2 + 3
    assert (m["vllm:request_success_total/stop"], m["vllm:request_success_total/length"]) == (1, 2)
    status, bad = cluster.request("POST", "/v1/chat/completions", {"messages": [], "max_tokens": 0})
    assert status == 400 and "max_tokens" in bad["error"]["message"]
    status, text = cluster.request("GET", "/metrics")
    assert "# TYPE vllm:generation_tokens_total counter" in text and "# TYPE vllm:num_requests_running gauge" in text


def test_crash_exits_3_and_consumes_the_switch(cluster: Cluster) -> None:
    proc = cluster.start()
    cluster.wait_healthy(proc)
    path = cluster.set(0, Fault("crash"))
    assert wait_exit(proc) == faults.CRASH_EXIT_STATUS == 3
    assert not path.exists()
    assert cluster.output(proc).rstrip().splitlines()[-1].startswith("ERROR")
    assert "EngineCore died unexpectedly" in cluster.output(proc)
    cluster.wait_healthy(cluster.start())  # the restarted process runs normally


def test_wedge_keeps_health_but_hangs_completions_until_cleared(cluster: Cluster) -> None:
    proc = cluster.start()
    cluster.wait_healthy(proc)
    cluster.chat()
    before = cluster.metrics()
    cluster.set(0, Fault("wedge"))
    eventually("the wedge", lambda: "wedged" in cluster.output(proc))
    with pytest.raises(TimeoutError):
        cluster.chat(timeout=0.5, max_tokens=1)
    assert cluster.healthy()
    m = cluster.metrics()
    assert m["vllm:generation_tokens_total"] == before["vllm:generation_tokens_total"]
    assert m["vllm:num_requests_running"] == 1  # the held request
    cluster.set(0, Fault())
    eventually("the held request to finish", lambda: cluster.metrics()["vllm:num_requests_running"] == 0)
    assert cluster.chat(max_tokens=1)["usage"]["completion_tokens"] == 1
    assert proc.poll() is None


def test_slow_start_delays_health(cluster: Cluster) -> None:
    cluster.set(0, Fault("slow_start", 1.5))
    assert cluster.wait_healthy(cluster.start()) >= 1.5
    assert "slow_start: 1.5 s" in cluster.output(cluster.procs[0])


def test_crash_on_start_fails_every_start_until_cleared(cluster: Cluster) -> None:
    path = cluster.set(0, Fault("crash_on_start"))
    for _ in range(2):
        proc = cluster.start()
        assert wait_exit(proc) == faults.CRASH_ON_START_EXIT_STATUS
        assert "EngineCore failed to start" in cluster.output(proc)
        assert path.exists()
    cluster.set(0, Fault())
    cluster.wait_healthy(cluster.start())


def test_unknown_fault_is_ignored_with_a_log_line(cluster: Cluster) -> None:
    proc = cluster.start()
    cluster.wait_healthy(proc)
    path = faults.fault_path(cluster.faults, SERVED, 0)
    path.parent.mkdir(parents=True)
    path.write_text('{"mode": "explode"}')
    eventually("the log line", lambda: "ignored: unknown mode 'explode'" in cluster.output(proc))
    assert cluster.chat(max_tokens=2)["usage"]["completion_tokens"] == 2


def test_wedged_worker_hangs_the_head_silently_and_a_crashed_one_ends_it(cluster: Cluster) -> None:
    head, worker = cluster.start(0, 2), cluster.start(1, 2)
    cluster.wait_healthy(head)
    answer = cluster.chat()["choices"][0]["message"]["content"]
    assert "stage 0 (127.0.0.1) -> stage 1 (127.0.0.1)" in answer
    cluster.set(1, Fault("wedge"))
    eventually("the wedge", lambda: "wedged" in cluster.output(worker))
    with pytest.raises(TimeoutError):
        cluster.chat(timeout=0.5)
    time.sleep(1.2)  # longer than any liveness ping would take: a wedge must not end the head
    assert head.poll() is None and worker.poll() is None
    assert cluster.healthy()
    assert cluster.metrics()["vllm:generation_tokens_total"] == len(answer.split())
    cluster.set(1, Fault())
    eventually("the held request to finish", lambda: cluster.metrics()["vllm:num_requests_running"] == 0)
    assert cluster.chat(max_tokens=1)["usage"]["completion_tokens"] == 1
    cluster.set(1, Fault("crash"))
    assert wait_exit(worker) == faults.CRASH_EXIT_STATUS
    assert wait_exit(head) == 1
    assert "rank 1 went away; exiting (engine dead)" in cluster.output(head)
