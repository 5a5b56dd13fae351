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
    health: dict[int, int | None] = field(default_factory=dict)  # head API port -> /health status
    deployments: tuple[PartSummary, ...] = ()  # this node's parts, for hellos

    def unit(self, name: str) -> UnitState:
        return self.units.get(name) or UnitState.unknown(name)
