"""The native runtime: the framework's executables from a virtual environment on the node."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sparkd.model.unit import UnitSpec

#: PATH for a native rank: the environment's bin first (launchers such as trtllm-llmapi-launch and
#: mpirun's remote daemons find their siblings there), then the system's.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Executables that come from the distribution, not from the framework's environment.
SYSTEM_TOOLS = {"mpirun": "/usr/bin/mpirun", "orted": "/usr/bin/orted"}  # Debian's and Ubuntu's openmpi-bin


@dataclass(frozen=True)
class NativeRuntime:
    """Runs `<venv>/bin/<name>`."""

    venv: str
    kind: str = "native"

    @property
    def bin(self) -> str:
        return f"{self.venv.rstrip('/')}/bin"

    def executable(self, name: str) -> str:
        return SYSTEM_TOOLS.get(name, f"{self.bin}/{name}")

    def wrap(self, unit: UnitSpec, mounts: Sequence[str]) -> UnitSpec:
        env = dict(unit.environment)
        env.setdefault("PATH", f"{self.bin}:{SYSTEM_PATH}")
        return dataclasses.replace(unit, environment=env)
