"""WatchEvents over the real unix sockets, and `sparkctl-client events` against a running daemon.

Events are published on the daemon's loop with kind "test", so the assertions name exact
positions and subjects whatever the daemon itself published at start (links, units, GPUs).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from sparkctl_client.cli import main
from sparkd.rpc import limits
from sparkd.v1 import event_service_pb2 as pb
from sparkd.v1 import event_service_pb2_grpc as pb_grpc
from tests.api.conftest import Daemon, head_config
from tests.api.test_deployments import error
from tests.fakes.host import FakeHost

ROOT = Path(__file__).parents[2]


def publish(d: Daemon, *subjects: str) -> list[int]:
    """Publishes one "test" event per subject on the daemon's loop; returns their positions."""
    bus = d.system.bus
    return list(d.run(lambda: [bus.publish("test", s, "happened", f"why {s}").position for s in subjects]))


def stub(channel: grpc.Channel) -> Any:
    return pb_grpc.EventServiceStub(channel)


def watch(channel: grpc.Channel, **fields: Any) -> list[pb.WatchEventsResponse]:
    return list(stub(channel).WatchEvents(pb.WatchEventsRequest(**fields), timeout=10))


def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_client_that_reconnects_after_its_last_position_misses_nothing(daemon: Daemon) -> None:
    bus = daemon.system.bus
    first = publish(daemon, "a", "b", "c")
    got = watch(daemon.admin.channel)
    assert [r.event.position for r in got] == [e.position for e in daemon.run(lambda: list(bus.recent))]
    assert [(r.event.position, r.event.subject) for r in got[-3:]] == list(zip(first, "abc", strict=True))
    assert {r.event.stream_id for r in got} == {bus.stream_id} and not any(r.reset for r in got)
    last = got[-1].event
    assert (last.kind, last.state, last.previous, last.message) == ("test", "happened", "", "why c")
    assert abs(last.time.ToNanoseconds() / 1e9 - time.time()) < 60

    daemon.admin.channel.close()  # the client goes away; more happens meanwhile
    later = publish(daemon, "d", "e")
    with grpc.insecure_channel(f"unix:{daemon.system.admin_socket}") as channel:
        resumed = watch(channel, after_position=last.position, stream_id=last.stream_id)
    assert [(r.event.position, r.event.subject, r.reset) for r in resumed] == [
        (later[0], "d", False),
        (later[1], "e", False),
    ]
    assert later == [last.position + 1, last.position + 2]


def test_a_follower_gets_an_event_published_after_it_subscribed_and_leaves_nothing_behind(daemon: Daemon) -> None:
    bus = daemon.system.bus
    (start,) = publish(daemon, "before")
    call = stub(daemon.ro.channel).WatchEvents(
        pb.WatchEventsRequest(after_position=start, stream_id=bus.stream_id, follow=True, kinds=["test"])
    )
    until(lambda: daemon.run(lambda: bus.waiting) == 1, "the watch to wait for new events")
    (position,) = publish(daemon, "after")
    r = next(call)
    assert (r.event.position, r.event.subject, r.reset) == (position, "after", False)
    call.cancel()
    until(lambda: daemon.run(lambda: bus.waiting) == 0, "the cancelled watch to end")


def test_a_stream_id_of_another_daemon_run_gets_a_reset_and_everything_retained(daemon: Daemon) -> None:
    publish(daemon, "a")
    retained = [e.position for e in daemon.run(lambda: list(daemon.system.bus.recent))]
    got = watch(daemon.admin.channel, after_position=retained[-1], stream_id="0123456789abcdef")
    assert [r.event.position for r in got] == retained
    assert [(r.reset, r.missed) for r in got] == [(True, 0)] + [(False, 0)] * (len(got) - 1)


