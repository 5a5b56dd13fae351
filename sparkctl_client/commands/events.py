"""`events [--follow] [--kind K ...] [--after POSITION]`: the daemon's events, one line each.

Without `--follow` it prints what the daemon retains (after POSITION) and exits. With
`--follow` it keeps printing new events; when the daemon restarts or the socket drops it
reconnects by itself (backing off up to 2 s) and resumes after the last event printed,
so nothing is printed twice and nothing is skipped silently: when the daemon cannot
give every event since (it restarted, or it no longer retains them), a line on stderr
says so. `-o json` prints each `sparkd.v1.WatchEventsResponse` as one JSON line. Ctrl-C
ends it quietly (exit 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC

import grpc
from google.protobuf.json_format import MessageToJson

from sparkctl_client.client import Client, ClientError
from sparkd.v1 import event_pb2, event_service_pb2

#: Codes after which a follower reconnects: the daemon is restarting, stopping or busy.
RETRY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
FIRST_DELAY, MAX_DELAY = 0.1, 2.0


def _clean(text: str) -> str:
    """`text` safe for a terminal and one line: control characters escaped (a peer names itself)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def line(e: event_pb2.Event) -> str:
    """time, position, kind, subject, previous -> state, message."""
    when = "-"
    if e.HasField("time"):
        when = e.time.ToDatetime(tzinfo=UTC).astimezone().isoformat(timespec="milliseconds")
    text = f"{when}  {e.position:>6}  {_clean(e.kind):<10}  {_clean(e.subject)}  {_clean(e.previous) or '-'} -> "
    text += _clean(e.state)
    return f"{text}  {_clean(e.message)}" if e.message else text


def json_line(r: event_service_pb2.WatchEventsResponse) -> str:
    return MessageToJson(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=None)


def reset_notice(r: event_service_pb2.WatchEventsResponse, stream_id: str, position: int) -> str:
    """What the user is told when the daemon says events were lost before `r`."""
    first = r.event.position
    if stream_id and r.event.stream_id != stream_id:
        return (
            f"sparkctl-client: sparkd restarted (a new event stream): any events after #{position} of its "
            f"previous run are lost; continuing with what it retains, from #{first}"
        )
    if r.missed:
        return (
            f"sparkctl-client: {r.missed} events missed (sparkd retains only its most recent); continuing from #{first}"
        )
    return f"sparkctl-client: events missed (#{position} is not of this daemon's stream); continuing from #{first}"


class Watcher:
    """One `events` run: its cursor (the last event printed) and how it prints."""

    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client, self.json = client, args.output == "json"
        self.follow, self.kinds = args.follow, list(args.kind or [])
        self.stream_id, self.position = args.stream_id or "", args.after

    def request(self) -> event_service_pb2.WatchEventsRequest:
        return event_service_pb2.WatchEventsRequest(
            after_position=self.position, stream_id=self.stream_id, follow=self.follow, kinds=self.kinds
        )

    def once(self) -> bool:
        """One call, printing as events arrive; True when at least one arrived."""
        got = False
        for r in self.client.stream(self.client.events.WatchEvents, self.request()):
            if not r.HasField("event"):  # none today; a later revision may send progress markers
                continue
            got = True
            if r.reset:
                print(reset_notice(r, self.stream_id, self.position), file=sys.stderr, flush=True)
            print(json_line(r) if self.json else line(r.event), flush=True)
            self.stream_id, self.position = r.event.stream_id, r.event.position
        return got

    def run(self) -> None:
        if not self.follow:
            self.once()
            return
        follow(self.client, self.once, lambda: f", resuming after #{self.position}")


def follow(client: Client, once: Callable[[], bool], resuming: Callable[[], str] = lambda: "") -> None:
    """Runs `once()` (one stream, until it ends) again and again: when a stream ends (the daemon stops or
    restarts) or the daemon is unreachable, it backs off (FIRST_DELAY doubling to MAX_DELAY; back to
    FIRST_DELAY after a `once()` that got something) and says so once per outage. Returns never."""
    delay, outage = FIRST_DELAY, False
    while True:
        try:
            if once():
                delay, outage = FIRST_DELAY, False
        except ClientError as e:
            if e.code not in RETRY:
                raise
            if not outage:
                print(
                    f"sparkctl-client: sparkd at {client.socket_path} unreachable ({e.code.name}: "
                    f"{e.message}); reconnecting{resuming()} (Ctrl-C to stop)",
                    file=sys.stderr,
                    flush=True,
                )
                outage = True
        time.sleep(delay)
        delay = min(MAX_DELAY, delay * 2)


def events(client: Client, args: argparse.Namespace) -> None:
    """Prints as it goes (so it returns no message for the CLI to print)."""
    try:
        Watcher(client, args).run()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `events -f | head`: the reader is gone; so is the point of going on
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _position(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be 0 to 2^64-1; got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("events", help="the daemon's events (transitions of units, deployments, peers, links)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events; reconnect by itself")
    p.add_argument("--kind", action="append", metavar="KIND", help="only this kind (repeat for more)")
    p.add_argument("--after", type=_position, default=0, metavar="POSITION", help="only events after this one")
    p.add_argument(
        "--stream-id", default="", metavar="ID", help="the stream POSITION is of (from -o json), to detect restarts"
    )
    p.set_defaults(handler=events)
