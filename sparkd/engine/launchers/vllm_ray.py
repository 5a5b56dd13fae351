"""vLLM 0.33 on a Ray 2.60 cluster (`mode: ray`): one unit per role.

The head runs a Ray head node (`ray start --head --block`, its GCS on the deployment's rendezvous
port) and, once every worker's Ray node has joined and Ray counts world-size GPUs, `vllm serve
--distributed-executor-backend ray` as its main unit (it reaches the cluster through RAY_ADDRESS).
Each worker's main unit is its Ray node (`ray start --address HEAD:PORT --block`). `--block` keeps
each Ray node in the foreground, so systemd supervises it and stopping a unit stops that node alone
(`ray stop` would stop every Ray process on the machine). A `deploy down` stops `vllm serve`, then the
workers' Ray nodes, then the head's (whose GCS the others would wait for). `--node-ip-address` pins each node to its
interconnect address, and VLLM_HOST_IP is in every unit's environment before Ray starts (vLLM does
not copy it from the driver to the workers). `--num-gpus 1`: one GPU per Spark.
"""

from __future__ import annotations

from sparkd.engine.launchers import vllm
from sparkd.engine.launchers.base import ExeLookup, Node, RankUnit, StartOrder, managed_flag_problems
from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode

#: sparkd stops `vllm serve` (Ray's only driver) before any Ray node, so a node has nothing in flight to
#: drain when it is stopped: without this, `ray start --block` waits out Ray's 30 s drain on SIGTERM.
RAY_ENV = (("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0"),)
RAY_MANAGED = {"--nnodes": "mode (the Ray mode forbids --nnodes, --node-rank and --headless)"}


def ray_common(host_ip: str) -> list[str]:
    return ["--node-ip-address", host_ip, "--num-gpus", "1", "--disable-usage-stats", "--block"]


class VllmRay:
    framework = Framework.VLLM
    mode = LaunchMode.RAY
    order = StartOrder(head_first=("ray",), wait="ray-gpus")
    token_metric = "vllm:generation_tokens_total"

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        bad = vllm.check(spec) + managed_flag_problems(spec.extra_args, RAY_MANAGED, underscores_are_dashes=True)
        if spec.runtime.container:
            bad.append(
                FieldViolation(
                    "runtime.image",
                    "vLLM on Ray runs natively for now (the head's Ray node and vllm serve would be two "
                    "containers that share no /tmp/ray); use the native mode in a container, or a venv",
                )
            )
        return bad

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        gcs = f"{a.master_addr}:{a.master_port}"
        if a.rank > 0:
            ray = [exe("ray"), "start", "--address", gcs, *ray_common(node.host_ip)]
            return (RankUnit("", tuple(ray), RAY_ENV),)
        ray = [exe("ray"), "start", "--head", "--port", str(a.master_port), *ray_common(node.host_ip)]
        serve = vllm.serve_argv(spec, exe) + ["--distributed-executor-backend", "ray"] + vllm.engine_flags(spec)
        serve += ["--host", "0.0.0.0", "--port", str(spec.port)]
        return RankUnit("ray", tuple(ray), RAY_ENV), RankUnit("", tuple(serve), (("RAY_ADDRESS", gcs),))

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        return (spec.port, a.master_port) if a.rank == 0 else ()


LAUNCHER = VllmRay()
