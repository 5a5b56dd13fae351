"""`host plan` and `host apply`: the interconnect configuration of this node."""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.output import table
from sparkd.v1 import host_service_pb2


def _actions(actions: list[host_service_pb2.HostAction]) -> str:
    if not actions:
        return "no changes: the host is in the desired state"
    return table(
        ["ACTION", "TARGET", "DESCRIPTION"],
        [
            [host_service_pb2.HostActionKind.Name(a.kind).removeprefix("HOST_ACTION_KIND_"), a.target, a.description]
            for a in actions
        ],
    )


def plan(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.PlanHost, host_service_pb2.PlanHostRequest())
    return r, _actions(list(r.actions))


def apply(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.ApplyHost, host_service_pb2.ApplyHostRequest(dry_run=args.dry_run))
    head = "dry run: " if args.dry_run else ("applied and verified: " if r.verified and r.changed else "")
    return r, head + _actions(list(r.actions))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("host", help="interconnect configuration of this node")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("plan", help="show what an apply would change").set_defaults(handler=plan)
    a = verbs.add_parser("apply", help="apply, verify, roll back on failure")
    a.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    a.set_defaults(handler=apply)
