"""Launch plans: a pure function of the spec, the node's assignment and its local facts.

Each node renders its own part (its netdev names can differ from its peers'), so the head sends
the spec and an assignment, never a command line. The framework's launcher
(`sparkd.engine.launchers`) plans the node's units as if natively; this module names them, gives
them every layer's interface variables (`launchers.interfaces`), the spec's extra environment, the
node's network namespace (the lab's) and stop timeout, then wraps them in the runtime (a native
environment or a container image: `sparkd.engine.runtimes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparkd.config import FrameworksConfig
from sparkd.engine.launchers import Launcher, Node, launcher_for, trtllm
from sparkd.engine.launchers.base import RankUnit
from sparkd.engine.launchers.interfaces import environment
from sparkd.engine.runtimes import Runtime
from sparkd.engine.runtimes.native import NativeRuntime
from sparkd.engine.sandbox import sandbox_units, unit_sandbox
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, unit_name
from sparkd.model.host import QosSettings
from sparkd.model.inventory import Twins
from sparkd.model.unit import UnitSpec

#: How long a rank gets after SIGTERM to finish its requests before systemd kills it (`deploy down`).
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalFacts:
    """What a node knows about itself that its launch plan depends on."""

    host_ip: str  # twin-A address
    twins: Twins
    frameworks: FrameworksConfig = field(default_factory=FrameworksConfig)  # the venvs, and as whom units run
    network_namespace_path: str = ""
    agent_socket: str = "/run/sparkd-agent/agent.sock"  # the launch agent's socket, as a unit sees the path
    # RoCE QoS of the host configuration: with it on, every rank gets NCCL_IB_TC, as /etc/nccl.conf has it
    qos: QosSettings = field(default_factory=lambda: QosSettings(enabled=False))

    def venv(self, framework: Framework) -> str:
        f = self.frameworks
        # `command` runs its argv as written (absolute paths): PATH only gets /usr/bin first.
        return {Framework.VLLM: f.vllm_venv, Framework.SGLANG: f.sglang_venv, Framework.TRTLLM: f.trtllm_venv}.get(
            framework, "/usr"
        )


def runtime_for(spec: DeploymentSpec, facts: LocalFacts) -> Runtime:
    """The spec's runtime on this node: its image, else its venv, else the node's venv for the framework."""
    if spec.runtime.container:
        from sparkd.engine.runtimes.container import ContainerRuntime

        return ContainerRuntime(spec.runtime.image)
    return NativeRuntime(spec.runtime.venv or facts.venv(spec.framework))


def mounts(spec: DeploymentSpec) -> tuple[str, ...]:
    """The host directories a rank reads: the model and a draft model."""
    draft = spec.engine.speculative.model if spec.engine.speculative else ""
    return tuple(p for p in (spec.model, draft) if p)


def plan_units(
    spec: DeploymentSpec, a: Assignment, facts: LocalFacts, peers: tuple[str, ...] = ()
) -> tuple[UnitSpec, ...]:
    """This node's units for `spec`, in start order (the main unit last); `peers` are the other ranks'
    addresses, rank 1 first (the head's plan needs them for TensorRT-LLM's mpirun)."""
    launcher = launcher_for(spec)
    runtime = runtime_for(spec, facts)
    node = _node(facts, a, peers)
    return _units(spec, a, facts, launcher.units(spec, a, node, runtime.executable))


def plan_remote_rank(spec: DeploymentSpec, a: Assignment, facts: LocalFacts, command: str) -> UnitSpec:
    """A worker's TensorRT-LLM rank as the head's mpirun asked for it (through the launch agent); raises
    OrtedRefused (a ValueError) for a command that is not an orted launch."""
    runtime = runtime_for(spec, facts)
    rank_unit = trtllm.LAUNCHER.remote_rank(a, command, _node(facts, a, ()), runtime.executable)
    return _units(spec, a, facts, (rank_unit,))[0]


def _node(facts: LocalFacts, a: Assignment, peers: tuple[str, ...]) -> Node:
    env = environment(facts.host_ip, a.master_addr, facts.twins, facts.qos)
    agent = facts.frameworks.launch_agent
    return Node(facts.host_ip, facts.twins.a.netdev, env, peers, agent, facts.agent_socket)


def _units(
    spec: DeploymentSpec, a: Assignment, facts: LocalFacts, rank_units: tuple[RankUnit, ...]
) -> tuple[UnitSpec, ...]:
    launcher = launcher_for(spec)
    runtime = runtime_for(spec, facts)
    node_env = environment(facts.host_ip, a.master_addr, facts.twins, facts.qos)
    units = []
    for rank_unit in rank_units:
        env = dict(node_env)
        env.update(dict(rank_unit.environment))
        env.update(dict(spec.env))
        role = f" ({rank_unit.role})" if rank_unit.role else ""
        unit = UnitSpec(
            name=unit_name(spec.name, a.rank, rank_unit.role),
            argv=rank_unit.argv,
            description=f"sparkd deployment {spec.name} rank {a.rank} of {a.nnodes}{role} ({describe(launcher)})",
            environment=env,
            network_namespace_path=facts.network_namespace_path,
            timeout_stop_s=STOP_TIMEOUT_S,
        )
        units.append(runtime.wrap(unit, mounts(spec)))
    # After the wrap: a container's environment is forwarded by name, and HOME is then the CLI's.
    return sandbox_units(units, unit_sandbox(facts.frameworks, spec.name, spec.runtime.container))


def plan_unit(spec: DeploymentSpec, a: Assignment, facts: LocalFacts, peers: tuple[str, ...] = ()) -> UnitSpec:
    """This node's main unit (its rank's health). A rank that the framework's own launcher starts (a
    TensorRT-LLM worker, through mpirun) has no command line of its own: its argv is empty."""
    units = plan_units(spec, a, facts, peers)
    if units:
        return units[-1]
    return UnitSpec(
        name=unit_name(spec.name, a.rank),
        argv=(),
        description=f"sparkd deployment {spec.name} rank {a.rank} of {a.nnodes} (started by the head's mpirun)",
        network_namespace_path=facts.network_namespace_path,
        timeout_stop_s=STOP_TIMEOUT_S,
    )


def describe(launcher: Launcher) -> str:
    mode = f" on {launcher.mode.value}" if launcher.mode.value != "native" else ""
    return f"{launcher.framework.value}{mode}"