def test_a_position_older_than_the_history_gets_a_reset_counting_what_was_dropped(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    bus = daemon.system.bus
    (mark,) = publish(daemon, "mark")
    publish(daemon, *(f"e{i}" for i in range(bus.recent.maxlen or 0)))  # pushes `mark` and what came before out
    got = watch(daemon.admin.channel, after_position=mark - 1, stream_id=bus.stream_id, kinds=["test"])
    oldest = daemon.run(lambda: bus.oldest)
    assert (got[0].event.position, got[0].reset, got[0].missed) == (oldest, True, oldest - mark)
    assert [r.event.position for r in got] == list(range(oldest, oldest + len(got))) and not got[1].reset
    capsys.readouterr()
    args = ["events", "--kind", "test", "--after", str(mark - 1), "--stream-id", bus.stream_id]
    assert main(["--socket", str(daemon.system.ro_socket), *args]) == 0
    out, err = capsys.readouterr()
    notice = f"{oldest - mark} events missed (sparkd retains only its most recent); continuing from #{oldest}"
    assert err == f"sparkctl-client: {notice}\n"
    assert len(out.splitlines()) == len(got)


@pytest.mark.parametrize(
    "fields,bad",
    [
        ({"kinds": ["Deployment"]}, ["kinds[0]"]),
        ({"kinds": ["unit", "x" * 33, "a-b", ""]}, ["kinds[1]", "kinds[2]", "kinds[3]"]),
        ({"kinds": [f"kind_{chr(97 + i)}" for i in range(17)]}, ["kinds"]),
        ({"stream_id": "f" * 33, "kinds": ["9"]}, ["stream_id", "kinds[0]"]),
    ],
)
def test_bad_request_fields_are_refused_naming_each_field(
    daemon: Daemon, fields: dict[str, Any], bad: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as e:
        watch(daemon.ro.channel, follow=True, **fields)
    assert error(e.value) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SPEC", bad)


def test_the_read_only_socket_serves_it_under_the_socket_stream_cap(daemon: Daemon) -> None:
    bus = daemon.system.bus
    (position,) = publish(daemon, "ro")
    got = watch(daemon.ro.channel, after_position=position - 1)
    assert [(r.event.position, r.event.subject) for r in got] == [(position, "ro")]
    ro = stub(daemon.ro.channel)
    request = pb.WatchEventsRequest(after_position=position, follow=True)
    held = [ro.WatchEvents(request) for _ in range(limits.LOCAL.max_streams)]
    try:
        until(lambda: daemon.run(lambda: bus.waiting) == limits.LOCAL.max_streams, "every stream to be open")
        with pytest.raises(grpc.RpcError) as e:
            next(ro.WatchEvents(request))
        assert error(e.value)[:2] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_RESOURCE_EXHAUSTED")
    finally:
        for call in held:
            call.cancel()
    until(lambda: daemon.run(lambda: bus.waiting) == 0, "the held streams to end")
    assert [r.event.subject for r in watch(daemon.ro.channel, after_position=position - 1)] == ["ro"]


LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d +(\d+)  test {6}  (\S+)  - -> happened  why \2")


def test_cli_events_prints_one_line_per_event_and_json_lines(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    positions = publish(daemon, "a", "b\x1b[2J")
    socket = str(daemon.system.ro_socket)
    capsys.readouterr()  # the daemon's own log lines (it runs in this process)
    assert main(["--socket", socket, "events", "--kind", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [LINE.fullmatch(line).groups() for line in lines] == [  # type: ignore[union-attr]
        (str(positions[0]), "a"),
        (str(positions[1]), "b\\x1b[2J"),  # a control character is shown escaped, never sent to the terminal
    ]
    assert main(["--socket", socket, "-o", "json", "events", "--after", str(positions[0])]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["reset"] is False and record["missed"] == "0"
    assert record["event"]["position"] == str(positions[1]) and record["event"]["subject"] == "b\x1b[2J"
    assert record["event"]["stream_id"] == daemon.system.bus.stream_id and record["event"]["previous"] == ""


def test_cli_events_refuses_a_bad_kind_naming_it(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(daemon.system.ro_socket), "events", "--kind", "Bad"]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT [ERROR_REASON_INVALID_SPEC]" in err and "kinds[0]:" in err


def test_cli_follow_survives_a_daemon_restart_says_events_were_lost_and_exits_0_on_ctrl_c(
    root: Path, fake: FakeHost
) -> None:
    first = Daemon(head_config(root), fake)
    second: Daemon | None = None
    cli: subprocess.Popen[str] | None = None
    try:
        (position,) = publish(first, "one")
        cli = subprocess.Popen(
            [sys.executable, "-m", "sparkctl_client", "--socket", str(first.system.admin_socket), "-o", "json"]
            + ["events", "--follow", "--kind", "test"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = lines(cli.stdout), lines(cli.stderr)
        assert json.loads(out.get(timeout=20))["event"]["position"] == str(position)
        old_stream = first.system.bus.stream_id
        first.close()  # the follower's stream ends with the daemon
        second = Daemon(head_config(root), fake)
        assert second.system.bus.stream_id != old_stream
        (new_position,) = publish(second, "two")
        record = json.loads(out.get(timeout=20))
        assert record["event"]["subject"] == "two" and record["event"]["position"] == str(new_position)
        assert record["reset"] is True and record["event"]["stream_id"] == second.system.bus.stream_id
        notices = drain(err)
        # The daemon ends its streams as it stops (bus.close()), so the follower reconnects at once; whether it
        # found the socket gone first ("unreachable ... reconnecting") depends on timing.
        assert any("sparkd restarted" in n and f"after #{position}" in n for n in notices)
        (third,) = publish(second, "three")  # and it goes on following the new daemon
        assert json.loads(out.get(timeout=20))["event"]["position"] == str(third)
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=20) == 0
        assert "Traceback" not in "".join(drain(err))
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
        if second is not None:
            second.close()
        first.close()


def lines(stream: object) -> queue.Queue[str]:
    """A queue that a thread fills with the lines of `stream` as they come."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def drain(q: queue.Queue[str], settle: float = 0.3) -> list[str]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=settle))
        except queue.Empty:
            return out
