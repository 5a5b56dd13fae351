"""The systemd watchdog (`sparkd.watchdog`): real datagrams on a real notify socket, from a real event loop.

Each test binds an AF_UNIX datagram socket in its tmp dir, points NOTIFY_SOCKET at it and reads what
systemd would read. Counts have wide margins (a 200 ms timeout feeds every 100 ms: at least 2 in a
second, never more than one per period); "none" is exact where it can be: while the loop is blocked
nothing can send, and the socket is drained on the loop right before and right after.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import structlog

from sparkd.engine.observer import Interests, Intervals, StateLoop
from sparkd.events import EventBus
from sparkd.model.observed import Snapshot
from sparkd.system import System
from sparkd.watchdog import MAX_USEC, Watchdog, watchdog_usec
from tests.api.conftest import MANUAL, MANUAL_POLICY, head_config
from tests.fakes.discovery import FakeDiscovery
from tests.fakes.host import FakeHost

TIMEOUT_USEC = 200_000  # feeds every 100 ms
FEED = b"WATCHDOG=1"


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's end: a bound, non-blocking datagram socket named by NOTIFY_SOCKET; the watchdog is this
    process's (WATCHDOG_PID) with a 200 ms timeout, unless a test changes them."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(TIMEOUT_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram queued now."""
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


