"""Lab stand-in for NVML: GPU answers recorded from a GB10 (shared/reference/recorded-outputs.md 2.6)."""

from __future__ import annotations

import json
from pathlib import Path

from sparkd.model.inventory import GpuInfo


class FixtureGpus:
    """Reads `{"gpus": [{index, name, uuid, driver_version, cuda_version}]}` from a fixture file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        """Nothing to release."""

    def gpus(self) -> tuple[list[GpuInfo], str]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            return [], f"lab NVML fixture unreadable: {e}"
        gpus = [GpuInfo(**g) for g in doc.get("gpus", [])]
        return gpus, "" if gpus else "lab NVML fixture lists no GPU"
