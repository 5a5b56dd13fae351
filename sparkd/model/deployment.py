"""Deployment types: the spec as the operator wrote it, a node's assignment, and records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sparkd.model.unit import UnitSpec


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
    UNHEALTHY = "UNHEALTHY"


class LaunchMode(Enum):
    """How a framework with several multi-node launchers is started (vLLM: native or on Ray)."""

    NATIVE = "native"
    RAY = "ray"


#: The rendezvous ports (--master-port) the head hands out, one per deployment.
RENDEZVOUS_PORTS = range(29501, 29565)
KV_CACHE_DTYPES = ("auto", "fp8", "bf16")  # vLLM 0.33 --kv-cache-dtype: auto, fp8, bfloat16
#: Speculative decoding methods, in sparkd's words (each launcher translates them, or refuses).
SPECULATIVE_METHODS = ("draft_model", "eagle", "eagle3", "ngram", "mtp")


@dataclass(frozen=True)
class Speculative:
    """Speculative decoding: the method, its draft model and how many tokens it drafts."""

    method: str  # one of SPECULATIVE_METHODS
    model: str = ""  # the draft model's directory ("" for ngram and mtp)
    tokens: int = 0  # draft tokens per step (vLLM num_speculative_tokens, SGLang --speculative-num-draft-tokens)
    steps: int = 0  # SGLang only: --speculative-num-steps (0: unset)
    topk: int = 0  # SGLang only: --speculative-eagle-topk (0: unset)


@dataclass(frozen=True)
class EngineOptions:
    """Engine options the memory planner and the launch plan share; None means the framework's default."""

    context_length: int | None = None  # None: the model's max_position_embeddings
    concurrency: int | None = None  # sequences at full context; the plan counts None as 1
    memory_fraction: float | None = None  # None: the framework's default (vLLM 0.33: 0.92)
    kv_cache_dtype: str = "auto"
    max_batched_tokens: int | None = None  # tokens per scheduler step (vLLM --max-num-batched-tokens, ...)
    quantization: str = ""  # "": the checkpoint's own (pre-quantized checkpoints say it in their config)
    chunked_prefill: bool | None = None  # None: the framework's default
    speculative: Speculative | None = None


@dataclass(frozen=True)
class Runtime:
    """Where the framework comes from: a native environment (the default) or a container image."""

    image: str = ""  # a container image reference; "" runs natively
    venv: str = ""  # native: the framework's environment; "" takes the config's (frameworks.<name>_venv)

    @property
    def container(self) -> bool:
        return bool(self.image)


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
    engine: EngineOptions = EngineOptions()
    mode: LaunchMode = LaunchMode.NATIVE
    runtime: Runtime = Runtime()
    extra_args: tuple[str, ...] = ()  # appended to the framework's own arguments, on every rank
    env: tuple[tuple[str, str], ...] = ()  # extra environment, sorted by name
    command: tuple[str, ...] = ()  # framework `command` only: the argv, with {placeholders}

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


#: Units of a rank besides its main one: "ray" is the Ray node under the head's `vllm serve`.
UNIT_ROLES = ("ray",)


def unit_name(deployment: str, rank: int, role: str = "") -> str:
    """The unit of a deployment's rank (and role); unique across the cluster (and in the lab's one systemd).

    Always derived from a validated deployment name, a rank and a role of UNIT_ROLES, never read from
    disk or a peer.
    """
    return f"sparkd-{deployment}-rank{rank}{'-' + role if role else ''}.service"


def part_units(spec: DeploymentSpec, rank: int) -> tuple[str, ...]:
    """Every unit of a rank's part, in start order (the main unit last): on Ray the head runs its Ray
    node under `vllm serve`."""
    roles = ("ray",) if spec.mode is LaunchMode.RAY and rank == 0 else ()
    return tuple(unit_name(spec.name, rank, r) for r in roles) + (unit_name(spec.name, rank),)


def unit_pattern(deployment: str) -> str:
    """A glob for systemd matching every unit of `deployment` on one node, and more: `*` also
    matches "-", so deployment "a" would match "sparkd-a-rank1-rank0.service" of deployment "a-rank1".
    Filter the matches with `is_unit_of`."""
    return f"sparkd-{deployment}-rank*.service"


