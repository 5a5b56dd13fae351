"""`status`: node, peers and deployments at a glance."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.commands import render
from sparkd.v1 import status_service_pb2


def show(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.status.GetStatus, status_service_pb2.GetStatusRequest())
    text = "\n\n".join([render.node_line(r.node), render.peers(list(r.peers)), render.deployments(list(r.deployments))])
    return r, text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="node, peers and deployments")
    p.set_defaults(handler=show)
