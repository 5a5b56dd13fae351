"""/proc readers (under the sysroot): memory and kernel release."""

from __future__ import annotations

import re
from pathlib import Path

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

    def unit_of(self, pid: int) -> str:
        return unit_of_pid(pid)

    def kernel_release(self) -> str:
        text = self.sysroot.read_text("/proc/sys/kernel/osrelease")
        return (text or "").strip()


_UNIT = re.compile(r"\A[A-Za-z0-9:_.@\\-]{1,255}\.service\Z")


def unit_of_cgroup(text: str) -> str:
    """The system service a process runs in, from its /proc/PID/cgroup ("" if none): its cgroup v2 path (or
    v1's name=systemd one) must be exactly /system.slice/NAME.service. Only root creates cgroups there; a
    user's own manager names its units too (/user.slice/.../user@1000.service/app.slice/NAME.service), so
    a path anywhere else, or a sub-cgroup, is no system service."""
    for line in text.splitlines():
        hierarchy, _, path = line.partition(":")[2].partition(":")
        if hierarchy not in ("", "name=systemd"):
            continue
        parts = path.split("/")
        if len(parts) == 3 and parts[:2] == ["", "system.slice"] and _UNIT.fullmatch(parts[2]):
            return parts[2]
    return ""


def unit_of_pid(pid: int) -> str:
    """The systemd service of process `pid`, from the machine's /proc (not the sysroot's: lab nodes share
    the kernel, and a process's cgroup is the kernel's fact); "" if it has gone or is in none."""
    try:
        return unit_of_cgroup(Path(f"/proc/{int(pid)}/cgroup").read_text()[:65536])
    except (OSError, ValueError):
        return ""
