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


@dataclass(frozen=True)
class NodePart:
    """A node's part as the head records it."""

    node_name: str
    node_id: str
    rank: int
    address: str
    unit: str


@dataclass(frozen=True)
class DeploymentRecord:
    """What a node persists about a deployment (on the head: every node's part)."""

    spec: DeploymentSpec
    assignment: Assignment
    unit: str
    parts: tuple[NodePart, ...]  # empty on workers
    create_time: float
