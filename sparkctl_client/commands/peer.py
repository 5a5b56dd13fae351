"""`peer status [--watch]` and `peer pair begin|join|reset`: the daemons this one talks to, and pairing.

Pairing (admin socket only): `peer pair begin` on the head prints a single-use token and the exact
`peer pair join` command to run on the worker; `peer pair reset` forgets one peer, or (without a node ID,
after confirmation) every peer and this node's role.

`peer status --watch` renders the status again on each peer or pairing event (EventService.WatchEvents,
reconnecting by itself like `events --follow`), or every second from ListPeers where the daemon has no
WatchEvents. Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

import grpc
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from sparkctl_client import exit_codes
from sparkctl_client.client import Client, ClientError
from sparkctl_client.commands import render
from sparkctl_client.commands.events import follow
from sparkd.v1 import event_service_pb2, node_pb2, node_service_pb2, peer_service_pb2

NODE_ID_RE = re.compile(r"[a-z2-7]{16}")
TOKEN_RE = re.compile(r"[a-z2-7]{20}")
#: The kinds of event that change what `peer status` shows.
WATCH_KINDS = ["peer", "pairing"]
POLL_S = 1.0
#: Seconds the join RPC may take beyond its own --timeout (the exchange with the head after the sighting).
JOIN_MARGIN_S = 15.0
CLEAR = "\x1b[H\x1b[2J"


# Arguments.


def node_id(text: str) -> str:
    value = text.strip().lower()
    if not NODE_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"must be a 16-character node ID (letters a-z, digits 2-7), got {text!r}")
    return value


def token(text: str) -> str:
    value = text.replace("-", "").replace(" ", "").lower()
    if not TOKEN_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"must be the 20-character token `peer pair begin` printed, got {text!r}")
    return text.strip()


def seconds_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number of seconds, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high} seconds, got {value}")
        return value

    return parse


# Pairing.


def begin(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.peers.BeginPairing, peer_service_pb2.BeginPairingRequest(ttl_seconds=args.ttl))
    name, tries = "", 0
    try:  # only for the words around the token: the pairing is open whatever these answer
        name = client.call(client.node.GetNode, node_service_pb2.GetNodeRequest()).node.name
        pairing = client.call(client.peers.ListPeers, peer_service_pb2.ListPeersRequest()).pairing
        tries = pairing.tries_left if pairing.open else 0
    except ClientError:
        pass
    return r, render.pairing_begun(r, name, tries)


def join(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    request = peer_service_pb2.JoinPairingRequest(
        head_node_id=args.head, token=args.token, timeout_seconds=args.timeout
    )
    r = client.call(client.peers.JoinPairing, request, timeout=args.timeout + JOIN_MARGIN_S)
    return r, render.paired(r, args.head)


def confirm(question: str, stdin: TextIO, stderr: TextIO) -> bool:
    print(f"{question} [y/N] ", end="", file=stderr, flush=True)
    try:
        answer = stdin.readline()
    except KeyboardInterrupt:  # Ctrl-C at the question: a no
        print(file=stderr)
        return False
    return answer.strip().lower() in ("y", "yes")


def reset(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    everything = not args.node_id
    if everything and not args.yes and not sys.stdin.isatty():
        print(
            "sparkctl-client: `peer pair reset` without a NODE_ID forgets every peer and this node's role; "
            "there is no terminal to confirm it on: pass --yes to do it anyway, or name the peer to forget",
            file=sys.stderr,
        )
        raise SystemExit(exit_codes.USAGE)
    listed = client.call(client.peers.ListPeers, peer_service_pb2.ListPeersRequest())
    names = {p.node_id: p.name for p in listed.peers if p.node_id}
    if everything and not args.yes:
        role = render.enum(node_pb2.NodeRole, listed.pairing.role, "NODE_ROLE_")
        peers = ", ".join(render.clean(n) for n in names.values()) or "none"
        question = f"forget every paired peer ({peers}) and this node's role ({role})? It must be paired again."
        if not confirm(question, sys.stdin, sys.stderr):
            print("sparkctl-client: not confirmed; nothing forgotten", file=sys.stderr)
            raise SystemExit(exit_codes.ERROR)
    r = client.call(client.peers.ResetPairing, peer_service_pb2.ResetPairingRequest(node_id=args.node_id or ""))
    return r, render.forgotten(r, names, everything)


# Status.


def status(client: Client, args: argparse.Namespace) -> tuple[Message, str] | None:
    if args.watch:
        try:
            Watch(client, args.output == "json", sys.stdout).run()
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # `peer status --watch | head`: the reader is gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return None
    r = client.call(client.peers.ListPeers, peer_service_pb2.ListPeersRequest())
    return r, render.peer_status(r)


class Watch:
    """`peer status --watch`: renders on start, on each peer or pairing event, and on each reconnect."""

    def __init__(self, client: Client, json: bool, out: TextIO) -> None:
        self.client, self.json, self.out = client, json, out
        self.tty = out.isatty()
        self.stream_id, self.position = "", 0
        self.last = ""

    def render(self, always: bool = True) -> None:
        r = self.client.call(self.client.peers.ListPeers, peer_service_pb2.ListPeersRequest())
        now = time.time()
        if self.json:
            text = MessageToJson(
                r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=None
            )
        else:
            text = render.peer_status(r, now)
        if not always and text == self.last:
            return
        self.last = text
        if not self.json:
            head = f"peer status at {render.clock(now)} (on each peer or pairing event; Ctrl-C to stop)"
            text = f"{CLEAR if self.tty else ''}{head}\n\n{text}\n"
        print(text, file=self.out, flush=True)

    def request(self, follow: bool) -> event_service_pb2.WatchEventsRequest:
        return event_service_pb2.WatchEventsRequest(
            after_position=self.position, stream_id=self.stream_id, follow=follow, kinds=WATCH_KINDS
        )

    def advance(self, r: event_service_pb2.WatchEventsResponse) -> bool:
        if not r.HasField("event"):  # none today; a later revision may send progress markers
            return False
        self.stream_id, self.position = r.event.stream_id, r.event.position
        return True

    def once(self) -> None:
        """Skips to the newest retained event, renders, then renders again on each new one."""
        for r in self.client.stream(self.client.events.WatchEvents, self.request(follow=False)):
            self.advance(r)
        self.render()
        for r in self.client.stream(self.client.events.WatchEvents, self.request(follow=True)):
            if self.advance(r):
                self.render()

    def poll(self) -> None:
        """For a daemon without WatchEvents: ListPeers every second (on a terminal always rendered, to keep
        "last seen" fresh; otherwise only when the text changes)."""
        while True:
            self.render(always=self.tty)
            time.sleep(POLL_S)

    def run(self) -> None:
        polling = False

        def once() -> bool:
            nonlocal polling
            try:
                self.poll() if polling else self.once()
            except ClientError as e:
                if e.code is not grpc.StatusCode.UNIMPLEMENTED or polling:
                    raise
                polling = True  # a daemon older than WatchEvents
                self.poll()
            return True

        follow(self.client, once)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peer", help="peer daemons and pairing")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("status", help="peers, their link state and versions, and this node's pairing")
    s.add_argument("-w", "--watch", action="store_true", help="render again on each peer or pairing event")
    s.set_defaults(handler=status)

    pair = verbs.add_parser("pair", help="pair this node with others (admin socket)")
    steps = pair.add_subparsers(dest="step", required=True)
    b = steps.add_parser("begin", help="on the head: open pairing and print the token for the worker")
    b.add_argument(
        "--ttl", type=seconds_between(1, 900), default=0, metavar="SECONDS", help="token lifetime (default 900)"
    )
    b.set_defaults(handler=begin)
    j = steps.add_parser("join", help="on a worker: pair with the head whose node ID and token `begin` printed")
    j.add_argument("--head", required=True, type=node_id, metavar="NODE_ID", help="the head's node ID")
    j.add_argument("--token", required=True, type=token, help="the token `peer pair begin` printed")
    j.add_argument(
        "--timeout",
        type=seconds_between(1, 60),
        default=10,
        metavar="SECONDS",
        help="how long to look for the head on the interconnect (default 10)",
    )
    j.set_defaults(handler=join)
    r = steps.add_parser("reset", help="forget one peer, or every peer and this node's role")
    r.add_argument("node_id", nargs="?", type=node_id, metavar="NODE_ID", help="the peer to forget (default: all)")
    r.add_argument("-y", "--yes", action="store_true", help="forget everything without asking")
    r.set_defaults(handler=reset)
