"""Runtimes: where a framework's executables come from, natively or in a container.

A launcher plans a rank as if natively (`executable("vllm")` and the argv after it); the runtime
then turns that into what systemd runs: unchanged for a native environment, `docker run ...` of
the image for a container (`sparkd.engine.runtimes.container`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sparkd.model.unit import UnitSpec


class Runtime(Protocol):
    """One way to run a framework's executables."""

    @property
    def kind(self) -> str:
        """ "native" | "container" (read-only, so that frozen dataclasses implement it)."""
        ...

    def executable(self, name: str) -> str:
        """The path (or name) of the framework's executable `name` ("vllm", "ray", "mpirun", ...)."""
        ...

    def wrap(self, unit: UnitSpec, mounts: Sequence[str]) -> UnitSpec:
        """The unit that runs `unit`'s argv and environment in this runtime. `mounts` are host
        directories the rank reads (the model, a draft model): a container sees each at the same path,
        read-only."""
        ...
