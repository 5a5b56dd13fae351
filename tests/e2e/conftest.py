"""End-to-end tests against a whole lab: real systemd (sandboxed where PID 1 is not systemd),
real namespaces and veths, real sparkd daemons as units, the stand-in vLLM. Root only: tests/conftest.py marks every
test here `lab` and `netns` (by path) and skips it without root and `ip netns`.

Two guards run throughout: the root-namespace leak guard (tests/conftest.py), checked after every test,
and the management-port capture (`mgmt_capture`): while any lab of these tests is up, every node's
`mgmt0` is captured (tests/capture.py), and at the end of the session no captured frame may be sparkd's:
its traffic belongs on the interconnect, never on the management LAN.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from sparkd.lab import sandbox, topology
from tests.capture import Capture, Frame, capture_all, sparkd_frames, summary
from tests.conftest import LeakGuard

ROOT = Path(__file__).parents[2]
#: One-line reports printed at the end of the run (pytest_terminal_summary below).
REPORTS: list[str] = []


@pytest.fixture(autouse=True)
def _guard(leak_guard: LeakGuard) -> Iterator[None]:
    """Keeps the root-namespace leak guard on for every test here, and checks it after each one."""
    yield
    assert leak_guard.leaked() == 0, "a packet tried to leave the root network namespace"


def sparkd(*args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `sparkd ARGS...` (this checkout's) and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "sparkd", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, input=input
    )


def client(node: str, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `sparkctl-client ARGS...` inside lab node `node` (its SPARKD_SOCKET set by `lab exec`)."""
    return sparkd("lab", "exec", node, "--", "sparkctl-client", *args, timeout=timeout, input=input)


class MgmtCapture:
    """Captures every lab node's mgmt0 while a lab is up; keeps every frame, labelled by the lab's user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.frames: list[tuple[str, Frame]] = []
        self.labs = 0
        self._active: list[Capture] = []
        self._label = ""

    def start(self, nodes: list[str], label: str) -> None:
        """Starts capturing on each node's mgmt0 (returns once every capture is bound)."""
        self.stop()
        self.labs += 1
        self._label = label
        self._active = capture_all(nodes, topology.MGMT_IF, self.directory / f"lab{self.labs}")

    def current(self) -> list[Frame]:
        """What the running captures have seen so far."""
        return [f for c in self._active for f in c.frames()]

    def stop(self) -> None:
        """Stops the captures (before `lab down`: a capture inside a namespace keeps it alive)."""
        for c in self._active:
            self.frames += [(self._label, f) for f in c.stop()]
        self._active = []


@pytest.fixture(scope="session")
def mgmt_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MgmtCapture]:
    """The management-port capture; at the end, asserts that no captured frame is sparkd's."""
    capture = MgmtCapture(tmp_path_factory.mktemp("mgmt-capture"))
    try:
        yield capture
    finally:
        capture.stop()
    frames = [f for _, f in capture.frames]
    bad = [(label, f) for label, f in capture.frames if sparkd_frames([f])]
    probes = sum(f.probe for f in frames)
    REPORTS.append(
        f"mgmt0 capture, {capture.labs} lab(s): {summary(frames)}; test probes {probes}; sparkd's frames {len(bad)}"
    )
    assert not bad, "sparkd traffic on the management port:\n" + "\n".join(
        f"  {label}: {f.describe()}" for label, f in bad[:20]
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORTS:
        terminalreporter.write_line(line)


@contextmanager
def lab_up(capture: MgmtCapture, label: str, nodes: int = 2, bare: bool = False) -> Iterator[lab_mod.LabState]:
    """A lab (in this process) whose mgmt0 ports are captured from before the daemons start; always
    brought down, the captures stopped first."""
    if lab_mod.STATE.exists():
        pytest.fail(f"a lab is already up ({lab_mod.STATE}); run `sparkd lab down` before the tests")
    try:
        yield lab_mod.up(nodes, bare=bare, log=print, on_network=lambda names: capture.start(names, label))
    finally:
        capture.stop()
        lab_mod.down(log=print)


@pytest.fixture(scope="module")
def lab(mgmt_capture: MgmtCapture, request: pytest.FixtureRequest) -> Iterator[None]:
    """A two-node lab, links configured and the worker connected, shared by a module's tests."""
    with lab_up(mgmt_capture, request.module.__name__):
        yield


def leftovers() -> list[str]:
    """Everything a lab (or a capture) could leave behind, described."""
    found = [f"netns {n}" for n in topology.existing()]
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    found += [f"link {i['ifname']}" for i in json.loads(links) if "spark" in i["ifname"]]
    if Path("/run/systemd/private").exists():
        found.append("systemd sandbox (/run/systemd/private)")
    if sandbox.CGROUP.exists():
        found.append(f"cgroup {sandbox.CGROUP}")
    if lab_mod.LAB_DIR.exists():
        found.append(f"directory {lab_mod.LAB_DIR}")
    procs = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    found += [
        f"process {p}"
        for p in procs.splitlines()
        if "sparkd run --config" in p or "standins.vllm" in p or "tests/capture.py" in p
    ]
    return found


@pytest.fixture
def clean() -> None:
    """No lab is up and none left anything behind."""
    if lab_mod.STATE.exists():
        pytest.fail("a lab is already up; run `sparkd lab down` before the tests")
    assert leftovers() == []


def ip_json(node: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    """`ip -j ARGS` inside lab node `node`, parsed."""
    out = subprocess.run(["ip", "-n", node, "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def addresses(node: str, ifname: str, family: str) -> list[str]:
    """The `family` ("inet", "inet6") addresses of `ifname` in `node`, as address/prefix."""
    (link,) = ip_json(node, "addr", "show", "dev", ifname)
    return [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == family]


def default_route(node: str) -> tuple[str, str]:
    """(gateway, device) of the IPv4 default route in `node`."""
    (route,) = ip_json(node, "-4", "route", "show", "default")
    return route["gateway"], route["dev"]