def is_unit_of(deployment: str, unit: str) -> bool:
    """Whether `unit` is exactly `unit_name(deployment, rank, role)` for some rank and role."""
    prefix, suffix = f"sparkd-{deployment}-rank", ".service"
    rest = unit[len(prefix) : -len(suffix)] if unit.startswith(prefix) and unit.endswith(suffix) else ""
    rank, _, role = rest.partition("-")
    if role and role not in UNIT_ROLES:
        return False
    return rank.isdecimal() and unit == unit_name(deployment, int(rank), role)


@dataclass(frozen=True)
class NodePart:
    """A node's part as the head records it."""

    node_name: str
    node_id: str
    rank: int
    address: str


@dataclass(frozen=True)
class Failure:
    """Why a rank stopped serving: the first one of an incident."""

    rank: int
    node_name: str
    unit: str
    cause: str
    journal_tail: tuple[str, ...] = ()
    time: float = 0.0


@dataclass(frozen=True)
class Supervision:
    """The head supervisor's persisted record of a deployment (restarts survive daemon restarts)."""

    restarts: int = 0
    failures_in_row: int = 0
    breaker_open: bool = False
    last_failure: Failure | None = None
    deleting: bool = False  # `deploy down` began but could not reach every node: never restart it


@dataclass(frozen=True)
class DeploymentRecord:
    """What a node persists about a deployment (on the head: every node's part)."""

    spec: DeploymentSpec
    assignment: Assignment
    parts: tuple[NodePart, ...]  # empty on workers
    create_time: float
    supervision: Supervision = Supervision()

    @property
    def unit(self) -> str:
        """This node's main unit for the deployment (its rank's health)."""
        return unit_name(self.spec.name, self.assignment.rank)

    @property
    def units(self) -> tuple[str, ...]:
        """Every unit of this node's part, in start order (the main unit last)."""
        return part_units(self.spec, self.assignment.rank)


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
    health: str = ""
    reachable: bool = True


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
    supervision: Supervision = Supervision()
    max_failures: int = 0
    next_restart: float = 0.0  # Unix seconds; 0 when none is planned
    master_port: int = 0


@dataclass(frozen=True)
class PartSummary:
    """A deployment's state on one node, as hellos carry it."""

    name: str
    state: DeploymentState | None
    unit: str
    unit_active_state: str
    failure: str = ""  # why the unit stopped ("exited with status 3"), when it did
    journal_tail: tuple[str, ...] = ()
    exit_time: float = 0.0  # Unix seconds the main process exited; 0 if unknown


@dataclass(frozen=True)
class PartReport:
    """A worker's part as the head knows it: whether the node answers, and its last summary."""

    reachable: bool
    silent_s: float  # seconds since the node's last hello
    summary: PartSummary | None  # None: the node has not reported this deployment


DEAD_STATES = frozenset({"failed", "inactive", "deactivating"})
#: A rank's state while its unit waits for the framework's own launcher to start it (TensorRT-LLM's mpirun).
WAITING = "waiting"


@dataclass(frozen=True)
class PartPlan:
    """A node's answer to "what would you run for this part?" (its own launch plan and the gates' facts)."""

    node_name: str
    rank: int
    address: str
    unit: UnitSpec
    listen_ports: tuple[int, ...]  # TCP ports the part listens on
    busy_ports: tuple[int, ...]  # those something on the node already holds
    memory_bytes: int  # the node's unified memory (MemTotal)
    model_digest: str  # "" when the manifest could not be made (see problems)
    model_files: tuple[tuple[str, int, str], ...]  # (path, size, sha256), sorted by path
    model_config: bytes  # config.json, for the memory planner
    problems: tuple[str, ...] = ()  # what the node cannot do ("no model directory at /models/x")
    properties: dict[str, str] | None = None  # as the node reported them; None: `unit_properties(unit)`
    image_digest: str = ""  # a container runtime's image ID on the node ("" native, or missing: see problems)
