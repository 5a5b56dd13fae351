"""`sparkctl-client [--socket PATH] [-o table|json] NOUN VERB ...`"""

from __future__ import annotations

import argparse
import sys

import grpc

from sparkctl_client import exit_codes
from sparkctl_client.client import DEFAULT_SOCKET, READ_ONLY_SOCKET, Client, ClientError
from sparkctl_client.commands import deploy, events, host, node, peer, status, version
from sparkctl_client.commands.render import clean
from sparkctl_client.output import to_json
from sparkd import __version__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparkctl-client", description="Client of the sparkd daemon")
    p.add_argument("--version", action="version", version=f"sparkctl-client {__version__}")
    p.add_argument(
        "--socket",
        default=None,
        help=f"the daemon's socket (default $SPARKD_SOCKET, else {DEFAULT_SOCKET}; a user who is neither root nor "
        f"in the group sparkd gets the read-only {READ_ONLY_SOCKET}, which serves status, plans and events)",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    sub = p.add_subparsers(dest="noun", required=True)
    for module in (status, node, host, peer, deploy, events, version):
        module.register(sub)
    return p


def _print_error(e: ClientError, socket_path: str) -> int:
    if e.unreachable:
        print(
            f"sparkctl-client: cannot reach sparkd at {socket_path}: {e.message}\n"
            "hint: is sparkd running (systemctl status sparkd)? Use --socket or SPARKD_SOCKET for another "
            "socket; the admin socket needs root or the sparkd group.",
            file=sys.stderr,
        )
        return exit_codes.UNREACHABLE
    reason = f" [{clean(e.reason)}]" if e.reason else ""
    print(f"sparkctl-client: {e.code.name}{reason}: {clean(e.message)}", file=sys.stderr)  # text from peers, too
    for field, description in e.violations:
        print(f"  {clean(field)}: {clean(description)}", file=sys.stderr)
    if e.code is grpc.StatusCode.FAILED_PRECONDITION:
        return exit_codes.PRECONDITION
    return exit_codes.ERROR


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    client = Client(args.socket)
    try:
        result = args.handler(client, args)
    except ClientError as e:
        return _print_error(e, client.socket_path)
    finally:
        client.close()
    if result is not None:  # None: the handler printed as it went (`events`)
        message, text = result
        print(to_json(message) if args.output == "json" else text)
    return exit_codes.OK
