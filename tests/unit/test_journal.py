"""Journal lines: what a message is made into, the fake journal, and the real reader (`sparkd.host.journal`)
over journal files written by systemd-journal-remote (no journald needed; skipped where that tool is not
installed: `apt-get install systemd-journal-remote`). The system journal itself, with a real journald
and real units, is tests/e2e/test_journal_systemd.py."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkd.errors import HostOperationFailed
from sparkd.host import journal as journal_mod
from sparkd.host.journal import SystemJournal
from sparkd.model.unit import MESSAGE_MAX, JournalLine, clean_message
from tests.fakes.host import FakeJournal

UNIT = "sparkd-demo-rank0.service"
OTHER = "sparkd-other-rank0.service"
JOURNAL_REMOTE = next(
    (p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote") if Path(p).exists()),
    shutil.which("systemd-journal-remote") or "",
)


# --- what a message is made into -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"plain", "plain"),
        (b"tab\tkept", "tab\tkept"),
        (b"bad \xff byte", "bad \ufffd byte"),
        (b"\x1b[31mred\x1b[0m", "\ufffd[31mred\ufffd[0m"),  # no terminal escapes
        ("two\nlines\r", "two\ufffdlines\ufffd"),
        ("del\x7f c1\x9b nul\x00", "del\ufffd c1\ufffd nul\ufffd"),
        ("sep\u2028par\u2029", "sep\ufffdpar\ufffd"),
        ("ünïcødé ✓", "ünïcødé ✓"),
        ("é".encode(), "é"),
    ],
)
def test_clean_message(raw: bytes | str, shown: str) -> None:
    assert clean_message(raw) == shown


def test_messages_are_cut_and_priorities_bounded() -> None:
    assert clean_message(b"x" * 100_000) == "x" * MESSAGE_MAX
    assert len(clean_message("é" * 100_000)) == MESSAGE_MAX
    assert len(clean_message("é".encode() * 100_000)) == MESSAGE_MAX  # 2 bytes each: still 4096 characters
    assert JournalLine.of(1.0, UNIT, b"m", 99).priority == 7
    assert JournalLine.of(1.0, UNIT, b"m", -1).priority == 0
    assert JournalLine.of(1.0, UNIT, b"m") == JournalLine(1.0, UNIT, "m", 6)


# --- the fake ------------------------------------------------------------------------------------


async def take(lines: AsyncIterator[JournalLine], n: int) -> list[str]:
    return [(await anext(lines)).message for _ in range(n)]


def test_fake_journal_tail_and_follow() -> None:
    async def go() -> None:
        fake = FakeJournal()
        for i in range(5):
            fake.add(UNIT, f"line {i}")
            fake.add(OTHER, f"other {i}")
        assert [line.message for line in await fake.tail(UNIT, 3)] == ["line 2", "line 3", "line 4"]
        assert [line.message for line in await fake.tail(UNIT, 0)] == ["line 4"]  # at least one
        assert len(await fake.tail(UNIT, 5000)) == 5
        timestamps = [line.timestamp for line in fake.lines]
        assert timestamps == sorted(set(timestamps))
        async with contextlib.aclosing(fake.follow(UNIT, 2)) as follow:
            assert await take(follow, 2) == ["line 3", "line 4"]
            fake.add(OTHER, "not mine")
            fake.add(UNIT, "new \x1b line")
            assert await take(follow, 1) == ["new \ufffd line"]
        async with contextlib.aclosing(fake.follow(UNIT, 0)) as follow:
            pending = asyncio.ensure_future(anext(follow))
            await asyncio.sleep(0.01)
            assert not pending.done()  # nothing old, nothing new yet
            fake.add(UNIT, "now")
            assert (await asyncio.wait_for(pending, 1)).message == "now"
        assert fake._waiters == []
        fake.available = False
        assert await fake.tail(UNIT, 10) == []
        with pytest.raises(HostOperationFailed):
            await anext(fake.follow(UNIT, 1))

    asyncio.run(go())


# --- the real reader, over journal files -----------------------------------------------------------


def export_entry(usec: int, message: bytes, unit: str = UNIT, priority: int | None = 6, **fields: str) -> bytes:
    """One entry in the journal export format (systemd's JOURNAL_EXPORT_FORMATS), `message` binary-safe."""
    out = [
        b"__CURSOR=s=0;i=%d" % usec,
        b"__REALTIME_TIMESTAMP=%d" % usec,
        b"__MONOTONIC_TIMESTAMP=%d" % usec,
        b"_BOOT_ID=0123456789abcdef0123456789abcdef",
    ]
    if unit:
        out.append(b"_SYSTEMD_UNIT=" + unit.encode())
    if priority is not None:
        out.append(b"PRIORITY=%d" % priority)
    out += [f"{k}={v}".encode() for k, v in fields.items()]
    return b"\n".join(out) + b"\nMESSAGE\n" + struct.pack("<Q", len(message)) + message + b"\n\n"


class JournalDir:
    """A directory of journal files that entries are appended to, as journald would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.usec = 1_700_000_000_000_000

    def write(self, *entries: tuple[bytes, dict[str, Any]]) -> None:
        data = b""
        for message, fields in entries:
            self.usec += 1_000_000
            data += export_entry(self.usec, message, **fields)
        subprocess.run(
            [JOURNAL_REMOTE, "-o", str(self.path / "system.journal"), "-"], input=data, check=True, capture_output=True
        )

    def lines(self, unit: str, *messages: str) -> None:
        self.write(*((m.encode(), {"unit": unit}) for m in messages))


@pytest.fixture
def jdir(tmp_path: Path) -> Iterator[JournalDir]:
    if not JOURNAL_REMOTE:
        pytest.skip("needs systemd-journal-remote (apt-get install systemd-journal-remote)")
    yield JournalDir(tmp_path)


def test_tail_reads_a_units_last_lines_oldest_first(jdir: JournalDir) -> None:
    jdir.lines(UNIT, "one", "two")
    jdir.lines(OTHER, "not mine")
    jdir.write(
        (b"bad \xff \x1b[1m\nend", {"unit": UNIT, "priority": 3}),
        (b"no priority", {"unit": UNIT, "priority": None}),
        # PID 1 about the unit (journalctl -u shows these): matched by UNIT=, not _SYSTEMD_UNIT=.
        (b"Main process exited, code=killed, status=9/KILL", {"unit": "init.scope", "_PID": "1", "UNIT": UNIT}),
        # Another process naming the unit in UNIT= is not PID 1: not matched.
        (b"spoof", {"unit": OTHER, "_PID": "77", "UNIT": UNIT}),
        (b"x" * 100_000, {"unit": UNIT}),
    )
    journal = SystemJournal(str(jdir.path))
    lines = asyncio.run(journal.tail(UNIT, 100))
    assert [line.message[:60] for line in lines] == [
        "one",
        "two",
        "bad \ufffd \ufffd[1m\ufffdend",
        "no priority",
        "Main process exited, code=killed, status=9/KILL",
        "x" * 60,
    ]
    assert [line.priority for line in lines] == [6, 6, 3, 6, 6, 6]
    assert {line.unit for line in lines} == {UNIT}
    assert len(lines[-1].message) == MESSAGE_MAX
    stamps = [line.timestamp for line in lines]
    assert stamps == sorted(stamps) and stamps[0] == pytest.approx(1_700_000_001.0)
    last_two = asyncio.run(journal.tail(UNIT, 2))
    assert last_two[0].message == "Main process exited, code=killed, status=9/KILL"
    assert len(asyncio.run(journal.tail(UNIT, 0))) == 1  # at least one
    assert asyncio.run(journal.tail("nothing.service", 10)) == []


def test_tail_with_no_journal_is_empty_and_follow_refuses(tmp_path: Path) -> None:
    journal = SystemJournal(str(tmp_path))  # a directory without journal files
    assert asyncio.run(journal.tail(UNIT, 10)) == []

    async def follow() -> None:
        async with contextlib.aclosing(journal.follow(UNIT, 10)) as lines:
            await anext(lines)

    with pytest.raises(HostOperationFailed, match="no journal"):
        asyncio.run(follow())
    with pytest.raises(HostOperationFailed, match="cannot open the journal"):
        asyncio.run(SystemJournal(str(tmp_path / "absent")).tail(UNIT, 10))


def test_follow_replays_then_streams_new_lines(jdir: JournalDir) -> None:
    jdir.lines(UNIT, *(f"old {i}" for i in range(5)))
    journal = SystemJournal(str(jdir.path))

    async def go() -> None:
        async with contextlib.aclosing(journal.follow(UNIT, 2)) as follow:
            assert await take(follow, 2) == ["old 3", "old 4"]
            await asyncio.to_thread(jdir.lines, OTHER, "not mine")
            await asyncio.to_thread(jdir.lines, UNIT, "new 0", "new 1")
            assert await asyncio.wait_for(take(follow, 2), 10) == ["new 0", "new 1"]
        async with contextlib.aclosing(journal.follow(UNIT, 0)) as follow:  # only what comes from now on
            pending = asyncio.ensure_future(anext(follow))
            await asyncio.sleep(0.7)  # more than one wait step
            assert not pending.done()
            await asyncio.to_thread(jdir.lines, UNIT, "newest")
            assert (await asyncio.wait_for(pending, 10)).message == "newest"

    asyncio.run(go())


def test_follow_of_a_unit_with_no_lines_yet(jdir: JournalDir) -> None:
    jdir.lines(OTHER, "someone else")
    journal = SystemJournal(str(jdir.path))

    async def go() -> None:
        async with contextlib.aclosing(journal.follow(UNIT, 10)) as follow:
            pending = asyncio.ensure_future(anext(follow))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(jdir.lines, UNIT, "first")
            assert (await asyncio.wait_for(pending, 10)).message == "first"

    asyncio.run(go())


def test_a_cancelled_follow_closes_its_reader_once_the_step_ends(
    jdir: JournalDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    jdir.lines(UNIT, "one")
    closed: list[float] = []
    real_close = journal_mod._Reader.close

    def close(self: journal_mod._Reader) -> None:
        closed.append(time.monotonic())
        real_close(self)

    monkeypatch.setattr(journal_mod._Reader, "close", close)
    journal = SystemJournal(str(jdir.path))

    async def consume(seen: asyncio.Event) -> None:
        async for _ in journal.follow(UNIT, 1):
            seen.set()

    async def go() -> float:
        seen = asyncio.Event()
        task = asyncio.create_task(consume(seen))
        await asyncio.wait_for(seen.wait(), 10)
        await asyncio.sleep(0.1)  # now inside a wait step, in its thread
        task.cancel()
        cancelled = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled < journal_mod.WAIT_S * 0.8  # not held up by the step
        deadline = time.monotonic() + 5
        while not closed:
            assert time.monotonic() < deadline, "the reader was never closed"
            await asyncio.sleep(0.01)
        return closed[0] - cancelled

    after = asyncio.run(go())
    assert after <= journal_mod.WAIT_S + 1.0  # within a step
    assert len(closed) == 1
