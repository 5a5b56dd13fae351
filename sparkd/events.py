"""The in-process event bus: state transitions, logged once each, fanned out to subscribers.

Publishers (the state loop, the deployment manager, the peer manager) call `transition()`
with the latest state of a subject; the bus publishes only when the state differs from
the last one it saw for that subject, so a transition is logged exactly once however
often it is observed. Subscribers get bounded queues (the slowest never holds up the
daemon: when its queue is full, its oldest event is dropped and counted). Later
revisions stream these in the API and count them in metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

#: States that are logged at WARNING (a health transition worth an operator's eye).
BAD_STATES = frozenset({"FAILED", "DISCONNECTED", "REFUSED", "failed", "down", "unhealthy"})


@dataclass(frozen=True)
class Event:
    """One transition: `kind` ("unit", "deployment", "peer", "link", "health", "gpu"), the subject's
    name, its new state, the state before ("" for the first observation) and why."""

    kind: str
    subject: str
    state: str
    previous: str
    message: str
    time: float


class EventBus:
    """Publishes transitions (see the module docstring)."""

    def __init__(self, history: int = 256) -> None:
        self._last: dict[tuple[str, str], str] = {}
        self._subscribers: list[asyncio.Queue[Event]] = []
        self.recent: deque[Event] = deque(maxlen=history)
        self.dropped = 0

    def transition(self, kind: str, subject: str, state: str, message: str = "") -> Event | None:
        """Records `subject`'s state; publishes (and logs) an event only when it changed."""
        key = (kind, subject)
        previous = self._last.get(key, "")
        if previous == state:
            return None
        self._last[key] = state
        event = Event(kind, subject, state, previous, message, time.time())
        (log.warning if state in BAD_STATES else log.info)(
            f"{kind}.state_changed", subject=subject, state=state, previous=previous or "-", reason=message
        )
        self.recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)
        return event

    def forget(self, kind: str, subject: str) -> None:
        """Drops a subject that no longer exists (a deleted deployment), so a new one starts afresh."""
        self._last.pop((kind, subject), None)

    def subscribe(self, maxsize: int = 256) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)
