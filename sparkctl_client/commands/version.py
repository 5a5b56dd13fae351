"""`version`: the client's and the daemon's versions."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkd import __version__
from sparkd.v1 import node_service_pb2


def show(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.node.GetVersion, node_service_pb2.GetVersionRequest())
    return (
        r,
        f"client {__version__}\ndaemon {r.version} (api revision {r.api_revision}, peer protocol "
        f"{r.peer_protocol_version})",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("version", help="client and daemon versions").set_defaults(handler=show)
