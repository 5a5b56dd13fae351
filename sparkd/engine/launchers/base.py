"""What every launcher shares: the protocol, the node it plans for, its start order, and the check
that extra arguments do not take over a flag sparkd manages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode


@dataclass(frozen=True)
class Node:
    """What a launcher knows of the node it plans for."""

    host_ip: str  # twin A's address: every layer's interface address
    netdev: str  # twin A's netdev (NCCL/Gloo/MPI/UCX interface)
    environment: dict[str, str]  # the interface and NCCL variables every rank gets (`interfaces.environment`)
    peers: tuple[str, ...] = ()  # on the head: the other ranks' addresses, rank 1 first
    launch_agent: str = ""  # sparkd's OpenMPI launch agent (plm_rsh_agent)
    agent_socket: str = ""  # where the launch agent reaches this node's sparkd


@dataclass(frozen=True)
class RankUnit:
    """One unit of a node's part, as a launcher plans it (`sparkd.engine.launch` makes the UnitSpec)."""

    role: str  # "": the rank's main unit; "ray": the Ray node the head's `vllm serve` runs on
    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()  # on top of the node's interface variables


@dataclass(frozen=True)
class StartOrder:
    """How a framework's ranks start across the cluster.

    sparkd starts: the head's `head_first` roles; then every worker's part (highest rank first) unless
    `workers_by_framework`; then waits for `wait` ("ray-gpus": Ray reports world-size GPUs); then the
    head's remaining units (its main unit last).
    """

    head_first: tuple[str, ...] = ()
    workers_by_framework: bool = False
    wait: str = ""


class Launcher(Protocol):
    framework: Framework
    mode: LaunchMode
    order: StartOrder
    #: A Prometheus counter on the head's /metrics that rises when tokens are generated ("" if none).
    token_metric: str

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        """What this framework cannot do with `spec`, each naming the field and the fix."""
        ...

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        """This node's units, in start order; the last is the node's main unit (its health is the rank's)."""
        ...

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        """TCP ports this node's part listens on (the gates check they are free)."""
        ...


class ExeLookup(Protocol):
    def __call__(self, name: str) -> str: ...


def managed_flag_problems(
    extra_args: tuple[str, ...], managed: dict[str, str], *, underscores_are_dashes: bool = False
) -> list[FieldViolation]:
    """`extra_args` that set a flag sparkd sets itself (`managed`: flag -> the spec key that sets it)."""
    bad = []
    for i, arg in enumerate(extra_args):
        flag = arg.split("=", 1)[0]
        if underscores_are_dashes and flag.startswith("--"):
            flag = "--" + flag[2:].replace("_", "-")
        if flag in managed:
            bad.append(
                FieldViolation(
                    f"extra_args[{i}]",
                    f"{flag} is set by sparkd from {managed[flag]}; remove it from extra_args"
                    + (
                        f" and set {managed[flag]}"
                        if managed[flag].startswith(("engine", "parallelism", "port"))
                        else ""
                    ),
                )
            )
    return bad
