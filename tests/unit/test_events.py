"""The event bus: a transition is published (and logged) once, subscribers are bounded."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import structlog

from sparkd.events import MAX_MESSAGE_CHARS, Delivery, EventBus


def test_a_state_seen_again_is_not_a_transition() -> None:
    bus = EventBus()
    with structlog.testing.capture_logs() as logs:
        for state in ("STARTING", "STARTING", "READY", "READY", "READY", "FAILED"):
            bus.transition("deployment", "demo", state, "why")
    assert [(e.previous, e.state) for e in bus.recent] == [("", "STARTING"), ("STARTING", "READY"), ("READY", "FAILED")]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("deployment.state_changed", "info"),
        ("deployment.state_changed", "info"),
        ("deployment.state_changed", "warning"),
    ]


def test_forget_lets_a_new_subject_of_the_same_name_start_afresh() -> None:
    bus = EventBus()
    bus.transition("deployment", "demo", "READY")
    bus.forget("deployment", "demo")
    assert bus.transition("deployment", "demo", "READY") is not None


def test_a_slow_subscriber_loses_its_oldest_events_never_blocks_the_publisher() -> None:
    async def main() -> None:
        bus = EventBus()
        queue = bus.subscribe(maxsize=2)
        for i in range(5):
            bus.transition("unit", "u", f"s{i}")
        assert [queue.get_nowait().state for _ in range(2)] == ["s3", "s4"] and bus.dropped == 3
        bus.unsubscribe(queue)
        bus.transition("unit", "u", "s5")
        assert queue.empty()

    asyncio.run(main())


def test_every_event_gets_the_next_position_of_a_stream_of_its_own() -> None:
    bus, other = EventBus(), EventBus()
    assert bus.latest == 0 and bus.oldest == 1
    first = bus.transition("unit", "u", "active")
    assert bus.transition("unit", "u", "active") is None  # not an event: no position taken
    one_off = bus.publish("pairing", "spark2", "token_issued", "expires in 900 s")
    third = bus.transition("unit", "u", "failed")
    assert first is not None and third is not None
    assert [first.position, one_off.position, third.position] == [1, 2, 3] and bus.latest == 3
    assert re.fullmatch(r"[0-9a-f]{16}", bus.stream_id) and other.stream_id != bus.stream_id


def test_publish_is_one_event_per_call_and_leaves_the_subjects_state_alone() -> None:
    bus = EventBus()
    bus.transition("peer", "spark2", "CONNECTED")
    with structlog.testing.capture_logs() as logs:
        a = bus.publish("peer", "spark2", "identity_changed", "key fingerprint differs")
        b = bus.publish("peer", "spark2", "identity_changed", "key fingerprint differs")
        bus.publish("peer", "spark2", "Weird State!")
    assert (a.position, b.position) == (2, 3) and a.previous == b.previous == ""
    assert [e["event"] for e in logs] == ["peer.identity_changed", "peer.identity_changed", "peer.event"]
    assert bus.transition("peer", "spark2", "CONNECTED") is None  # still CONNECTED as far as transitions go
    changed = bus.transition("peer", "spark2", "DISCONNECTED")
    assert changed is not None and changed.previous == "CONNECTED"


def test_the_history_is_bounded_and_read_by_position() -> None:
    bus = EventBus(history=4)
    for i in range(10):
        bus.publish("unit", f"u{i}", "started")
    assert [e.position for e in bus.recent] == [7, 8, 9, 10] and bus.oldest == 7
    assert [(e.position, e.subject) for e in bus.since(8)[0]] == [(9, "u8"), (10, "u9")]
    assert bus.since(8)[1] == 0
    events, lost = bus.since(2)  # 3, 4, 5, 6 are gone
    assert [e.position for e in events] == [7, 8, 9, 10] and lost == 4
    assert bus.since(6) == (list(bus.recent), 0)
    assert bus.since(10) == ([], 0) and bus.since(99) == ([], 0)
    assert [e.position for e in bus.since(0, limit=2)[0]] == [7, 8]


def test_messages_are_cut_so_the_history_stays_small() -> None:
    bus = EventBus()
    event = bus.publish("unit", "u", "failed", "x" * 5000)
    assert len(event.message) == MAX_MESSAGE_CHARS and event.message.endswith("…")


def test_a_cursor_of_another_stream_or_past_the_newest_event_resets() -> None:
    bus = EventBus()
    for i in range(3):
        bus.publish("unit", "u", f"s{i}")
    assert bus.resume(2, bus.stream_id) == (2, False)
    assert bus.resume(2, "") == (2, False)  # no stream named: the position is taken to be of this one
    assert bus.resume(0, bus.stream_id) == (0, False)
    assert bus.resume(2, "0123456789abcdef") == (0, True)  # the daemon restarted: positions mean nothing
    assert bus.resume(4, "") == (0, True)  # past the newest: not of this stream


def collect(bus: EventBus, n: int | None = None, **kwargs: Any) -> list[Delivery]:
    async def main() -> list[Delivery]:
        out = []
        async for d in bus.watch(**kwargs):
            out.append(d)
            if len(out) == n:
                break
        return out

    return asyncio.run(main())


def test_a_watch_without_follow_sends_what_is_retained_after_the_cursor_then_ends() -> None:
    bus = EventBus()
    for i in range(5):
        bus.publish("unit" if i % 2 else "peer", f"s{i}", "x")
    assert [(d.event.position, d.reset) for d in collect(bus, after=2, stream_id=bus.stream_id)] == [
        (3, False),
        (4, False),
        (5, False),
    ]
    assert [d.event.position for d in collect(bus, kinds=["unit"])] == [2, 4]
    assert collect(bus, after=5) == []


def test_a_stale_cursor_gets_one_reset_counting_what_it_missed_then_everything_retained() -> None:
    bus = EventBus(history=3)
    for i in range(6):
        bus.publish("unit", f"s{i}", "x")  # 1..6; 4, 5, 6 retained
    got = collect(bus, after=1, stream_id=bus.stream_id)
    assert [(d.event.position, d.reset, d.missed) for d in got] == [(4, True, 2), (5, False, 0), (6, False, 0)]
    restarted = collect(bus, after=5, stream_id="feedfacefeedface")
    assert [(d.event.position, d.reset, d.missed) for d in restarted] == [(4, True, 0), (5, False, 0), (6, False, 0)]
    # The reset waits for the first event of the kinds asked for.
    bus.publish("peer", "spark2", "x")
    peers = collect(bus, after=1, stream_id=bus.stream_id, kinds=["peer"])
    assert [(d.event.position, d.reset, d.missed) for d in peers] == [(7, True, 3)]


def test_a_following_watch_waits_for_new_events_without_polling() -> None:
    async def main() -> None:
        bus = EventBus()
        bus.publish("unit", "old", "x")
        watch = bus.watch(after=1, follow=True)
        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.01)
        assert not pending.done() and bus.waiting == 1  # parked on one future
        bus.transition("deployment", "demo", "READY")
        d = await asyncio.wait_for(pending, 1)
        assert (d.event.position, d.event.subject, d.reset) == (2, "demo", False)
        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.01)
        pending.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert bus.waiting == 0

    asyncio.run(main())


def test_close_ends_every_following_watch() -> None:
    async def main() -> None:
        bus = EventBus()
        bus.publish("unit", "u", "x")
        seen: list[int] = []

        async def follow() -> None:
            async for d in bus.watch(follow=True):
                seen.append(d.event.position)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.01)
        bus.close()
        await asyncio.wait_for(task, 1)
        assert seen == [1] and bus.waiting == 0

    asyncio.run(main())


def test_a_slow_watcher_never_holds_up_the_bus_and_learns_exactly_what_it_missed() -> None:
    async def main() -> None:
        bus = EventBus(history=8)
        bus.publish("unit", "u", "s0")
        watch = bus.watch(follow=True)
        assert (await anext(watch)).event.position == 1
        for i in range(1, 1001):  # the reader sleeps through 1000 events: nothing waits for it
            bus.publish("unit", "u", f"s{i}")
        assert len(bus.recent) == 8 and bus.waiting == 0
        rest = [await anext(watch) for _ in range(8)]
        assert (rest[0].event.position, rest[0].reset, rest[0].missed) == (994, True, 992)  # 2..993 are gone
        assert [d.event.position for d in rest] == list(range(994, 1002))
        assert not any(d.reset for d in rest[1:])
        await watch.aclose()

    asyncio.run(main())
