"""Launch plans: vLLM native multi-node argv and environment, checked against the stand-in's parser
(which mirrors vLLM 0.33's flags and rules)."""

from __future__ import annotations

import pytest

from sparkd.config import FrameworksConfig
from sparkd.engine.launch import LocalFacts, plan_unit
from sparkd.lab.standins import vllm as standin
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework
from sparkd.model.inventory import RdmaPort, Twins

TWINS = Twins(
    RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
    RdmaPort("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE"),
)
SPEC = DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", pipeline=2, tensor=1, port=8000)


def facts(ip: str) -> LocalFacts:
    return LocalFacts(
        host_ip=ip,
        twins=TWINS,
        frameworks=FrameworksConfig(vllm_venv="/opt/vllm"),
        network_namespace_path="/run/netns/x",
    )


def test_head_argv_and_env() -> None:
    unit = plan_unit(SPEC, Assignment(0, 2, "192.168.100.1", 29501), facts("192.168.100.1"))
    assert unit.name == "sparkd-demo-rank0.service"
    assert list(unit.argv) == [
        "/opt/vllm/bin/vllm",
        "serve",
        "/models/demo",
        "--served-model-name",
        "demo",
        "--tensor-parallel-size",
        "1",
        "--pipeline-parallel-size",
        "2",
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
        "--node-rank",
        "0",
        "--master-addr",
        "192.168.100.1",
        "--master-port",
        "29501",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert {k: unit.environment[k] for k in ("VLLM_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_IB_HCA")} == {
        "VLLM_HOST_IP": "192.168.100.1",
        "GLOO_SOCKET_IFNAME": "enp1s0f1np1",
        "NCCL_IB_HCA": "=rocep1s0f1,roceP2p1s0f1",
    }
    assert unit.network_namespace_path == "/run/netns/x"


def test_worker_is_headless_without_http_flags() -> None:
    argv = plan_unit(SPEC, Assignment(1, 2, "192.168.100.1", 29501), facts("192.168.100.2")).argv
    assert argv[-1] == "--headless" and "--port" not in argv and "--host" not in argv
    assert argv[argv.index("--node-rank") + 1] == "1"


@pytest.mark.parametrize("rank", [0, 1])
def test_standin_parser_accepts_exactly_what_sparkd_emits(rank: int) -> None:
    argv = plan_unit(SPEC, Assignment(rank, 2, "192.168.100.1", 29501), facts("192.168.100.1")).argv
    args = standin.parser().parse_args(list(argv[1:]))
    assert (args.nnodes, args.node_rank, args.headless) == (2, rank, rank == 1)


def test_standin_parser_refuses_unknown_flags() -> None:
    with pytest.raises(SystemExit) as e:
        standin.parser().parse_args(["serve", "/m", "--speculative-model", "/x"])
    assert e.value.code == 2


def test_engine_options_become_flags_the_standin_accepts() -> None:
    import dataclasses

    from sparkd.model.deployment import EngineOptions

    spec = dataclasses.replace(SPEC, engine=EngineOptions(8192, 4, 0.9, "bf16"))
    argv = list(plan_unit(spec, Assignment(0, 2, "192.168.100.1", 29501), facts("192.168.100.1")).argv)
    for flag, value in (
        ("--max-model-len", "8192"),
        ("--max-num-seqs", "4"),
        ("--gpu-memory-utilization", "0.9"),
        ("--kv-cache-dtype", "bfloat16"),  # vLLM's spelling
    ):
        assert argv[argv.index(flag) + 1] == value
    args = standin.parser().parse_args(argv[1:])
    assert (args.max_model_len, args.kv_cache_dtype) == (8192, "bfloat16")
