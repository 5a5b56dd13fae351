"""The in-process event bus: state transitions and one-off events, numbered, retained, fanned out.

Publishers (the state loop, the deployment manager, the peer manager) call `transition()`
with the latest state of a subject; the bus publishes only when the state differs from
the last one it saw for that subject, so a transition is logged exactly once however
often it is observed. `publish()` is for one-off events that are not states (a pairing
token issued, a peer's identity changed): each call is one event.

Every event gets a `position`: 1 for the first this daemon process publishes, one more
for each later one. Positions restart with the process, so the bus also has a random
`stream_id`: a client that last saw (stream_id, position) can tell a restarted daemon
from the one it was reading. The bus retains its newest `HISTORY` events (`recent`);
`watch()` reads them by position and then waits for new ones, which is all the API's
event stream needs. A watch holds no queue, only its cursor (the position it reached):
however slow its reader, the daemon never waits for it and memory stays the history's.
A reader so slow that the history moved past its cursor is told so (`Delivery.reset`,
with the number of events it lost) and continues from the oldest event retained.

The older `subscribe()` queues stay for in-process consumers (metrics): bounded, the
oldest event dropped and counted when one is full.

Publish from the daemon's event loop (or with no loop running, as unit tests do): the
bus wakes waiting watches directly, without locks.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

#: States that are logged at WARNING (a health transition worth an operator's eye).
BAD_STATES = frozenset({"FAILED", "DISCONNECTED", "REFUSED", "failed", "down", "unhealthy"})
#: Events the bus retains, for watches to read and resume from.
HISTORY = 4096
#: Messages are cut to this many characters, so the history stays small (4096 events: a few MiB at most).
MAX_MESSAGE_CHARS = 1024
#: The most events one read hands out: a watch replaying the whole history does it in steps.
BATCH = 256

_VERB_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Event:
    """One event: `kind` ("unit", "deployment", "peer", "link", "health", "gpu", ...), the subject's
    name, its new state (for a one-off event: what happened), the state before ("" for the first
    observation and for one-off events), why, when (seconds since the epoch), and its position in
    this daemon process's stream (1, 2, 3, ...)."""

    kind: str
    subject: str
    state: str
    previous: str
    message: str
    time: float
    position: int


@dataclass(frozen=True)
class Delivery:
    """An event as a watch hands it out. `reset`: the watcher will never see some events before this one
    (its cursor was of another stream, past the newest event, or older than the history); `missed`: how
    many events of this stream it lost, of every kind (0 when unknown: the cursor was of another stream)."""

    event: Event
    reset: bool = False
    missed: int = 0


