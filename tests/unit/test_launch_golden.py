"""Golden launch plans: every seed configuration (tests/unit/test_launch_golden_specs.py) planned for both
nodes of a two-Spark cluster, argv and environment written out literally, each command line parsed by the
stand-in of its framework, whose parser is built from the facts file's flag table (so a flag that the
pinned version lacks fails here, not on a Spark)."""

from __future__ import annotations

import pytest

from sparkd.config import FrameworksConfig
from sparkd.engine.launch import LocalFacts, plan_units
from sparkd.engine.spec import parse_yaml
from sparkd.lab.standins import flags
from sparkd.model.deployment import Assignment
from sparkd.model.inventory import RdmaPort, Twins
from sparkd.model.unit import UnitSpec
from tests.unit.test_launch_golden_specs import SEED

TWINS = Twins(
    RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
    RdmaPort("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE"),
)
HEAD, WORKER = "192.168.100.1", "192.168.100.2"


def plan(key: str, rank: int) -> tuple[UnitSpec, ...]:
    facts = LocalFacts(
        host_ip=(HEAD, WORKER)[rank],
        twins=TWINS,
        frameworks=FrameworksConfig(vllm_venv="/opt/vllm", sglang_venv="/opt/sglang", trtllm_venv="/opt/trtllm"),
    )
    peers = (WORKER,) if rank == 0 else ()
    return plan_units(parse_yaml(SEED[key]), Assignment(rank, 2, HEAD, 29501), facts, peers)


