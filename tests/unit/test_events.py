"""The event bus: a transition is published (and logged) once, subscribers are bounded."""

from __future__ import annotations

import asyncio

import structlog

from sparkd.events import EventBus


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