class EventBus:
    """Publishes, numbers and retains events (see the module docstring)."""

    def __init__(self, history: int = HISTORY) -> None:
        if history < 1:
            raise ValueError("the bus must retain at least one event")
        #: Names this daemon process's numbering: 16 random hex characters.
        self.stream_id = secrets.token_hex(8)
        self._last: dict[tuple[str, str], str] = {}
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._closed = False
        #: The retained events, oldest first; positions are consecutive.
        self.recent: deque[Event] = deque(maxlen=history)
        #: Position of the newest event; 0 before the first.
        self.latest = 0
        #: Events dropped from full subscriber queues.
        self.dropped = 0

    # Publishing.

    def transition(self, kind: str, subject: str, state: str, message: str = "") -> Event | None:
        """Records `subject`'s state; publishes (and logs) an event only when it changed."""
        key = (kind, subject)
        previous = self._last.get(key, "")
        if previous == state:
            return None
        self._last[key] = state
        (log.warning if state in BAD_STATES else log.info)(
            f"{kind}.state_changed", subject=subject, state=state, previous=previous or "-", reason=message
        )
        return self._append(kind, subject, state, previous, message)

    def publish(self, kind: str, subject: str, state: str, message: str = "") -> Event:
        """Publishes (and logs) a one-off event, not a state: every call is one event, and the subject's
        last state (for `transition()`) is left alone. `state` says what happened in lowercase snake case
        (`token_issued`, `identity_changed`); it is also the verb of the log event (`pairing.token_issued`)."""
        verb = state if _VERB_RE.fullmatch(state) else "event"
        (log.warning if state in BAD_STATES else log.info)(
            f"{kind}.{verb}", subject=subject, state=state, reason=message
        )
        return self._append(kind, subject, state, "", message)

    def forget(self, kind: str, subject: str) -> None:
        """Drops a subject that no longer exists (a deleted deployment), so a new one starts afresh."""
        self._last.pop((kind, subject), None)

    def _append(self, kind: str, subject: str, state: str, previous: str, message: str) -> Event:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        self.latest += 1
        event = Event(kind, subject, state, previous, message, time.time(), self.latest)
        self.recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)
        self._wake()
        return event

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # Reading by position.

    @property
    def oldest(self) -> int:
        """Position of the oldest event retained (latest + 1 while none is)."""
        return self.recent[0].position if self.recent else self.latest + 1

    @property
    def waiting(self) -> int:
        """How many watches are waiting for a new event now."""
        return len(self._waiters)

    def since(self, position: int, limit: int = BATCH) -> tuple[list[Event], int]:
        """The retained events after `position`, oldest first, at most `limit`; and how many events after
        `position` are no longer retained (dropped from the history before this reader got to them)."""
        if position >= self.latest:
            return [], 0
        first = self.oldest
        lost = max(0, first - position - 1)
        start = max(0, position - first + 1)
        return list(itertools.islice(self.recent, start, start + limit)), lost

    async def wait(self, position: int) -> None:
        """Returns once an event after `position` is published (at once if one is) or the bus is closed.
        A waiting watch costs one future, released when it returns or is cancelled."""
        if self.latest > position or self._closed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    def resume(self, after: int, stream_id: str = "") -> tuple[int, bool]:
        """Where a watch continues whose client last saw position `after` of stream `stream_id` ("" when it
        names none): (cursor, reset). A cursor of another stream (the daemon restarted and numbers afresh),
        or past the newest position (so not of this stream either), starts again from the oldest retained
        event, with a reset. A cursor older than the history is detected when reading (`since`)."""
        if (stream_id and stream_id != self.stream_id) or after > self.latest:
            return 0, True
        return after, False

    async def watch(
        self, after: int = 0, stream_id: str = "", follow: bool = False, kinds: Collection[str] = ()
    ) -> AsyncGenerator[Delivery, None]:
        """The events after the cursor (`after`, `stream_id`: see `resume`), of `kinds` (all when empty),
        oldest first: what is retained now, then, with `follow`, each new event as it is published, until
        the bus is closed. The first event after a gap carries the reset (see `Delivery`); a watch that
        has sent nothing yet carries a pending reset to the first event it sends."""
        wanted = frozenset(kinds)
        cursor, reset = self.resume(after, stream_id)
        missed = 0
        end = self.latest  # without follow: what is retained when the watch starts
        while not self._closed:
            events, lost = self.since(cursor)
            if lost and cursor:  # a cursor of 0 asks for the oldest retained: nothing of its own was lost
                reset, missed = True, missed + lost
            for event in events:
                if not follow and event.position > end:
                    return
                cursor = event.position
                if wanted and event.kind not in wanted:
                    continue
                yield Delivery(event, reset, missed)
                reset, missed = False, 0
            if events:
                continue
            if not follow:
                return
            await self.wait(cursor)

    def close(self) -> None:
        """Ends every watch (the daemon is stopping): each returns after the event it is handing out."""
        self._closed = True
        self._wake()

    # In-process subscribers.

    def subscribe(self, maxsize: int = 256) -> asyncio.Queue[Event]:
        """A bounded queue of every event published from now on (the oldest dropped when it is full)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)
