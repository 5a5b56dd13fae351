"""The systemd journal (systemd-python's sd-journal reader): a unit's last lines, and following them.

A unit's lines are what `journalctl -u UNIT` shows (systemd's add_matches_for_unit): the unit's
own output (`_SYSTEMD_UNIT=`), PID 1's lines about it (`_PID=1` and `UNIT=`: "Main process
exited, code=killed, status=9/KILL", "Failed with result 'signal'"), its core dumps, and what
root daemons log about it (`OBJECT_SYSTEMD_UNIT=`). Every boot's lines, not only this one's.

The reader is opened on the system journal (`SYSTEM_ONLY | LOCAL_ONLY`: this machine's system
services and kernel, no user sessions), which is both the volatile /run/log/journal and the
persistent /var/log/journal. sd-journal reads the journal files' mmaps and blocks in inotify,
so every read runs in one of this adapter's own threads, never on the event loop; a follower
holds a thread only for one step at a time (at most `WAIT_S`), so a cancelled follow stops
within that, and followers never take the threads the rest of the daemon uses (NVML, hashing).

Where the machine has no journal (no journald ever ran: a container, a CI VM): `tail` answers
[] (there are no lines), while `follow` raises HostOperationFailed at once, since it would
otherwise wait for lines that can never come. A journal that cannot be opened or read (EMFILE,
EACCES, a corrupted file that sd-journal gives up on) raises HostOperationFailed in both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sparkd.errors import HostOperationFailed
from sparkd.model.unit import MESSAGE_MAX, JournalLine
from systemd import journal

T = TypeVar("T")

#: `tail` reads at most this many lines; `follow` replays at most this many first.
TAIL_MAX = 1000
#: How long one follow step waits for new lines: the longest a cancelled follow keeps its thread.
WAIT_S = 0.5
#: At most this many lines come out of one follow step (a burst is handed over in parts).
BATCH = 256
#: The MESSAGE_ID of systemd-coredump's entries.
_COREDUMP = "fc2e22bc6ee647b6b90729ab34a250b1"
#: Threads for journal reads; a follow step holds one for up to WAIT_S, so more followers than this
#: share them (each then sees new lines up to followers / THREADS * WAIT_S seconds late).
THREADS = 8


def _add_unit_matches(reader: Any, unit: str) -> None:
    """journalctl -u's matches (systemd's add_matches_for_unit): ORed groups of ANDed fields."""
    groups = (
        (f"_SYSTEMD_UNIT={unit}",),
        (f"MESSAGE_ID={_COREDUMP}", "_UID=0", f"COREDUMP_UNIT={unit}"),
        ("_PID=1", f"UNIT={unit}"),
        ("_UID=0", f"OBJECT_SYSTEMD_UNIT={unit}"),
    )
    for i, group in enumerate(groups):
        if i:
            reader.add_disjunction()
        reader.add_match(*group)


def _line(reader: Any, unit: str) -> JournalLine:
    """The entry under the read pointer. A field that is missing, or that sd-journal cannot read (a
    corrupted entry: EBADMSG), reads as empty rather than ending the read."""
    try:
        message = reader._get("MESSAGE")
    except (KeyError, OSError):
        message = b""
    try:
        priority = int(reader._get("PRIORITY"))
    except (KeyError, OSError, ValueError):
        priority = 6  # journald's default for a line without one (info)
    return JournalLine.of(reader._get_realtime() / 1e6, unit, message, priority)


class _Reader:
    """One open sd-journal reader on a unit's lines. Used by one thread at a time, closed once."""

    def __init__(self, directory: str | None, unit: str, need_files: bool) -> None:
        self.unit = unit
        try:
            if directory is None:
                self.reader = journal.Reader(journal.SYSTEM_ONLY | journal.LOCAL_ONLY)
            else:
                self.reader = journal.Reader(path=directory)
        except OSError as e:
            raise HostOperationFailed(f"cannot open the journal: {e}", unit=unit) from e
        try:
            if need_files and self.reader.get_usage() == 0:
                raise HostOperationFailed(
                    "there is no journal to follow on this machine (is systemd-journald running?)", unit=unit
                )
            # Fields are read at most this large (sd_journal_set_data_threshold): a message is cut anyway.
            self.reader.data_threshold = MESSAGE_MAX * 4
            _add_unit_matches(self.reader, unit)
        except BaseException:
            self.reader.close()
            raise

    def last(self, n: int) -> list[JournalLine]:
        """The last `n` lines, oldest first; leaves the read pointer after the newest entry, so that
        `more` reads only what is added from now on."""
        reader = self.reader
        try:
            reader.seek_tail()
            lines: list[JournalLine] = []
            newest = ""
            while len(lines) < n and reader._previous(1):
                lines.append(_line(reader, self.unit))
                newest = newest or reader._get_cursor()
            if newest:
                reader.seek_cursor(newest)
                reader._next(1)  # onto the newest again: the next `_next` is past it
            else:
                reader.seek_tail()
                reader._previous(1)  # onto the last entry (if any): `_next` after a bare seek_tail may repeat it
            return lines[::-1]
        except OSError as e:
            raise HostOperationFailed(f"cannot read the journal: {e}", unit=self.unit) from e

    def more(self) -> list[JournalLine]:
        """The lines added since the last call (at most BATCH), waiting up to WAIT_S when there are none."""
        try:
            lines = self._drain()
            if not lines:
                self.reader.wait(WAIT_S)
                lines = self._drain()
            return lines
        except OSError as e:
            raise HostOperationFailed(f"cannot read the journal: {e}", unit=self.unit) from e

    def _drain(self) -> list[JournalLine]:
        lines: list[JournalLine] = []
        while len(lines) < BATCH and self.reader._next(1):
            lines.append(_line(self.reader, self.unit))
        return lines

    def close(self) -> None:
        self.reader.close()