GOLDEN = {
    ("chatbot", 0): [
        (
            "sparkd-chatbot-rank0-ray.service",
            [
                "/opt/vllm/bin/ray",
                "start",
                "--head",
                "--port",
                "29501",
                "--node-ip-address",
                "192.168.100.1",
                "--num-gpus",
                "1",
                "--disable-usage-stats",
                "--block",
            ],
        ),
        (
            "sparkd-chatbot-rank0.service",
            [
                "/opt/vllm/bin/vllm",
                "serve",
                "/models/llama-3.1-70b-instruct",
                "--served-model-name",
                "llama-3.1-70b-instruct",
                "--tensor-parallel-size",
                "1",
                "--pipeline-parallel-size",
                "2",
                "--distributed-executor-backend",
                "ray",
                "--max-model-len",
                "16384",
                "--max-num-seqs",
                "32",
                "--gpu-memory-utilization",
                "0.85",
                "--max-num-batched-tokens",
                "8192",
                "--speculative-config",
                '{"method":"draft_model","model":"/models/llama-3.1-8b-instruct","num_speculative_tokens":5}',
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
            ],
        ),
    ],
    ("chatbot", 1): [
        (
            "sparkd-chatbot-rank1.service",
            [
                "/opt/vllm/bin/ray",
                "start",
                "--address",
                "192.168.100.1:29501",
                "--node-ip-address",
                "192.168.100.2",
                "--num-gpus",
                "1",
                "--disable-usage-stats",
                "--block",
            ],
        ),
    ],
    ("chatbot-native", 0): [
        (
            "sparkd-chatbot-rank0.service",
            [
                "/opt/vllm/bin/vllm",
                "serve",
                "/models/llama-3.1-70b-instruct",
                "--served-model-name",
                "llama-3.1-70b-instruct",
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
                "--max-model-len",
                "16384",
                "--max-num-seqs",
                "32",
                "--gpu-memory-utilization",
                "0.85",
                "--max-num-batched-tokens",
                "8192",
                "--speculative-config",
                '{"method":"draft_model","model":"/models/llama-3.1-8b-instruct","num_speculative_tokens":5}',
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
            ],
        ),
    ],
    ("chatbot-native", 1): [
        (
            "sparkd-chatbot-rank1.service",
            [
                "/opt/vllm/bin/vllm",
                "serve",
                "/models/llama-3.1-70b-instruct",
                "--served-model-name",
                "llama-3.1-70b-instruct",
                "--tensor-parallel-size",
                "1",
                "--pipeline-parallel-size",
                "2",
                "--distributed-executor-backend",
                "mp",
                "--nnodes",
                "2",
                "--node-rank",
                "1",
                "--master-addr",
                "192.168.100.1",
                "--master-port",
                "29501",
                "--max-model-len",
                "16384",
                "--max-num-seqs",
                "32",
                "--gpu-memory-utilization",
                "0.85",
                "--max-num-batched-tokens",
                "8192",
                "--speculative-config",
                '{"method":"draft_model","model":"/models/llama-3.1-8b-instruct","num_speculative_tokens":5}',
                "--headless",
            ],
        ),
    ],
    ("llama-405b-fp4", 0): [
        (
            "sparkd-llama-405b-rank0-ray.service",
            [
                "/opt/vllm/bin/ray",
                "start",
                "--head",
                "--port",
                "29501",
                "--node-ip-address",
                "192.168.100.1",
                "--num-gpus",
                "1",
                "--disable-usage-stats",
                "--block",
            ],
        ),
        (
            "sparkd-llama-405b-rank0.service",
            [
                "/opt/vllm/bin/vllm",
                "serve",
                "/models/llama-3.1-405b-instruct-fp4",
                "--served-model-name",
                "llama-405b",
                "--tensor-parallel-size",
                "1",
                "--pipeline-parallel-size",
                "2",
                "--distributed-executor-backend",
                "ray",
                "--max-model-len",
                "8192",
                "--max-num-seqs",
                "4",
                "--gpu-memory-utilization",
                "0.9",
                "--quantization",
                "modelopt_fp4",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
            ],
        ),
    ],
    ("llama-405b-fp4", 1): [
        (
            "sparkd-llama-405b-rank1.service",
            [
                "/opt/vllm/bin/ray",
                "start",
                "--address",
                "192.168.100.1:29501",
                "--node-ip-address",
                "192.168.100.2",
                "--num-gpus",
                "1",
                "--disable-usage-stats",
                "--block",
            ],
        ),
    ],
    ("sglang-eagle", 0): [
        (
            "sparkd-agents-rank0.service",
            [
                "/usr/bin/docker",
                "run",
                "--rm",
                "--name",
                "sparkd-agents-rank0",
                "--pull",
                "never",
                "--init",
                "--stop-timeout",
                "30",
                "--log-driver",
                "none",
                "--network",
                "host",
                "--shm-size",
                "16g",
                "--ulimit",
                "memlock=-1:-1",
                "--ulimit",
                "stack=67108864",
                "--gpus",
                "all",
                "--device",
                "/dev/infiniband",
                "--cap-drop",
                "ALL",
                "--cap-add",
                "IPC_LOCK",
                "--security-opt",
                "no-new-privileges",
                "--mount",
                "type=bind,source=/models/llama-3.1-70b-instruct,target=/models/llama-3.1-70b-instruct,readonly",
                "--mount",
                "type=bind,source=/models/eagle3-llama3.1-70b,target=/models/eagle3-llama3.1-70b,readonly",
                "-e",
                "GLOO_SOCKET_IFNAME",
                "-e",
                "MASTER_ADDR",
                "-e",
                "NCCL_IB_HCA",
                "-e",
                "NCCL_SOCKET_IFNAME",
                "-e",
                "OMPI_MCA_btl_tcp_if_include",
                "-e",
                "OMPI_MCA_oob_tcp_if_include",
                "-e",
                "SGLANG_HOST_IP",
                "-e",
                "TP_SOCKET_IFNAME",
                "-e",
                "UCX_NET_DEVICES",
                "-e",
                "VLLM_HOST_IP",
                "lmsysorg/sglang:v0.5.23",
                "sglang",
                "serve",
                "--model-path",
                "/models/llama-3.1-70b-instruct",
                "--served-model-name",
                "agents",
                "--tp-size",
                "2",
                "--pp-size",
                "1",
                "--dist-init-addr",
                "192.168.100.1:29501",
                "--nnodes",
                "2",
                "--node-rank",
                "0",
                "--host",
                "0.0.0.0",
                "--port",
                "30000",
                "--enable-metrics",
                "--mem-fraction-static",
                "0.8",
                "--chunked-prefill-size",
                "4096",
                "--speculative-algorithm",
                "EAGLE3",
                "--speculative-draft-model-path",
                "/models/eagle3-llama3.1-70b",
                "--speculative-num-steps",
                "5",
                "--speculative-eagle-topk",
                "8",
                "--speculative-num-draft-tokens",
                "64",
            ],
        ),
    ],
    ("sglang-eagle", 1): [
        (
            "sparkd-agents-rank1.service",
            [
                "/usr/bin/docker",
                "run",
                "--rm",
                "--name",
                "sparkd-agents-rank1",
                "--pull",
                "never",
                "--init",
                "--stop-timeout",
                "30",
                "--log-driver",
                "none",
                "--network",
                "host",
                "--shm-size",
                "16g",
                "--ulimit",
                "memlock=-1:-1",
                "--ulimit",
                "stack=67108864",
                "--gpus",
                "all",
                "--device",
                "/dev/infiniband",
                "--cap-drop",
                "ALL",
                "--cap-add",
                "IPC_LOCK",
                "--security-opt",
                "no-new-privileges",
                "--mount",
                "type=bind,source=/models/llama-3.1-70b-instruct,target=/models/llama-3.1-70b-instruct,readonly",
                "--mount",
                "type=bind,source=/models/eagle3-llama3.1-70b,target=/models/eagle3-llama3.1-70b,readonly",
                "-e",
                "GLOO_SOCKET_IFNAME",
                "-e",
                "MASTER_ADDR",
                "-e",
                "NCCL_IB_HCA",
                "-e",
                "NCCL_SOCKET_IFNAME",
                "-e",
                "OMPI_MCA_btl_tcp_if_include",
                "-e",
                "OMPI_MCA_oob_tcp_if_include",
                "-e",
                "SGLANG_HOST_IP",
                "-e",
                "TP_SOCKET_IFNAME",
                "-e",
                "UCX_NET_DEVICES",
                "-e",
                "VLLM_HOST_IP",
                "lmsysorg/sglang:v0.5.23",
                "sglang",
                "serve",
                "--model-path",
                "/models/llama-3.1-70b-instruct",
                "--served-model-name",
                "agents",
                "--tp-size",
                "2",
                "--pp-size",
                "1",
                "--dist-init-addr",
                "192.168.100.1:29501",
                "--nnodes",
                "2",
                "--node-rank",
                "1",
                "--host",
                "0.0.0.0",
                "--port",
                "30000",
                "--enable-metrics",
                "--mem-fraction-static",
                "0.8",
                "--chunked-prefill-size",
                "4096",
                "--speculative-algorithm",
                "EAGLE3",
                "--speculative-draft-model-path",
                "/models/eagle3-llama3.1-70b",
                "--speculative-num-steps",
                "5",
                "--speculative-eagle-topk",
                "8",
                "--speculative-num-draft-tokens",
                "64",
            ],
        ),
    ],
    ("trtllm-pp2", 0): [
        (
            "sparkd-llama-405b-trt-rank0.service",
            [
                "/usr/bin/mpirun",
                "-np",
                "2",
                "--host",
                "192.168.100.1:1,192.168.100.2:1",
                "--map-by",
                "ppr:1:node",
                "--bind-to",
                "none",
                "--mca",
                "plm_rsh_agent",
                "/usr/lib/sparkd/sparkd-launch-agent",
                "--mca",
                "plm_rsh_no_tree_spawn",
                "1",
                "/opt/trtllm/bin/trtllm-llmapi-launch",
                "/opt/trtllm/bin/trtllm-serve",
                "/models/llama-3.1-405b-instruct-fp4",
                "--tp_size",
                "1",
                "--pp_size",
                "2",
                "--gpus_per_node",
                "1",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
                "--max_batch_size",
                "4",
                "--max_num_tokens",
                "2048",
                "--log_level",
                "info",
            ],
        ),
    ],
    ("trtllm-pp2", 1): [],
}


