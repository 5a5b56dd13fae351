"""A fake host: netlink, systemd, the journal, NVML, HTTP and the command runner in memory, files in a tmp sysroot.

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
import json
import sys
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

from sparkd.errors import HostOperationFailed
from sparkd.host.proc import SysrootProc
from sparkd.host.protocols import CommandResult, Host, HttpAnswer
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysfs import SysrootSysfs
from sparkd.host.sysroot import Sysroot
from sparkd.host.systemd import transient_properties
from sparkd.lab import fixtures
from sparkd.model.inventory import GpuInfo, LinkState
from sparkd.model.unit import CLD_DUMPED, CLD_EXITED, CLD_KILLED, JournalLine, UnitSpec, UnitState

#: Where (under the sysroot, left out of `dump`) the stand-in host tools and their state live.
TOOLS_DIR = "lab-tools"
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
        self.delay = 0.0  # seconds each set_mtu takes (a slow kernel: for concurrent applies)

    def add_link(self, name: str, *addresses: str) -> None:
        """Another netdev, up with carrier (the management port, say)."""
        self._links[name] = LinkState(
            name, len(self._links) + 2, True, True, "UP", 1500, tuple(ipaddress.IPv4Interface(a) for a in addresses)
        )

    def _check(self, op: str, ifname: str) -> LinkState:
        if f"{op}:{ifname}" in self.fail:
            raise HostOperationFailed(f"netlink: {op} on {ifname} failed: injected", ifname=ifname)
        if ifname not in self._links:
            raise HostOperationFailed(f"netdev {ifname} does not exist", ifname=ifname)
        return self._links[ifname]

    async def links(self) -> dict[str, LinkState]:
        return dict(self._links)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        await asyncio.sleep(self.delay)
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


class FakeJournal:
    """Journal lines, by unit: tests `add` them; FakeSystemd adds the lines systemd writes about a unit
    whose main process ended. `available = False` is a machine without a journal (tail answers [],
    follow raises), as `sparkd.host.journal` behaves."""

    def __init__(self) -> None:
        self.lines: list[JournalLine] = []
        self.available = True
        self._waiters: list[asyncio.Event] = []

    def add(self, unit: str, message: str | bytes, priority: int = 6) -> None:
        """Appends a line, stamped now (and after the line before it)."""
        last = self.lines[-1].timestamp if self.lines else 0.0
        self.lines.append(JournalLine.of(max(time.time(), last + 1e-6), unit, message, priority))
        for event in self._waiters:
            event.set()

    async def tail(self, unit: str, lines: int) -> list[JournalLine]:
        if not self.available:
            return []
        return [line for line in self.lines if line.unit == unit][-min(max(lines, 1), 1000) :]

    async def follow(self, unit: str, since_lines: int) -> AsyncGenerator[JournalLine, None]:
        if not self.available:
            raise HostOperationFailed("there is no journal to follow on this machine", unit=unit)
        n = min(max(since_lines, 0), 1000)
        event = asyncio.Event()
        self._waiters.append(event)
        try:
            seen = len(self.lines)
            for line in [line for line in self.lines if line.unit == unit][-n:] if n else []:
                yield line
            while True:
                await event.wait()
                event.clear()
                new, seen = self.lines[seen:], len(self.lines)
                for line in new:
                    if line.unit == unit:
                        yield line
        finally:
            self._waiters.remove(event)


@dataclasses.dataclass
class FakeUnit:
    spec: UnitSpec
    active_state: str = "active"
    invocations: int = 1
    main_pid: int = 0
    result: str = "success"
    exec_main_code: int = 0
    exec_main_status: int = 0
    n_restarts: int = 0
    exit_time: float = 0.0


#: systemd's names for exit statuses and signals in its "Main process exited" line (the ones tests use).
_STATUS_NAMES = {0: "SUCCESS", 1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 203: "EXEC"}
_SIGNAL_NAMES = {6: "ABRT", 9: "KILL", 11: "SEGV", 15: "TERM"}


class FakeSystemd:
    """Transient units by name. Each start runs a new main process (a fresh PID: 1001, 1002, ...).
    `crash(name, status)` and `kill(name, signal)` make one fail, as its process dying would, with the
    facts and the journal lines systemd would have; `auto_restart(name)` is systemd's Restart= at work."""

    def __init__(self, journal: FakeJournal | None = None) -> None:
        self.units: dict[str, FakeUnit] = {}
        self.calls: list[str] = []
        self.delay = 0.0  # seconds every call takes (a slow D-Bus)
        self.journal = journal or FakeJournal()
        self.last_pid = 1000
        self.started: list[UnitSpec] = []  # every spec given to start, in order, as given

    async def _wait(self, call: str) -> None:
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)

    async def start(self, spec: UnitSpec) -> None:
        await self._wait(f"start {spec.name}")
        if "\0" in spec.name or any("\0" in a for a in spec.argv):
            raise HostOperationFailed("D-Bus refuses NUL bytes in strings")
        self.started.append(spec)
        unit = self.units.get(spec.name)
        if unit is not None and unit.active_state == "active":
            raise HostOperationFailed(f"systemd StartTransientUnit failed: unit {spec.name} already exists")
        self.units[spec.name] = FakeUnit(spec, "active", unit.invocations + 1 if unit else 1, self._pid())

    def _pid(self) -> int:
        self.last_pid += 1
        return self.last_pid

    def _state(self, name: str) -> UnitState:
        unit = self.units.get(name)
        if unit is None:
            return UnitState(name, "not-found", "inactive", "dead")
        sub = {"active": "running", "failed": "failed"}.get(unit.active_state, "dead")
        return UnitState(
            name,
            "loaded",
            unit.active_state,
            sub,
            main_pid=unit.main_pid,
            result=unit.result,
            exec_main_code=unit.exec_main_code,
            exec_main_status=unit.exec_main_status,
            n_restarts=unit.n_restarts,
            exit_time=unit.exit_time,
        )

    async def stop(self, name: str) -> None:
        await self._wait(f"stop {name}")
        if name in self.units:
            del self.units[name]  # a stopped transient unit is unloaded

    async def state(self, name: str) -> UnitState:
        await self._wait(f"state {name}")
        return self._state(name)

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        await self._wait(f"states {' '.join(names)}")
        return {name: self._state(name) for name in names}

    async def list_units(self, pattern: str) -> list[str]:
        await self._wait(f"list {pattern}")
        return sorted(n for n in self.units if fnmatch.fnmatchcase(n, pattern))

    async def close(self) -> None:
        pass

    def bus_properties(self, name: str) -> dict[str, tuple[str, Any]]:
        """What the real adapter would send StartTransientUnit for the unit now loaded as `name`: property
        -> (D-Bus signature, value); a property sent twice (SystemCallFilter) keeps its last value."""
        return dict(transient_properties(self.units[name].spec))

    def crash(self, name: str, status: int = 1) -> None:
        """The main process exits with `status` (not 0): the unit fails with result "exit-code"."""
        self._ended(name, CLD_EXITED, status, "exit-code", f"code=exited, status={status}", _STATUS_NAMES)

    def kill(self, name: str, signal: int, core: bool = False) -> None:
        """The main process dies of `signal` (dumping core when `core`): result "signal" or "core-dump"."""
        code, result, how = (CLD_DUMPED, "core-dump", "dumped") if core else (CLD_KILLED, "signal", "killed")
        self._ended(name, code, signal, result, f"code={how}, status={signal}", _SIGNAL_NAMES)

    def _ended(self, name: str, code: int, status: int, result: str, text: str, names: dict[int, str]) -> None:
        unit = self.units[name]
        unit.active_state, unit.main_pid, unit.result = "failed", 0, result
        unit.exec_main_code, unit.exec_main_status, unit.exit_time = code, status, time.time()
        suffix = f"/{names[status]}" if status in names else ""
        self.journal.add(name, f"{name}: Main process exited, {text}{suffix}", 5)
        self.journal.add(name, f"{name}: Failed with result '{result}'.", 4)

    def auto_restart(self, name: str) -> None:
        """systemd restarts the unit's main process itself (Restart=): a new PID, NRestarts one more,
        and the last exit forgotten (systemd clears ExecMainCode/Status when it starts the process)."""
        unit = self.units[name]
        unit.active_state, unit.main_pid, unit.result = "active", self._pid(), "success"
        unit.exec_main_code = unit.exec_main_status = 0
        unit.exit_time = 0.0
        unit.n_restarts += 1

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
    """A framework's local endpoints by port: `/health` answers `answers[port]`; once it is 200, `/v1/models`
    lists `models[port]` (default: every served name a test registered with `serve`), `/metrics` shows
    `tokens[port]` and a probe completion answers unless the port is `wedged`. A port in `hang` never
    answers at all (the probe times out)."""

    def __init__(self) -> None:
        self.answers: dict[int, int] = {}
        self.models: dict[int, list[str]] = {}
        self.tokens: dict[int, float] = {}
        self.hang: set[int] = set()
        self.wedged: set[int] = set()
        self.calls = 0
        self.completions = 0

    def serve(self, port: int, served: str) -> None:
        """`port` answers as a healthy framework serving `served`."""
        self.answers[port] = 200
        self.models[port] = [served]

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        answer = await self.request(host, port, path, timeout)
        return answer.status if answer else None

    async def request(
        self, host: str, port: int, path: str, timeout: float, *, body: bytes | None = None, limit: int = 65536
    ) -> HttpAnswer | None:
        self.calls += 1
        if port in self.hang or (body is not None and port in self.wedged):
            await asyncio.sleep(timeout)
            return None
        code = self.answers.get(port)
        if code is None:
            return None
        if path == "/v1/models":
            ids = self.models.get(port, [])
            return HttpAnswer(code, json.dumps({"object": "list", "data": [{"id": i} for i in ids]}).encode()[:limit])
        if path == "/metrics":
            text = f'vllm:generation_tokens_total{{model_name="m"}} {self.tokens.get(port, 0.0)}\n'
            return HttpAnswer(code, text.encode()[:limit])
        if body is not None:
            self.completions += 1
            self.tokens[port] = self.tokens.get(port, 0.0) + 1
            return HttpAnswer(code, b'{"choices": [{"index": 0, "text": "ok"}]}')
        return HttpAnswer(code, b"")