class SystemJournal:
    """The machine's journal (implements `protocols.Journal`).

    `directory` reads the journal files in that directory instead of the system journal (tests
    read files written by systemd-journal-remote there).
    """

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="sparkd-journal")

    async def _in_thread(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def tail(self, unit: str, lines: int) -> list[JournalLine]:
        """The unit's last `lines` lines (kept within 1..TAIL_MAX), oldest first; [] when there are none
        (or no journal at all)."""
        n = min(max(lines, 1), TAIL_MAX)

        def read() -> list[JournalLine]:
            reader = _Reader(self._directory, unit, need_files=False)
            try:
                return reader.last(n)
            finally:
                reader.close()

        return await self._in_thread(read)

    async def follow(self, unit: str, since_lines: int) -> AsyncGenerator[JournalLine, None]:
        """The unit's last `since_lines` lines (kept within 0..TAIL_MAX), then each new one as it is
        written, until the caller stops iterating (use `contextlib.aclosing`, or cancel the task: a
        generator left unclosed keeps its reader until it is collected). Raises HostOperationFailed
        when the machine has no journal, or it cannot be read."""
        n = min(max(since_lines, 0), TAIL_MAX)
        opened: list[_Reader] = []

        def start() -> list[JournalLine]:
            opened.append(_Reader(self._directory, unit, need_files=True))
            return opened[0].last(n)

        def close(step: asyncio.Future[list[JournalLine]]) -> None:
            if not step.cancelled():
                step.exception()  # retrieved: the generator is gone, nobody else will
            for reader in opened:
                reader.close()

        step = asyncio.ensure_future(self._in_thread(start))
        try:
            while True:
                # The shield: a cancelled consumer must not close the reader under a running step; the
                # step finishes (within WAIT_S) and `close` runs then.
                for line in await asyncio.shield(step):
                    yield line
                step = asyncio.ensure_future(self._in_thread(opened[0].more))
        finally:
            if step.done():
                close(step)
            else:
                step.add_done_callback(close)
