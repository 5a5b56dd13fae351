"""Deployment types: the spec as the operator wrote it, a node's assignment, and records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Framework(Enum):
    """Mirrors sparkd.v1.Framework; the values are the spec's YAML spellings."""

    VLLM = "vllm"
    SGLANG = "sglang"
    TRTLLM = "trtllm"
    COMMAND = "command"


class DeploymentState(Enum):
    """Mirrors sparkd.v1.DeploymentState (name after the prefix)."""

    PENDING = "PENDING"
    STARTING = "STARTING"
    READY = "READY"
    FAILED = "FAILED"
    STOPPING = "STOPPING"


@dataclass(frozen=True)
class DeploymentSpec:
    """A validated deployment spec, defaults filled in."""

    name: str
    framework: Framework
    model: str
    served_model_name: str
    pipeline: int
    tensor: int
    port: int = 8000

    @property
    def world_size(self) -> int:
        return self.pipeline * self.tensor


@dataclass(frozen=True)
class Assignment:
    """The part of a deployment a node runs."""

    rank: int
    nnodes: int
    master_addr: str
    master_port: int


def unit_name(deployment: str, rank: int) -> str:
    """The unit of a deployment's rank; unique across the cluster (and in the lab's one systemd).

    Always derived from a validated deployment name and a rank, never read from disk or a peer.
    """
    return f"sparkd-{deployment}-rank{rank}.service"


def unit_pattern(deployment: str) -> str:
    """A glob for systemd matching every rank's unit of `deployment` on one node, and more: `*` also
    matches "-", so deployment "a" would match "sparkd-a-rank1-rank0.service" of deployment "a-rank1".
    Filter the matches with `is_unit_of`."""
    return f"sparkd-{deployment}-rank*.service"


def is_unit_of(deployment: str, unit: str) -> bool:
    """Whether `unit` is exactly `unit_name(deployment, rank)` for some rank."""
    prefix, suffix = f"sparkd-{deployment}-rank", ".service"
    rank = unit[len(prefix) : -len(suffix)] if unit.startswith(prefix) and unit.endswith(suffix) else ""
    return rank.isdecimal() and unit == unit_name(deployment, int(rank))


@dataclass(frozen=True)
class NodePart:
    """A node's part as the head records it."""

    node_name: str
    node_id: str
    rank: int
    address: str


@dataclass(frozen=True)
class DeploymentRecord:
    """What a node persists about a deployment (on the head: every node's part)."""

    spec: DeploymentSpec
    assignment: Assignment
    parts: tuple[NodePart, ...]  # empty on workers
    create_time: float

    @property
    def unit(self) -> str:
        """This node's unit for the deployment."""
        return unit_name(self.spec.name, self.assignment.rank)


@dataclass(frozen=True)
class WorkerInfo:
    """A connected worker, as the peer layer knows it."""

    node_id: str
    name: str
    index: int
    address: str


@dataclass(frozen=True)
class NodeStatus:
    """One node's part, observed."""

    node_name: str
    rank: int
    address: str
    unit: str
    unit_active_state: str


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment and its observed state. `spec` is None for a record that could not be read."""

    name: str
    spec: DeploymentSpec | None
    state: DeploymentState
    message: str
    nodes: tuple[NodeStatus, ...]
    create_time: float
    unit: str
    unit_active_state: str


@dataclass(frozen=True)
class PartSummary:
    """A deployment's state on one node, as hellos carry it."""

    name: str
    state: DeploymentState | None
    unit: str
    unit_active_state: str
