"""/proc readers (under the sysroot): memory and kernel release."""

from __future__ import annotations

from sparkd.host.sysroot import Sysroot
from sparkd.model.inventory import MemoryInfo


def parse_meminfo(text: str) -> MemoryInfo:
    """Parses /proc/meminfo ("MemTotal:  131072000 kB")."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * scale
    return MemoryInfo(values.get("MemTotal", 0), values.get("MemAvailable", 0))


class SysrootProc:
    """Reads /proc files under the sysroot (implements `protocols.Proc`)."""

    def __init__(self, sysroot: Sysroot) -> None:
        self.sysroot = sysroot

    def memory(self) -> MemoryInfo:
        text = self.sysroot.read_text("/proc/meminfo")
        return parse_meminfo(text or "")

    def kernel_release(self) -> str:
        text = self.sysroot.read_text("/proc/sys/kernel/osrelease")
        return (text or "").strip()