class FakePorts:
    """Ports a test marks as taken."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def busy(self, ports: list[int]) -> list[int]:
        return [p for p in ports if p in self.taken]


class FakeRunner:
    """Records every argv; answers exit 0 with no output unless a test sets `results`. sparkd's own helper
    (`python -m sparkd.identity`, which parses certificates in a child process) really runs: it is sparkd's
    code, not a host tool. So do the lab's stand-in host tools in `tools` (dcb, mlnx_qos, modprobe, ufw,
    hostnamectl: `sparkd.lab.fixtures.write_tools`), which keep their state in that directory and print it
    in the real tools' formats, so that the host configuration verifies real output."""

    def __init__(self, tools: Path | None = None) -> None:
        self.argvs: list[tuple[str, ...]] = []
        self.results: dict[str, CommandResult] = {}
        self.programs: dict[str, str] = {}  # name -> path: what `which` finds besides the stand-in tools
        self.tools = tools

    def which(self, name: str) -> str | None:
        if name in self.programs:
            return self.programs[name]
        if self.tools is not None and name in fixtures.TOOL_NAMES and (self.tools / name).exists():
            return str(self.tools / name)
        return None

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.argvs.append(tuple(argv))
        if tuple(argv[:4]) == (sys.executable, "-I", "-m", "sparkd.identity"):
            return await SubprocessRunner().run(argv, timeout)
        if argv[0] in self.results:
            return self.results[argv[0]]
        if self.tools is not None and Path(argv[0]).parent == self.tools:
            return await SubprocessRunner().run(argv, timeout)
        return CommandResult(tuple(argv), 0, "", "")