async def collect(sock: socket.socket, seconds: float) -> list[bytes]:
    """The datagrams that arrive within `seconds` of the loop running (drained as they come, so a full
    socket queue never blocks a sender)."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        got += drain(sock)
    return got


async def first_feed(sock: socket.socket, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while FEED not in drain(sock):
        assert time.monotonic() < deadline, f"no {FEED!r} within {within} s"
        await asyncio.sleep(0.01)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


def test_feeds_every_half_timeout(notify_socket: socket.socket) -> None:
    async def body() -> None:
        watchdog = Watchdog()
        assert watchdog.timeout == 0.2 and watchdog.period == 0.1
        watchdog.start()
        got = await collect(notify_socket, 1.0)
        await watchdog.stop()
        assert set(got) == {FEED}
        assert 2 <= len(got) <= 12  # ~10 at one per 100 ms; never more than one per period (+ the first)
        assert await collect(notify_socket, 0.5) == []  # stopped: nothing more

    run(body)


def test_logs_the_interval_once_at_start(notify_socket: socket.socket) -> None:
    async def body() -> None:
        watchdog = Watchdog()
        with structlog.testing.capture_logs() as logs:
            watchdog.start()
            await first_feed(notify_socket)
            await watchdog.stop()
        assert [e for e in logs if e["event"].startswith("watchdog.")] == [
            {"event": "watchdog.feeding", "log_level": "info", "every_s": 0.1, "timeout_s": 0.2}
        ]

    run(body)


def test_without_watchdog_pid_the_watchdog_is_ours(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_PID")

    async def body() -> None:
        watchdog = Watchdog()
        watchdog.start()
        got = await collect(notify_socket, 1.0)
        await watchdog.stop()
        assert len(got) >= 2 and set(got) == {FEED}

    run(body)


def test_a_blocked_loop_stops_feeding(notify_socket: socket.socket) -> None:
    """A callback that blocks the event loop for a second: no feed in that second, feeding again after."""
    during: list[bytes] = []

    def block() -> None:
        drain(notify_socket)  # everything sent before the block
        time.sleep(1.0)
        during.extend(drain(notify_socket))  # everything sent while it blocked

    async def body() -> None:
        watchdog = Watchdog()
        watchdog.start()
        await first_feed(notify_socket)
        asyncio.get_running_loop().call_soon(block)
        await asyncio.sleep(0)  # the callback runs (and blocks) here
        assert during == []
        await first_feed(notify_socket)  # the loop turns again: so does the feeding
        await watchdog.stop()

    run(body)


@pytest.mark.parametrize(
    ("variable", "value", "event"),
    [
        ("WATCHDOG_PID", "other process", "watchdog.not_ours"),  # the parent's: a real, other process
        ("WATCHDOG_PID", "12x", "watchdog.invalid"),
        ("WATCHDOG_PID", "0", "watchdog.invalid"),
        ("WATCHDOG_USEC", None, None),  # not under a watchdog: nothing said
        ("WATCHDOG_USEC", "", "watchdog.invalid"),
        ("WATCHDOG_USEC", "garbage", "watchdog.invalid"),
        ("WATCHDOG_USEC", "-200000", "watchdog.invalid"),
        ("WATCHDOG_USEC", "0", "watchdog.invalid"),
        ("WATCHDOG_USEC", " 200000", "watchdog.invalid"),
        ("WATCHDOG_USEC", "2e5", "watchdog.invalid"),
        ("WATCHDOG_USEC", "١٢٣٤٥٦", "watchdog.invalid"),  # digits, but not ASCII ones
        ("WATCHDOG_USEC", "100", "watchdog.invalid"),  # 100 µs: below MIN_USEC
        ("WATCHDOG_USEC", str(MAX_USEC + 1), "watchdog.invalid"),
        ("WATCHDOG_USEC", "9" * 40, "watchdog.invalid"),
    ],
)
def test_no_feeding_when_the_watchdog_is_not_ours_or_not_valid(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, variable: str, value: str | None, event: str | None
) -> None:
    """Said once (or not at all when there is no watchdog), never raised, and nothing is ever sent."""
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, str(os.getppid()) if value == "other process" else value)

    async def body() -> None:
        with structlog.testing.capture_logs() as logs:
            watchdog = Watchdog()
            watchdog.start()
            got = await collect(notify_socket, 0.5)  # enabled, this would be ~5 feeds
            await watchdog.stop()
        assert watchdog.timeout is None and got == []
        assert [e["event"] for e in logs] == ([event] if event else [])

    run(body)


def test_watchdog_usec_reads_a_valid_value() -> None:
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30_000_000
    assert watchdog_usec({}) is None


def test_a_check_with_a_reason_withholds_the_feed_and_says_so_once(notify_socket: socket.socket) -> None:
    reason: list[str | None] = [None]

    async def body() -> None:
        watchdog = Watchdog(lambda: reason[0])
        with structlog.testing.capture_logs() as logs:
            watchdog.start()
            await first_feed(notify_socket)
            reason[0] = "stuck"
            await asyncio.sleep(0)
            drain(notify_socket)  # from here on every round sees the reason
            assert await collect(notify_socket, 1.0) == []
            reason[0] = None
            await first_feed(notify_socket)
            await watchdog.stop()
        assert [e["event"] for e in logs] == ["watchdog.feeding", "watchdog.withheld", "watchdog.resumed"]
        assert logs[1]["reason"] == "stuck"

    run(body)


def test_a_check_that_raises_withholds_the_feed(notify_socket: socket.socket) -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    async def body() -> None:
        watchdog = Watchdog(broken)
        with structlog.testing.capture_logs() as logs:
            watchdog.start()
            got = await collect(notify_socket, 0.5)
            await watchdog.stop()
        assert got == []
        assert [e["event"] for e in logs] == ["watchdog.feeding", "watchdog.withheld"]
        assert "RuntimeError: boom" in logs[1]["reason"]

    run(body)


FAST = Intervals(links=0.05, units=0.05, serving=0.05, gpus=0.05, timeout=0.5, serving_timeout=0.5, gpu_timeout=0.5)


def state_loop(tmp_path: Path) -> StateLoop:
    return StateLoop(
        FakeHost(tmp_path / "root").host, Snapshot(), EventBus(), lambda: Interests(units=()), lambda: None, FAST
    )


def gate(loop: StateLoop, after: float) -> Callable[[], str | None]:
    """What `System._stalled` does, with a short stall bound."""
    return lambda: ", ".join(loop.stalled(after)) or None


def test_a_stuck_state_loop_step_stops_the_feeding(
    notify_socket: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serving step that never returns (an await without a timeout): once it has run for longer than the
    bound, no more feeds; when it returns, feeding resumes. The other probes went on throughout."""
    loop = state_loop(tmp_path)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hang() -> None:
        entered.set()
        await release.wait()

    monkeypatch.setattr(loop, "observe_serving", hang)

    async def body() -> None:
        loop.start()
        watchdog = Watchdog(gate(loop, 0.3))
        watchdog.start()
        await entered.wait()
        await asyncio.sleep(0.5)  # stuck for longer than the bound
        assert loop.stalled(0.3) == ("serving",)
        drain(notify_socket)
        assert await collect(notify_socket, 1.0) == []
        release.set()
        await first_feed(notify_socket)
        assert loop.stalled(0.3) == ()
        await watchdog.stop()
        await loop.stop()

    run(body)


