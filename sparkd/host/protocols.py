"""The host facilities the engine uses, one `typing.Protocol` each.

The engine, the peer layer and the API only ever see these protocols. `sparkd.system`
builds the real adapters (one module each in this package); tests build fakes
(`tests/fakes/`) that keep the whole host state in memory and print it as text. Every
method here either answers or raises a `SparkdError` (usually `HostOperationFailed`);
none blocks for long: callers put their own timeouts around them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sparkd.model.discovery import Gid
from sparkd.model.inventory import GpuInfo, LinkState, MemoryInfo, RdmaPort
from sparkd.model.unit import JournalLine, UnitSpec, UnitState


class Files(Protocol):
    """Files under the sysroot (`/` in production). Paths are absolute host paths."""

    def read_text(self, host_path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        ...

    def read_bounded(self, host_path: str, limit: int) -> bytes | None:
        """At most `limit` + 1 bytes of a regular file (no symlink, FIFO or device: OSError); None if absent."""
        ...

    def write_atomic(
        self, host_path: str, data: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None
    ) -> bool:
        """Writes atomically (never half written), with `mode` and `owner` (uid, gid; None: the writer's);
        False when the bytes, mode and owner were there already."""
        ...

    def stat(self, host_path: str) -> tuple[int, int, int] | None:
        """(permission bits, uid, gid) of the file itself (never a symlink's target); None if absent."""
        ...

    def write_attribute(self, host_path: str, data: bytes, group: str = "") -> None:
        """Writes a sysfs or configfs attribute in place (no temporary file: those file systems have no
        rename). `group`, if given, is a configfs directory to create first when it is missing (the
        directory that makes the attribute appear, e.g. /sys/kernel/config/rdma_cm/rocep1s0f1)."""
        ...

    def remove(self, host_path: str) -> bool:
        """Removes the file; False when it was not there."""
        ...

    def rename(self, host_path: str, new_host_path: str) -> None:
        """Renames a file within its directory tree (atomic)."""
        ...

    def list_dir(self, host_path: str) -> list[str]:
        """The names in a directory, sorted; empty when it does not exist."""
        ...

    def entries(self, host_path: str, limit: int) -> list[tuple[str, str, int]] | None:
        """A directory's (name, kind, size) entries, sorted; None if absent. Kind is "file" (with its size),
        "dir" or "other" (a FIFO, device, socket, or a symlink that dangles or leaves the sysroot; size 0).
        Symlinks are followed only while they resolve inside the sysroot. At most `limit` + 1 are read.
        OSError when it cannot be listed (not a directory, outside the sysroot)."""
        ...

    def read_resolved(self, host_path: str, limit: int) -> bytes | None:
        """`read_bounded`, but following symlinks while they resolve inside the sysroot (OSError otherwise)."""
        ...

    def sha256(self, host_path: str, limit: int) -> str | None:
        """The hex SHA-256 of a regular file of at most `limit` bytes, read in bounded chunks; None if absent.
        Symlinks are followed only while they resolve inside the sysroot; a path that leaves it, a file that
        is not regular, or one larger than `limit` raises OSError. Blocking (hundreds of MB: call it in a
        thread); cached by (path, size, mtime_ns), so an unchanged file is read once."""
        ...


class Sysfs(Protocol):
    """The static RDMA layout (`/sys/class/infiniband` under the sysroot)."""

    def rdma_ports(self) -> list[RdmaPort]: ...

    def gids(self, rdma_device: str, port: int = 1) -> list[Gid]:
        """The device's GID table (non-empty slots), as `show_gids` lists it."""
        ...

    def pci_link(self, rdma_device: str) -> tuple[str, int] | None:
        """The device's PCIe link (speed text, width), or None when sysfs does not say."""
        ...


class Proc(Protocol):
    """/proc facts (under the sysroot)."""

    def memory(self) -> MemoryInfo: ...

    def kernel_release(self) -> str: ...

    def unit_of(self, pid: int) -> str:
        """The systemd service process `pid` runs in, from its cgroup ("" if none)."""
        ...


class Netlink(Protocol):
    """rtnetlink in the daemon's network namespace: link state always comes from here."""

    async def links(self) -> dict[str, LinkState]: ...

    async def set_mtu(self, ifname: str, mtu: int) -> None: ...

    async def set_up(self, ifname: str, up: bool = True) -> None: ...

    async def add_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None: ...

    async def remove_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None: ...

    async def route_interface(self, address: str) -> str | None:
        """The interface the kernel would send traffic to `address` out of, or None."""
        ...

    def watch_links(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback` on the event loop at every link change the kernel reports; returns `stop()`."""
        ...


class Systemd(Protocol):
    """The system manager: transient units for deployments."""

    async def start(self, spec: UnitSpec) -> None: ...

    async def stop(self, name: str) -> None: ...

    async def state(self, name: str) -> UnitState: ...

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        """Many units' states in one call; units systemd does not know are "not-found"/"inactive"."""
        ...

    async def list_units(self, pattern: str) -> list[str]: ...

    async def close(self) -> None: ...


class Journal(Protocol):
    """The system journal: what a unit wrote, and what systemd logged about it (`journalctl -u`)."""

    async def tail(self, unit: str, lines: int) -> list[JournalLine]:
        """The unit's last `lines` lines (kept within 1..1000), oldest first; [] when there are none, or
        when the machine has no journal; HostOperationFailed when the journal cannot be read."""
        ...

    def follow(self, unit: str, since_lines: int) -> AsyncGenerator[JournalLine, None]:
        """The unit's last `since_lines` lines (kept within 0..1000), then each new one as it is written,
        until the caller stops iterating. An async generator, so that the caller can close it at once
        (`contextlib.aclosing`). Raises HostOperationFailed when the machine has no journal to follow."""
        ...


class Gpus(Protocol):
    """GPU inventory (NVML). Blocking: the state loop calls it in a thread."""

    def gpus(self) -> tuple[list[GpuInfo], str]:
        """The GPUs, and the reason when there are none. Never raises."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP response, its body capped (`HttpProbe.request`)."""

    status: int
    body: bytes


class HttpProbe(Protocol):
    """Local framework endpoints: `/health`, `/v1/models`, `/metrics`, a probe completion."""

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        """The HTTP status code, or None when nothing answered in time."""
        ...

    async def request(
        self, host: str, port: int, path: str, timeout: float, *, body: bytes | None = None, limit: int = 65536
    ) -> HttpAnswer | None:
        """GET `path` (POST with a JSON `body`); the status and at most `limit` bytes of the body, or None when
        nothing answered in `timeout` seconds (the whole exchange) or the answer was not HTTP."""
        ...


@dataclass(frozen=True)
class CommandResult:
    """What a command did. Output is capped (see `Runner.run`)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """The one place where sparkd runs programs (mlnx_qos, dcb, modprobe, ... in later revisions)."""

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Runs `argv` (never through a shell) and returns its result; raises HostOperationFailed on a
        timeout or when the program cannot be started."""
        ...

    def which(self, name: str) -> str | None:
        """The absolute path of program `name` in the runner's search path (the system's sbin and bin
        directories; the lab puts its stand-in tools first), or None when the host has no such program."""
        ...


class Ports(Protocol):
    """TCP ports in the daemon's network namespace."""

    def busy(self, ports: list[int]) -> list[int]:
        """Those of `ports` that something already listens on (a bind of the wildcard address would fail)."""
        ...


@dataclass(frozen=True)
class Host:
    """Every host facility one daemon uses; `sparkd.system.real_host` builds the real ones."""

    files: Files
    sysfs: Sysfs
    proc: Proc
    netlink: Netlink
    systemd: Systemd
    journal: Journal
    gpus: Gpus
    http: HttpProbe
    runner: Runner
    ports: Ports
