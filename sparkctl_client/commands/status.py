"""`status`: node, peers and deployments at a glance."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.commands import render
from sparkd.v1 import status_service_pb2


def show(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.status.GetStatus, status_service_pb2.GetStatusRequest())
    parts = [render.node_line(r.node), render.peers(list(r.peers)), render.deployments(list(r.deployments))]
    if r.host.drift:
        parts.append(
            "host drift (run `sparkctl-client host apply` to repair):\n" + "".join(f"  {d}\n" for d in r.host.drift)
        )
    elif not r.host.committed:
        parts.append("host: not configured by sparkd yet (`sparkctl-client host plan`, then `host apply`)")
    return r, "\n\n".join(parts)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="node, peers and deployments")
    p.set_defaults(handler=show)
