"""The real adapters against a real systemd and journald: the service facts `DbusSystemd.states` reads
(MainPID, Result, ExecMainCode/Status, ExecMainExitTimestamp), TimeoutStopUSec, and `SystemJournal`
reading the units' lines from the system journal (tail and follow).

Where PID 1 is not systemd, the lab's systemd sandbox (`sparkd.lab.sandbox`, which brings journald) is
booted for this module alone, without a lab; elsewhere the machine's own systemd runs the test units
(`sparkd-journaltest-*.service`, stopped afterwards). Marked `lab` and `netns` by path (tests/conftest.py).
Note: in the sandbox, MainPID is a PID of the sandbox's PID namespace, not of this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from jeepney import DBusAddress

from sparkd.host.journal import SystemJournal
from sparkd.host.systemd import _MANAGER, DbusSystemd
from sparkd.lab import lab as lab_mod
from sparkd.lab import sandbox
from sparkd.model.unit import CLD_EXITED, CLD_KILLED, JournalLine, UnitSpec, UnitState

T = TypeVar("T")
_names = iter(range(1000))


def unit_name() -> str:
    return f"sparkd-journaltest-{os.getpid()}-{next(_names)}.service"


@pytest.fixture(scope="module")
def systemd_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A running systemd with journald: the machine's, or the sandbox (booted here, powered off after)."""
    if lab_mod.STATE.exists():
        pytest.fail(f"a lab is up ({lab_mod.STATE}); run `sparkd lab down` before the tests")
    pid = 0
    if sandbox.needed():
        pid = sandbox.up(tmp_path_factory.mktemp("sandbox-units"))

        def reap() -> None:  # the sandbox's `unshare` is this process's child: reap it as soon as it exits
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

        threading.Thread(target=reap, name="sandbox-reaper", daemon=True).start()
    try:
        yield
    finally:
        if pid:
            sandbox.down(pid)


async def until(what: str, probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: last seen {value!r}"
        await asyncio.sleep(0.1)


async def run_to_the_end(systemd: DbusSystemd, name: str, script: str) -> UnitState:
    await systemd.start(UnitSpec(name, ["/bin/sh", "-c", script], "sparkd journal test"))
    return await until(f"{name} fails", lambda: systemd.state(name), lambda s: s.active_state == "failed")


def messages(lines: list[JournalLine]) -> list[str]:
    return [line.message for line in lines]


@pytest.mark.usefixtures("systemd_up")
def test_a_failed_unit_tells_how_it_ended_and_its_journal_shows_why() -> None:
    async def go() -> None:
        systemd, journal = DbusSystemd(), SystemJournal()
        name = unit_name()
        try:
            state = await run_to_the_end(
                systemd, name, "echo first; printf 'bad \\033[31m red\\n'; echo last >&2; exit 3"
            )
            assert (state.load_state, state.main_pid, state.result) == ("loaded", 0, "exit-code")
            assert (state.exec_main_code, state.exec_main_status) == (CLD_EXITED, 3)
            assert state.exit_description == "exited with status 3"
            assert abs(state.exit_time - time.time()) < 60
            # The unit's own lines (stdout and stderr) and PID 1's about it; journald may lag a little.
            lines = await until(
                "the journal lines", lambda: journal.tail(name, 50), lambda ls: "Failed with result" in str(ls)
            )
            text = messages(lines)
            assert text.index("first") < text.index("bad \ufffd[31m red") < text.index("last")
            # (journald may take PID 1's line before the end of the unit's stream: no order between them)
            assert [m for m in text if "Main process exited, code=exited, status=3" in m]
            assert {line.unit for line in lines} == {name}
            assert all(line.timestamp == pytest.approx(time.time(), abs=120) for line in lines)
            assert messages(await journal.tail(name, 1)) == text[-1:]
            await systemd.stop(name)  # resets the failed unit: systemd unloads it
            gone = await until("unloaded", lambda: systemd.state(name), lambda s: s.load_state == "not-found")
            assert gone.result == "" and gone.exit_description == ""  # no properties read for it
        finally:
            await systemd.stop(name)
            await systemd.close()

    asyncio.run(go())


@pytest.mark.usefixtures("systemd_up")
def test_a_killed_unit() -> None:
    async def go() -> None:
        systemd = DbusSystemd()
        name = unit_name()
        try:
            # Not `sh -c "kill -9 $$"`: systemd reads "$$" in a command line as an escaped "$".
            await systemd.start(UnitSpec(name, ["/bin/sleep", "60"], "sparkd journal test"))
            await until("running", lambda: systemd.state(name), lambda s: s.active_state == "active")
            await asyncio.to_thread(
                subprocess.run, ["systemctl", "kill", "--signal=SIGKILL", name], check=True, timeout=10
            )
            state = await until(f"{name} fails", lambda: systemd.state(name), lambda s: s.active_state == "failed")
            assert (state.result, state.exec_main_code, state.exec_main_status) == ("signal", CLD_KILLED, 9)
            assert state.exit_description == "killed by signal 9 (SIGKILL)"
        finally:
            await systemd.stop(name)
            await systemd.close()

    asyncio.run(go())


@pytest.mark.usefixtures("systemd_up")
def test_a_running_unit_has_a_main_pid_and_its_stop_timeout() -> None:
    async def go() -> None:
        systemd = DbusSystemd()
        name = unit_name()
        try:
            await systemd.start(UnitSpec(name, ["/bin/sleep", "60"], "sparkd journal test", timeout_stop_s=2.5))
            state = await until("running", lambda: systemd.state(name), lambda s: s.active_state == "active")
            assert state.active_state == "active" and state.result == "success" and state.exit_description == ""
            (path,) = await systemd._call(_MANAGER, "GetUnit", "s", (name,))
            props = DBusAddress(path, bus_name="org.freedesktop.systemd1", interface="org.freedesktop.DBus.Properties")
            (timeout,) = await systemd._call(
                props, "Get", "ss", ("org.freedesktop.systemd1.Service", "TimeoutStopUSec")
            )
            assert timeout == ("t", 2_500_000)
        finally:
            await systemd.stop(name)
            await systemd.close()

    asyncio.run(go())


@pytest.mark.usefixtures("systemd_up")
def test_follow_streams_a_units_lines_as_they_are_written() -> None:
    async def go() -> None:
        systemd, journal = DbusSystemd(), SystemJournal()
        name = unit_name()
        seen: list[str] = []
        try:
            async with contextlib.aclosing(journal.follow(name, 10)) as follow:
                await systemd.start(
                    UnitSpec(name, ["/bin/sh", "-c", "echo one; sleep 1; echo two; exec sleep 60"], "journal test")
                )
                async with asyncio.timeout(30):
                    async for line in follow:
                        seen.append(line.message)
                        if line.message == "two":
                            break
            assert seen.index("one") < seen.index("two")
        finally:
            await systemd.stop(name)
            await systemd.close()

    asyncio.run(go())
