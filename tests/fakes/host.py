"""A fake host: netlink, systemd, NVML, HTTP and the command runner in memory, files in a tmp sysroot.

The whole state prints as canonical sorted text (`FakeHost.dump()`), the way tailscale's
router tests compare a text dump: a test applies something and compares the dump with
the expected text, so reading the test shows exactly what would happen to the host.
Files, sysfs and /proc are the real adapters over a temporary sysroot holding the lab's
recorded-layout fixtures (a Spark with one cable in cage p1). Nothing here touches the
machine: no netlink, no D-Bus, no process, no network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import ipaddress
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sparkd.errors import HostOperationFailed
from sparkd.host.proc import SysrootProc
from sparkd.host.protocols import CommandResult, Host
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysfs import SysrootSysfs
from sparkd.host.sysroot import Sysroot
from sparkd.lab import fixtures
from sparkd.model.inventory import GpuInfo, LinkState
from sparkd.model.unit import UnitSpec, UnitState

#: The four CX-7 netdevs of the lab fixtures; cage p1 (function 1) is cabled.
NETDEVS = ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1")


class FakeNetlink:
    """Links with MTU, state and IPv4 addresses; routes only where a test sets one."""

    def __init__(self) -> None:
        self._links: dict[str, LinkState] = {}
        for i, name in enumerate(NETDEVS, start=2):
            cabled = "f1np1" in name
            self._links[name] = LinkState(name, i, cabled, cabled, "UP" if cabled else "DOWN", 1500, ())
        self.routes: dict[str, str] = {}  # address -> ifname; anything else has no route
        self.watchers: list[Callable[[], None]] = []  # watch_links callbacks; set_carrier calls them
        self.fail: set[str] = set()  # "set_mtu:enp1s0f1np1" makes that call fail

    def _check(self, op: str, ifname: str) -> LinkState:
        if f"{op}:{ifname}" in self.fail:
            raise HostOperationFailed(f"netlink: {op} on {ifname} failed: injected", ifname=ifname)
        if ifname not in self._links:
            raise HostOperationFailed(f"netdev {ifname} does not exist", ifname=ifname)
        return self._links[ifname]

    async def links(self) -> dict[str, LinkState]:
        return dict(self._links)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        self._links[ifname] = dataclasses.replace(self._check("set_mtu", ifname), mtu=mtu)

    async def set_up(self, ifname: str, up: bool = True) -> None:
        self._links[ifname] = dataclasses.replace(self._check("set_up", ifname), admin_up=up)

    async def add_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None:
        link = self._check("add_address", ifname)
        if address in link.addresses:
            raise HostOperationFailed(f"netlink: add address on {ifname} failed: exists", ifname=ifname)
        self._links[ifname] = dataclasses.replace(link, addresses=tuple(sorted((*link.addresses, address))))

    async def remove_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None:
        link = self._check("remove_address", ifname)
        self._links[ifname] = dataclasses.replace(link, addresses=tuple(a for a in link.addresses if a != address))

    async def route_interface(self, address: str) -> str | None:
        return self.routes.get(address)

    def watch_links(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.watchers.append(callback)
        return lambda: self.watchers.remove(callback)

    def set_carrier(self, ifname: str, carrier: bool) -> None:
        link = self._links[ifname]
        self._links[ifname] = dataclasses.replace(link, carrier=carrier, operstate="UP" if carrier else "DOWN")
        for callback in list(self.watchers):
            callback()

    def dump(self) -> list[str]:
        lines = []
        for name, link in sorted(self._links.items()):
            state = ("up" if link.admin_up else "down") + (" carrier" if link.carrier else "")
            addrs = " ".join(str(a) for a in link.addresses) or "-"
            lines.append(f"link {name} {state} mtu={link.mtu} addr={addrs}")
        return lines


@dataclasses.dataclass
class FakeUnit:
    spec: UnitSpec
    active_state: str = "active"
    invocations: int = 1


class FakeSystemd:
    """Transient units by name. `crash(name)` makes one fail, as its process dying would."""

    def __init__(self) -> None:
        self.units: dict[str, FakeUnit] = {}
        self.calls: list[str] = []
        self.delay = 0.0  # seconds every call takes (a slow D-Bus)

    async def _wait(self, call: str) -> None:
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)

    async def start(self, spec: UnitSpec) -> None:
        await self._wait(f"start {spec.name}")
        if "\0" in spec.name or any("\0" in a for a in spec.argv):
            raise HostOperationFailed("D-Bus refuses NUL bytes in strings")
        unit = self.units.get(spec.name)
        if unit is not None and unit.active_state == "active":
            raise HostOperationFailed(f"systemd StartTransientUnit failed: unit {spec.name} already exists")
        self.units[spec.name] = FakeUnit(spec, "active", unit.invocations + 1 if unit else 1)

    async def stop(self, name: str) -> None:
        await self._wait(f"stop {name}")
        if name in self.units:
            del self.units[name]  # a stopped transient unit is unloaded

    async def state(self, name: str) -> UnitState:
        await self._wait(f"state {name}")
        unit = self.units.get(name)
        if unit is None:
            return UnitState(name, "not-found", "inactive", "dead")
        return UnitState(name, "loaded", unit.active_state, "running")

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        await self._wait(f"states {' '.join(names)}")
        result = {}
        for name in names:
            unit = self.units.get(name)
            result[name] = (
                UnitState(name, "not-found", "inactive", "dead")
                if unit is None
                else UnitState(name, "loaded", unit.active_state, "running")
            )
        return result

    async def list_units(self, pattern: str) -> list[str]:
        await self._wait(f"list {pattern}")
        return sorted(n for n in self.units if fnmatch.fnmatchcase(n, pattern))

    async def close(self) -> None:
        pass

    def crash(self, name: str) -> None:
        self.units[name].active_state = "failed"

    def dump(self) -> list[str]:
        lines = []
        for name, unit in sorted(self.units.items()):
            lines.append(f"unit {name} {unit.active_state} argv={' '.join(unit.spec.argv)}")
            lines += [f"unit {name} env {k}={v}" for k, v in sorted(unit.spec.environment.items())]
        return lines


class FakeGpus:
    def __init__(self) -> None:
        self.answer: tuple[list[GpuInfo], str] = (
            [GpuInfo(0, "NVIDIA GB10", "GPU-fake", "580.95.05", "13.0")],
            "",
        )
        self.closed = False

    def gpus(self) -> tuple[list[GpuInfo], str]:
        return self.answer

    def close(self) -> None:
        self.closed = True


class FakeHttp:
    """Status codes by port; a port in `hang` never answers (the probe times out)."""

    def __init__(self) -> None:
        self.answers: dict[int, int] = {}
        self.hang: set[int] = set()
        self.calls = 0

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        self.calls += 1
        if port in self.hang:
            await asyncio.sleep(timeout)
            return None
        return self.answers.get(port)


class FakeRunner:
    """Records every argv; answers exit 0 with no output unless a test sets `results`. sparkd's own helper
    (`python -m sparkd.identity`, which parses certificates in a child process) really runs: it is sparkd's
    code, not a host tool."""

    def __init__(self) -> None:
        self.argvs: list[tuple[str, ...]] = []
        self.results: dict[str, CommandResult] = {}

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.argvs.append(tuple(argv))
        if tuple(argv[:3]) == (sys.executable, "-m", "sparkd.identity"):
            return await SubprocessRunner().run(argv, timeout)
        return self.results.get(argv[0], CommandResult(tuple(argv), 0, "", ""))


class FakeHost:
    """Every fake, over a sysroot at `root` filled with a lab node's fixtures."""

    def __init__(self, root: Path, index: int = 0) -> None:
        self.root = root
        fixtures.write_node_fixtures(root, index)
        self.sysroot = Sysroot(root)
        self.netlink = FakeNetlink()
        self.systemd = FakeSystemd()
        self.gpus = FakeGpus()
        self.http = FakeHttp()
        self.runner = FakeRunner()
        self._fixture_files = set(self._files())

    @property
    def host(self) -> Host:
        return Host(
            files=self.sysroot,
            sysfs=SysrootSysfs(self.sysroot),
            proc=SysrootProc(self.sysroot),
            netlink=self.netlink,
            systemd=self.systemd,
            gpus=self.gpus,
            http=self.http,
            runner=self.runner,
        )

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())

    def dump(self, files: bool = True) -> str:
        """The host's state as sorted text: links, units, commands run, and the files sparkd wrote."""
        lines = self.netlink.dump() + self.systemd.dump()
        lines += [f"ran {' '.join(argv)}" for argv in self.runner.argvs]
        if files:
            for path in self._files():
                if path in self._fixture_files:
                    continue
                rel = "/" + str(path.relative_to(self.root))
                mode = oct(path.stat().st_mode & 0o777)
                if path.name == "node.key" or path.suffix == ".sock":
                    lines.append(f"file {rel} {mode} <not shown>")
                    continue
                for n, text in enumerate(path.read_text(errors="replace").splitlines()):
                    lines.append(f"file {rel} {mode} {n + 1:03d} {text}")
        return "\n".join(sorted(lines)) + "\n"
