"""`peer status`: the daemons this one talks to."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.commands import render
from sparkd.v1 import peer_service_pb2


def status(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.peers.ListPeers, peer_service_pb2.ListPeersRequest())
    return r, render.peers(list(r.peers))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peer", help="peer daemons")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("status", help="peers and their link state").set_defaults(handler=status)