def test_a_failing_or_slow_state_loop_keeps_feeding(
    notify_socket: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe that fails every round, and one whose rounds are slow but end (within the bound), are
    progress: the daemon is alive, and a restart would cure neither."""
    loop = state_loop(tmp_path)

    async def failing() -> None:
        raise RuntimeError("D-Bus is gone")

    async def slow() -> None:
        await asyncio.sleep(0.4)

    monkeypatch.setattr(loop, "observe_units", failing)
    monkeypatch.setattr(loop, "observe_gpus", slow)

    async def body() -> None:
        loop.start()
        watchdog = Watchdog(gate(loop, 2.0))
        watchdog.start()
        got = await collect(notify_socket, 1.5)
        assert loop.stalled(2.0) == ()
        await watchdog.stop()
        await loop.stop()
        assert len(got) >= 3 and set(got) == {FEED}

    run(body)


def test_an_ended_probe_task_is_stalled(tmp_path: Path) -> None:
    loop = state_loop(tmp_path)

    async def body() -> None:
        loop.start()
        await asyncio.sleep(0.1)
        assert loop.stalled(60) == ()
        task = next(t for t in asyncio.all_tasks() if t.get_name() == "probe-links")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert loop.stalled(60) == ("links",)
        await loop.stop()
        assert loop.stalled(0) == ()

    run(body)


def test_the_default_stall_bound_outlasts_any_bounded_step(tmp_path: Path) -> None:
    """At least a minute, and five times the longest a step may take (4 serving requests in a row)."""
    host = FakeHost(tmp_path / "root").host

    def bound(intervals: Intervals) -> float:
        return StateLoop(host, Snapshot(), EventBus(), lambda: Interests(units=()), intervals=intervals).stall_after

    assert bound(Intervals()) == 60.0
    assert bound(Intervals(serving_timeout=10.0)) == 200.0
    assert bound(Intervals(gpu_timeout=30.0)) == 150.0


def test_the_daemon_feeds_between_ready_and_stopping(notify_socket: socket.socket, tmp_path: Path) -> None:
    """`System.run` on a FakeHost: READY=1, then feeds, then STOPPING=1 and no feed after it."""
    root = tmp_path / "r"
    system = System(
        head_config(root), FakeHost(root).host, intervals=MANUAL, discovery=FakeDiscovery(), policy=MANUAL_POLICY
    )

    async def body() -> None:
        stop = asyncio.Event()
        daemon = asyncio.create_task(system.run(stop))
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while got.count(FEED) < 2:
            assert time.monotonic() < deadline and not daemon.done(), f"no two feeds: {got}"
            got += await collect(notify_socket, 0.1)
        stop.set()
        await daemon
        got += drain(notify_socket)
        first_lines = [g.split(b"\n")[0] for g in got]
        assert first_lines[0] == b"READY=1" and first_lines[-1] == b"STOPPING=1"
        assert set(first_lines[1:-1]) == {FEED}

    run(body)
