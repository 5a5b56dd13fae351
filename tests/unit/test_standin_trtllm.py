"""The TensorRT-LLM stand-ins (sparkd/lab/standins/trtllm.py) run for real on 127.0.0.1: two MPI ranks with
OMPI_COMM_WORLD_* set by hand, the launcher, and (where OpenMPI's mpirun is installed: Debian `openmpi-bin`)
`mpirun -np 2` through the lab's wrappers. Every process is killed by its handle at the end."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkd.lab import faults
from sparkd.lab import lab as lab_mod
from sparkd.lab.faults import Fault
from sparkd.lab.standins import trtllm
from tests.unit.standin_helpers import Procs, base_env, chat, free_port, request, wait_status

MODULE = "sparkd.lab.standins.trtllm"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
MODEL = "/models/demo"


class Ranks(Procs):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.port, self.master_port = free_port(), free_port()

    def env(self, rank: int | None, **extra: str) -> dict[str, str]:
        env = base_env(self.tmp, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.master_port), NCCL_SOCKET_IFNAME="=lo")
        if rank is not None:
            env.update(OMPI_COMM_WORLD_RANK=str(rank), OMPI_COMM_WORLD_SIZE="2")
        return {k: v for k, v in dict(env, **extra).items() if v != "-"}  # "-" removes a variable

    def serve_argv(self, pp: int = 2, *extra: str) -> list[str]:
        return [
            MODEL,
            "--tp_size",
            "1",
            "--pp_size",
            str(pp),
            "--gpus_per_node",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *extra,
        ]

    def rank(self, rank: int | None, *extra: str, pp: int = 2, **env: str) -> subprocess.Popen[bytes]:
        return self.start(["serve", *self.serve_argv(pp, *extra)], self.env(rank, **env), MODULE)


@pytest.fixture
def ranks(tmp_path: Path) -> Iterator[Ranks]:
    r = Ranks(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_two_mpi_ranks_serve_through_rank_0(ranks: Ranks) -> None:
    head, stage = ranks.rank(0), ranks.rank(1)
    wait_status(ranks, head, ranks.port, "/health")
    assert "Application startup complete." in ranks.output(head)
    answer = chat(ranks.port)
    assert "stage 0 (127.0.0.1) -> stage 1 (127.0.0.1)" in answer["choices"][0]["message"]["content"]
    status, stats = request(ranks.port, "GET", "/metrics")  # JSON iteration stats, each handed out once
    assert status == 200 and isinstance(stats, list) and len(stats) == 1 and stats[0]["numCompletedRequests"] == 1
    assert request(ranks.port, "GET", "/metrics")[1] == []
    assert request(ranks.port, "GET", "/prometheus/metrics")[0] == 404  # no return_perf_metrics
    status, listed = request(ranks.port, "GET", "/v1/models")
    assert status == 200 and listed["data"][0]["id"] == MODEL
    assert request(ranks.port, "GET", "/health_generate")[0] == 200
    status, legacy = request(ranks.port, "POST", "/v1/completions", {"prompt": "a b", "max_tokens": 2})
    assert status == 200 and legacy["choices"][0]["text"] == "Hello from"
    assert "MPI rank 1 of 2 on lo (127.0.0.1)" in ranks.output(stage)


def test_return_perf_metrics_turns_on_prometheus(ranks: Ranks) -> None:
    config = ranks.tmp / "extra.yml"
    config.write_text("return_perf_metrics: true\nkv_cache_config:\n  free_gpu_memory_fraction: 0.8\n")
    head = ranks.rank(None, "--config", str(config), pp=1)
    wait_status(ranks, head, ranks.port, "/health")
    chat(ranks.port, max_tokens=3)
    status, text = request(ranks.port, "GET", "/prometheus/metrics")
    assert (
        status == 200 and 'trtllm_request_success_total{model_name="/models/demo",finished_reason="length"} 1.0' in text
    )
    assert 'trtllm_prompt_tokens_total{model_name="/models/demo"} 2.0' in text


def test_a_killed_rank_ends_the_other(ranks: Ranks) -> None:
    head, stage = ranks.rank(0), ranks.rank(1)
    wait_status(ranks, head, ranks.port, "/health")
    head.kill()
    assert stage.wait(timeout=10) == 1
    assert "the head rank went away" in ranks.output(stage)
    ranks.master_port = free_port()
    head, stage = ranks.rank(0), ranks.rank(1)
    wait_status(ranks, head, ranks.port, "/health")
    faults.write_fault(faults.fault_path(ranks.tmp / "faults", MODEL, 1), Fault("crash"))
    assert stage.wait(timeout=10) == faults.CRASH_EXIT_STATUS
    assert head.wait(timeout=10) == 1
    assert "rank 1 went away" in ranks.output(head)


@pytest.mark.parametrize(
    ("rank", "env", "pp", "code", "why"),
    [
        (None, {}, 2, 1, "tp_size x pp_size = 2 needs 2 MPI ranks"),
        (0, {"OMPI_COMM_WORLD_SIZE": "3"}, 2, 1, "the MPI world has 3 ranks but tp_size x pp_size = 2"),
        (0, {"MASTER_ADDR": "-"}, 2, 1, "MASTER_ADDR is not set"),
        (0, {"NCCL_SOCKET_IFNAME": "-"}, 2, 1, "NCCL_SOCKET_IFNAME is not set"),
        (0, {"NCCL_SOCKET_IFNAME": "=nosuchnetdev0"}, 2, 1, "no interface 'nosuchnetdev0'"),
    ],
)
def test_start_up_rules_exit_1(
    ranks: Ranks, rank: int | None, env: dict[str, str], pp: int, code: int, why: str
) -> None:
    proc = ranks.rank(rank, pp=pp, **env)
    assert proc.wait(timeout=20) == code
    assert why in ranks.output(proc)


@pytest.mark.parametrize("bad", [["--tp-size", "1"], ["--engine_dir", "/e"], ["--backend", "tensorrt_x"]])
def test_flags_trtllm_serve_refuses_exit_2(ranks: Ranks, bad: list[str]) -> None:
    proc = ranks.start(["serve", MODEL, *bad], ranks.env(None), MODULE)
    assert proc.wait(timeout=20) == 2


@pytest.mark.skipif(not HAVE_TORCH, reason="the gloo rendezvous needs torch")
def test_gloo_needs_gloo_socket_ifname(ranks: Ranks) -> None:
    proc = ranks.rank(0, GLOO_SOCKET_IFNAME="-")
    assert proc.wait(timeout=30) == 1
    assert "GLOO_SOCKET_IFNAME is not set" in ranks.output(proc)


@pytest.mark.skipif(HAVE_TORCH, reason="torch is importable here")
def test_insisting_on_gloo_without_torch_fails_clearly(ranks: Ranks) -> None:
    proc = ranks.rank(0, SPARKD_LAB_RENDEZVOUS="gloo")
    assert proc.wait(timeout=30) == 1
    assert "SPARKD_LAB_RENDEZVOUS=gloo but torch is not importable" in ranks.output(proc)


def test_interface_lookup_reads_ncclsocket_ifname_as_nccl_does() -> None:
    assert trtllm.interface_ipv4("=lo") == ("lo", "127.0.0.1")
    assert trtllm.interface_ipv4("l,eth") == ("lo", "127.0.0.1")  # a prefix, the first of a list
    with pytest.raises(OSError):
        trtllm.interface_ipv4("^docker")


def test_the_launcher_strips_mpi_variables_on_rank_0_only(ranks: Ranks) -> None:
    env = ranks.env(0, OMPI_MCA_x="1", UCX_NET_DEVICES="lo")
    rank0 = subprocess.run([*launcher(), "env"], env=env, capture_output=True, text=True, timeout=20)
    assert rank0.returncode == 0 and "tllm_mpi_size=2" in rank0.stdout and "TLLM_SPAWN_PROXY_PROCESS=1" in rank0.stdout
    assert "OMPI_" not in rank0.stdout and "UCX_" not in rank0.stdout and "MASTER_PORT=" in rank0.stdout
    rank1 = subprocess.run([*launcher(), "env"], env=ranks.env(1), capture_output=True, text=True, timeout=20)
    assert "OMPI_COMM_WORLD_RANK=1" in rank1.stdout and "tllm_mpi_size=2" in rank1.stdout
    assert subprocess.run(launcher(), env=env, capture_output=True, timeout=20).returncode == 2


def launcher() -> list[str]:
    return [sys.executable, "-m", MODULE, "launch"]


@pytest.fixture
def wrappers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(lab_mod, "LAB_DIR", tmp_path / "lab")
    lab_mod._write_standins()
    return tmp_path / "lab/frameworks"


def test_the_launcher_runs_trtllm_serve_through_the_lab_wrappers(ranks: Ranks, wrappers: Path) -> None:
    bin_dir = wrappers / "trtllm/bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["trtllm-llmapi-launch", "trtllm-serve"]
    assert (wrappers / "sglang/bin/sglang").exists() and (wrappers / "vllm/bin/vllm").exists()
    path = f"{bin_dir}:{os.environ['PATH']}"
    head = ranks.start(
        [str(bin_dir / "trtllm-llmapi-launch"), "trtllm-serve", *ranks.serve_argv()], ranks.env(0, PATH=path)
    )
    stage = ranks.start(
        [str(bin_dir / "trtllm-llmapi-launch"), "trtllm-serve", *ranks.serve_argv()], ranks.env(1, PATH=path)
    )
    wait_status(ranks, head, ranks.port, "/health")
    assert "stage 1" in chat(ranks.port)["choices"][0]["message"]["content"]
    assert stage.poll() is None


MPIRUN = shutil.which("mpirun")


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (Debian package openmpi-bin)")
def test_mpirun_np_2_runs_the_launcher_and_serves(ranks: Ranks, wrappers: Path) -> None:
    assert MPIRUN is not None
    bin_dir = wrappers / "trtllm/bin"
    env = ranks.env(None, PATH=f"{bin_dir}:{os.environ['PATH']}", OMPI_ALLOW_RUN_AS_ROOT="1")
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    mpi = [MPIRUN, "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,tcp"]
    mpi += ["--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]
    for var in ("MASTER_ADDR", "MASTER_PORT", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "PATH", "PYTHONPATH"):
        mpi += ["-x", var]
    proc = ranks.start(
        [*mpi, "-x", faults.FAULTS_DIR_ENV, "trtllm-llmapi-launch", "trtllm-serve", *ranks.serve_argv()], env
    )
    wait_status(ranks, proc, ranks.port, "/health", timeout=60)
    assert "stage 0 (127.0.0.1) -> stage 1 (127.0.0.1)" in chat(ranks.port)["choices"][0]["message"]["content"]
    lab_faults = faults.faults_dir(wrappers.parent)  # the wrappers point the stand-ins at the lab's faults
    faults.write_fault(faults.fault_path(lab_faults, MODEL, 1), Fault("crash"))
    assert proc.wait(timeout=30) != 0  # a rank that dies ends the job
