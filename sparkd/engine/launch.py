"""Launch plans: a pure function of the spec, the node's assignment and its local facts.

Each node renders its own part (its netdev names can differ from its peers'), so the
head sends the spec and an assignment, never a command line. Only flags the pinned
framework version accepts are emitted (shared/reference/framework-facts.md: vLLM 0.33
native multi-node: `--nnodes/--node-rank/--master-addr/--master-port`, `--headless` on
workers, `--distributed-executor-backend mp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkd.errors import NotSupported
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, unit_name
from sparkd.model.inventory import Twins
from sparkd.model.unit import UnitSpec
from sparkd.render.nccl import nccl_env

#: How long a rank gets after SIGTERM to finish its requests before systemd kills it (`deploy down`).
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalFacts:
    """What a node knows about itself that its launch plan depends on."""

    host_ip: str  # twin-A address
    twins: Twins
    vllm_venv: str
    network_namespace_path: str = ""


def vllm_argv(spec: DeploymentSpec, a: Assignment, venv: str) -> list[str]:
    argv = [
        f"{venv.rstrip('/')}/bin/vllm",
        "serve",
        spec.model,
        "--served-model-name",
        spec.served_model_name,
        "--tensor-parallel-size",
        str(spec.tensor),
        "--pipeline-parallel-size",
        str(spec.pipeline),
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        str(a.nnodes),
        "--node-rank",
        str(a.rank),
        "--master-addr",
        a.master_addr,
        "--master-port",
        str(a.master_port),
    ]
    e = spec.engine
    if e.context_length:
        argv += ["--max-model-len", str(e.context_length)]
    if e.concurrency:
        argv += ["--max-num-seqs", str(e.concurrency)]
    if e.memory_fraction:
        argv += ["--gpu-memory-utilization", f"{e.memory_fraction:g}"]
    if e.kv_cache_dtype != "auto":
        argv += ["--kv-cache-dtype", {"bf16": "bfloat16"}.get(e.kv_cache_dtype, e.kv_cache_dtype)]
    if a.rank == 0:
        argv += ["--host", "0.0.0.0", "--port", str(spec.port)]
    else:
        argv += ["--headless"]
    return argv


def environment(facts: LocalFacts) -> dict[str, str]:
    """Interface variables every layer needs, plus the node's NCCL settings."""
    env = {
        "VLLM_HOST_IP": facts.host_ip,
        "GLOO_SOCKET_IFNAME": facts.twins.a.netdev,
        "TP_SOCKET_IFNAME": facts.twins.a.netdev,
    }
    env.update(nccl_env(facts.twins))
    return env


def plan_unit(spec: DeploymentSpec, a: Assignment, facts: LocalFacts) -> UnitSpec:
    """The transient unit that runs this node's part of `spec`."""
    if spec.framework is not Framework.VLLM:
        raise NotSupported(
            f"framework {spec.framework.value} is accepted by the spec but cannot be launched yet; use vllm",
            field="framework",
        )
    return UnitSpec(
        name=unit_name(spec.name, a.rank),
        argv=vllm_argv(spec, a, facts.vllm_venv),
        description=f"sparkd deployment {spec.name} rank {a.rank} of {a.nnodes} ({spec.framework.value})",
        environment=environment(facts),
        network_namespace_path=facts.network_namespace_path,
        timeout_stop_s=STOP_TIMEOUT_S,
    )
