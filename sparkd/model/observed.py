"""The observed-state snapshot: what the state loop last saw of this node.

The state loop (`sparkd.engine.observer`) is the only writer; RPCs and hellos only read,
so nothing on a request path waits for D-Bus, HTTP or NVML. Each field is replaced whole
(never mutated in place), so a reader always sees one consistent observation of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparkd.model.deployment import PartSummary
from sparkd.model.inventory import GpuInfo, LinkState, MemoryInfo, RdmaPort
from sparkd.model.unit import UnitState


@dataclass(frozen=True)
class ServingEvidence:
    """What the head's serving probes last saw on one API port (`sparkd.engine.observer`).

    `/health` says the server process answers; it does not say tokens come out. The serving
    probe does: a rise of the framework's generated-token counter since the last look, or else a
    one-token probe completion answered in time. Counters are consecutive results, so the
    supervisor can tell a blip from a wedge.
    """

    health: int | None = None  # the /health status code; None when nothing answered
    health_failures: int = 0  # consecutive /health probes that were not 200
    models: tuple[str, ...] | None = None  # the ids /v1/models lists; None when unknown
    probe_ok: bool | None = None  # the last serving probe; None: not probed since /health turned 200
    probe_failures: int = 0  # consecutive failed serving probes
    probe_detail: str = ""  # what the last probe saw ("3 new tokens", "no token in 3.0 s")
    tokens: float | None = None  # the generated-token counter at the last look


@dataclass
class Snapshot:
    """This node, as last observed."""

    links: dict[str, LinkState] = field(default_factory=dict)
    rdma: tuple[RdmaPort, ...] = ()
    memory: MemoryInfo = field(default_factory=lambda: MemoryInfo(0, 0))
    kernel: str = ""
    gpus: tuple[GpuInfo, ...] = ()
    gpu_reason: str = "not observed yet"
    units: dict[str, UnitState] = field(default_factory=dict)
    units_generation: int = 0  # bumped by every mutation that writes `units`
    serving: dict[int, ServingEvidence] = field(default_factory=dict)  # head API port -> its evidence
    serving_generation: int = 0  # bumped when a (re)start makes the evidence on a port stale
    deployments: tuple[PartSummary, ...] = ()  # this node's parts, for hellos

    def unit(self, name: str) -> UnitState:
        return self.units.get(name) or UnitState.unknown(name)
