"""systemd units as the engine plans them and as systemd reports them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UnitSpec:
    """A transient service to start."""

    name: str  # "sparkd-demo-rank0.service"
    argv: Sequence[str]
    description: str
    environment: Mapping[str, str] = field(default_factory=dict)
    # Joins this network namespace (NetworkNamespacePath=); the lab sets it per node.
    network_namespace_path: str = ""
    service_type: str = "exec"  # exec | notify | simple
    restart: str = "no"
    working_directory: str = ""


@dataclass(frozen=True)
class UnitState:
    """What systemd says about a unit."""

    name: str
    load_state: str  # "loaded", "not-found"
    active_state: str  # "active", "activating", "inactive", "failed", ...
    sub_state: str

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "activating", "reloading")

    @classmethod
    def unknown(cls, name: str) -> UnitState:
        """Not observed yet (or the observation failed)."""
        return cls(name, "unknown", "unknown", "unknown")