class FakeHost:
    """Every fake, over a sysroot at `root` filled with a lab node's fixtures."""

    def __init__(self, root: Path, index: int = 0) -> None:
        self.root = root
        fixtures.write_node_fixtures(root, index)
        self.sysroot = Sysroot(root)
        self.netlink = FakeNetlink()
        self.journal = FakeJournal()
        self.systemd = FakeSystemd(self.journal)
        self.gpus = FakeGpus()
        self.http = FakeHttp()
        self.tools = fixtures.write_tools(root / TOOLS_DIR, root)
        self.runner = FakeRunner(self.tools)
        self.ports = FakePorts()
        self._fixture_files = set(self._files())

    @property
    def host(self) -> Host:
        return Host(
            files=self.sysroot,
            sysfs=SysrootSysfs(self.sysroot),
            proc=SysrootProc(self.sysroot),
            netlink=self.netlink,
            systemd=self.systemd,
            journal=self.journal,
            gpus=self.gpus,
            http=self.http,
            runner=self.runner,
            ports=self.ports,
        )

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())

    def dump(self, files: bool = True) -> str:
        """The host's state as sorted text: links, units, commands run, and the files sparkd wrote."""
        lines = self.netlink.dump() + self.systemd.dump()
        # The stand-in tools' runs are observations as much as changes: their state is what they were given.
        lines += [f"ran {' '.join(argv)}" for argv in self.runner.argvs if Path(argv[0]).parent != self.tools]
        for state in sorted(self.tools.glob("*-state.json")):
            compact = json.dumps(json.loads(state.read_text()), sort_keys=True, separators=(",", ":"))
            lines.append(f"tool {state.name} {compact}")
        if files:
            for path in self._files():
                if path in self._fixture_files or path.is_relative_to(self.tools):
                    continue
                rel = "/" + str(path.relative_to(self.root))
                mode = oct(path.stat().st_mode & 0o777)
                if path.name == "node.key" or path.suffix == ".sock":
                    lines.append(f"file {rel} {mode} <not shown>")
                    continue
                for n, text in enumerate(path.read_text(errors="replace").splitlines()):
                    lines.append(f"file {rel} {mode} {n + 1:03d} {text}")
        return "\n".join(sorted(lines)) + "\n"
