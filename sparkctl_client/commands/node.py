"""`node show`: identity and inventory."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.commands import render
from sparkd.v1 import node_service_pb2


def show(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.node.GetNode, node_service_pb2.GetNodeRequest())
    return r, render.node_line(r.node) + "\n\n" + render.ports(r.node)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("node", help="this node")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("show", help="identity and inventory").set_defaults(handler=show)