@pytest.mark.parametrize(("key", "rank"), sorted(GOLDEN))
def test_seed_configuration_plans_exactly(key: str, rank: int) -> None:
    assert [(u.name, list(u.argv)) for u in plan(key, rank)] == GOLDEN[(key, rank)]


def interface_env(ip: str) -> dict[str, str]:
    return {
        "VLLM_HOST_IP": ip,
        "SGLANG_HOST_IP": ip,
        "MASTER_ADDR": HEAD,
        "GLOO_SOCKET_IFNAME": "enp1s0f1np1",
        "TP_SOCKET_IFNAME": "enp1s0f1np1",
        "UCX_NET_DEVICES": "enp1s0f1np1",
        "OMPI_MCA_btl_tcp_if_include": "enp1s0f1np1",
        "OMPI_MCA_oob_tcp_if_include": "enp1s0f1np1",
        "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",
        "NCCL_IB_HCA": "=rocep1s0f1,roceP2p1s0f1",
    }


def test_every_layer_gets_its_interface_on_every_unit() -> None:
    ray_head, serve = plan("chatbot", 0)
    (ray_worker,) = plan("chatbot", 1)
    cache = "/var/cache/sparkd/chatbot"  # the dynamic user's CacheDirectory= (sparkd.engine.sandbox)
    path = {"PATH": "/opt/vllm/bin:/usr/local/bin:/usr/bin:/bin", "HOME": cache, "XDG_CACHE_HOME": cache}
    drain = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # vllm serve, Ray's only driver, is stopped first
    assert dict(ray_head.environment) == interface_env(HEAD) | drain | path
    assert dict(serve.environment) == interface_env(HEAD) | {"RAY_ADDRESS": f"{HEAD}:29501"} | path
    assert dict(ray_worker.environment) == interface_env(WORKER) | drain | path
    (mpirun,) = plan("trtllm-pp2", 0)
    assert dict(mpirun.environment) == interface_env(HEAD) | {
        "MASTER_PORT": "29501",
        "SPARKD_LAUNCH_AGENT_SOCKET": "/run/sparkd-agent/agent.sock",
        "PATH": "/opt/trtllm/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/var/cache/sparkd/llama-405b-trt",
        "XDG_CACHE_HOME": "/var/cache/sparkd/llama-405b-trt",
    }


