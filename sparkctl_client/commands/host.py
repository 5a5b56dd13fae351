"""`host plan|apply|confirm|rollback|restore`: the interconnect configuration of this node (or cluster)."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from google.protobuf.message import Message

from sparkctl_client.client import Client
from sparkctl_client.output import table
from sparkd.v1 import host_service_pb2

#: The largest desired-state file sent (the daemon refuses more).
MAX_FILE = 64 * 1024


def _actions(actions: list[host_service_pb2.HostAction]) -> str:
    if not actions:
        return "no changes: the host is in the desired state"
    return table(
        ["ACTION", "COMPONENT", "TARGET", "DESCRIPTION"],
        [
            [
                host_service_pb2.HostActionKind.Name(a.kind).removeprefix("HOST_ACTION_KIND_"),
                a.component,
                a.target,
                a.description,
            ]
            for a in actions
        ],
    )


def _target(args: argparse.Namespace) -> host_service_pb2.HostTarget:
    text = ""
    if args.file:
        path = Path(args.file)
        data = path.read_bytes()[: MAX_FILE + 1] if path.is_file() else b""
        if not path.is_file():
            raise SystemExit(f"sparkctl-client: {args.file}: not a regular file")
        text = data.decode(errors="replace")
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    return host_service_pb2.HostTarget(
        desired_state=text, accept_risk=args.accept_risk or "", ssh_address=ssh[2] if len(ssh) == 4 else ""
    )


def plan(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.PlanHost, host_service_pb2.PlanHostRequest(target=_target(args)))
    notes = "".join(f"{n}\n" for n in r.notes)
    return r, notes + _actions(list(r.actions))


def apply(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    request = host_service_pb2.ApplyHostRequest(
        dry_run=args.dry_run, target=_target(args), confirm_timeout_s=args.confirm_timeout or 0.0, cluster=args.cluster
    )
    # A cluster-wide apply prepares, verifies and commits every node (a minute per node at most).
    timeout = 900.0 if args.cluster else 120.0
    r = client.call(client.host.ApplyHost, request, timeout=timeout)
    if r.nodes:
        text = "\n".join(
            f"{n.node}: "
            + (f"FAILED: {n.error}" if n.error else (f"{len(n.actions)} changes" if n.changed else "no changes"))
            for n in r.nodes
        )
        return r, text
    head = "dry run: " if args.dry_run else ("applied and verified: " if r.verified and r.changed else "")
    if r.pending_until:
        until = datetime.datetime.fromtimestamp(r.pending_until).strftime("%H:%M:%S")
        head = f"applied and verified; reverts at {until} unless you run `sparkctl-client host confirm`:\n"
    return r, head + _actions(list(r.actions))


def confirm(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.ConfirmHost, host_service_pb2.ConfirmHostRequest())
    return r, f"kept host apply {r.apply_id}"


def rollback(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.RollbackHost, host_service_pb2.RollbackHostRequest())
    return r, f"undid host apply {r.apply_id}"


def restore(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.host.RestoreHost, host_service_pb2.RestoreHostRequest())
    return r, "restored the host as it was before sparkd:\n" + "".join(f"  {x}\n" for x in r.restored)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", help="a desired-state file ([interconnect] and [host] tables) for this run")
    p.add_argument(
        "--accept-risk",
        choices=["lose-connection"],
        help="allow changing the interface of the default route or of your SSH connection",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("host", help="interconnect configuration of this node")
    verbs = p.add_subparsers(dest="verb", required=True)
    pl = verbs.add_parser("plan", help="show what an apply would change (changes nothing)")
    _common(pl)
    pl.set_defaults(handler=plan)
    a = verbs.add_parser("apply", help="apply, verify, commit; roll back on failure")
    _common(a)
    a.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    a.add_argument(
        "--confirm-timeout",
        type=float,
        metavar="SECONDS",
        help="revert by itself after SECONDS unless `host confirm` comes first",
    )
    a.add_argument("--cluster", action="store_true", help="apply on every node (from the head), verify from both sides")
    a.set_defaults(handler=apply)
    verbs.add_parser("confirm", help="keep an apply made with --confirm-timeout").set_defaults(handler=confirm)
    verbs.add_parser("rollback", help="undo an apply made with --confirm-timeout now").set_defaults(handler=rollback)
    verbs.add_parser("restore", help="bring back the host as it was before sparkd").set_defaults(handler=restore)
