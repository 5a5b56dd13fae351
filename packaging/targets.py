"""The systems sparkd's .deb is built for, and the pinned wheels each one bundles.

grpcio, PyYAML and cffi ship one wheel per Python minor version, so a bundled environment fits one
distribution's Python: each target names the Python of the system it is for (its `python3.X` package is a
dependency) and the glibc it has (the newest manylinux tag its wheels may carry).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # what `--target` takes
    system: str  # the systems it fits, in words
    arch: str  # Debian's architecture
    machine: str  # the ELF machine / manylinux architecture
    python: str  # the distribution's Python, major.minor
    glibc: int  # the distribution's glibc minor version (2.X)
    version_suffix: str  # appended to the Debian revision: 0.1.0-1~deb12
    unit_dir: str  # where the distribution's own packages put systemd units

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self) -> list[str]:
        """Every manylinux tag this system runs, newest first (pip takes an explicit list)."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]

    def site_packages(self) -> str:
        return f"usr/lib/sparkd/venv/lib/python{self.python}/site-packages"


TARGETS = {
    t.name: t
    for t in (
        # Debian 12 ships merged /usr, but its packages still install units into /lib (DEP 17).
        Target(
            "debian12-amd64",
            "Debian 12 (bookworm), amd64",
            "amd64",
            "x86_64",
            "3.11",
            36,
            "~deb12",
            "lib/systemd/system",
        ),
        Target(
            "ubuntu24.04-amd64",
            "Ubuntu 24.04 (noble), amd64",
            "amd64",
            "x86_64",
            "3.12",
            39,
            "~ubuntu24.04",
            "usr/lib/systemd/system",
        ),
        # DGX OS 7 is Ubuntu 24.04 for arm64: the package for the DGX Spark.
        Target(
            "ubuntu24.04-arm64",
            "DGX OS 7 on the DGX Spark (Ubuntu 24.04, arm64)",
            "arm64",
            "aarch64",
            "3.12",
            39,
            "~ubuntu24.04",
            "usr/lib/systemd/system",
        ),
    )
}

#: ELF e_machine values (elf.h): what every ELF file of a target's package must carry.
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