def test_a_container_gets_the_environment_by_name_never_by_value_in_its_argv() -> None:
    (unit,) = plan("sglang-eagle", 1)
    cache = "/var/cache/sparkd/agents"  # the docker CLI's HOME, not forwarded into the container
    assert dict(unit.environment) == interface_env(WORKER) | {"HOME": cache, "XDG_CACHE_HOME": cache}
    assert "HOME" not in unit.argv
    assert not any(WORKER in arg for arg in unit.argv[: unit.argv.index("lmsysorg/sglang:v0.5.23")])


def _framework_argv(argv: list[str]) -> tuple[str, list[str]]:
    """The entrypoint and its arguments, out of a docker run or an mpirun command line."""
    for i, arg in enumerate(argv):
        base = arg.rsplit("/", 1)[-1]
        if base in ("vllm", "sglang", "ray") and argv[i + 1] in ("serve", "start"):
            return f"{base} {argv[i + 1]}", argv[i + 2 :]
        if base == "trtllm-serve":
            return "trtllm-serve", argv[i + 1 :]
    raise AssertionError(f"no framework entrypoint in {argv}")


@pytest.mark.parametrize(("key", "rank"), sorted(GOLDEN))
def test_the_stand_in_parsers_from_the_flag_table_accept_every_planned_command_line(key: str, rank: int) -> None:
    for unit in plan(key, rank):
        entrypoint, args = _framework_argv(list(unit.argv))
        flags.parser(entrypoint).parse_args(args)  # exits 2 on a flag the table does not have


@pytest.mark.parametrize(
    ("entrypoint", "args"),
    [
        ("vllm serve", ["/m", "--speculative-model", "/d"]),
        ("vllm serve", ["/m", "--num-speculative-tokens", "5"]),
        ("vllm serve", ["/m", "--quantization", "fp4"]),
        ("sglang serve", ["--model-path", "/m", "--tp", "2"]),
        ("trtllm-serve", ["/m", "--engine_dir", "/e"]),
        ("trtllm-serve", ["/m", "--tp-size", "2"]),
    ],
)
def test_the_seeds_outdated_flags_are_refused_by_the_table(entrypoint: str, args: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        flags.parser(entrypoint).parse_args(args)
    assert e.value.code == 2
