"""`sparkd lab up|status|exec|reboot|fault|down`: the command line of the lab.

The lab itself is imported by each command, not here: the daemon builds this parser too (`sparkd run`)
and must not load the lab to do so.
"""

from __future__ import annotations

import argparse
import os
import sys

from sparkd import log


def _up(args: argparse.Namespace) -> int:
    from sparkd.lab import lab

    log.configure("console")
    try:
        lab.up(args.nodes, args.bare)
    except lab.LabError as e:
        print(f"sparkd lab: {e}", file=sys.stderr)
        return 1
    head = lab.admin_socket("spark1")
    print(
        f"\nlab up. Try:\n  sparkd lab exec spark1 -- sparkctl-client status\n"
        f"  sparkctl-client --socket {head} peer status\n  sparkd lab down"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    from sparkd.lab import lab

    log.configure("console")
    lab.down()
    return 0


def _reboot(args: argparse.Namespace) -> int:
    from sparkd.lab import lab

    log.configure("console")
    try:
        lab.reboot(args.node)
    except lab.LabError as e:
        print(f"sparkd lab: {e}", file=sys.stderr)
        return 1
    return 0


def _fault(args: argparse.Namespace) -> int:
    from sparkd.lab import faults, lab

    try:
        switch = faults.Fault(args.mode, args.seconds or 0.0)
        lab.fault(args.node, args.name, args.rank, switch)
    except (lab.LabError, faults.FaultError) as e:
        print(f"sparkd lab fault: {e}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from sparkd.lab import lab

    state = lab.LabState.load()
    if state is None:
        print("no lab is up")
        return 1
    from sparkctl_client.client import Client, ClientError
    from sparkctl_client.commands import render
    from sparkd.v1 import status_service_pb2

    for node in state.nodes:
        client = Client(str(lab.admin_socket(node)), timeout=5)
        try:
            r = client.call(client.status.GetStatus, status_service_pb2.GetStatusRequest())
            print(
                f"== {node} (socket {lab.admin_socket(node)})\n{render.node_line(r.node)}\n"
                f"{render.peers(list(r.peers))}\n{render.deployments(list(r.deployments))}\n"
            )
        except ClientError as e:
            print(f"== {node}: sparkd does not answer: {e.message}\n")
        finally:
            client.close()
    return 0


def _exec(args: argparse.Namespace) -> int:
    from sparkd.lab import lab

    state = lab.LabState.load()
    if state is None or args.node not in state.nodes:
        print(f"sparkd lab: no lab node {args.node!r} (is the lab up?)", file=sys.stderr)
        return 1
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("sparkd lab exec: give a command after --", file=sys.stderr)
        return 2
    env = dict(os.environ, SPARKD_SOCKET=str(lab.admin_socket(args.node)))
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
    os.execvpe("ip", ["ip", "netns", "exec", args.node, *command], env)
    return 127  # not reached


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="a simulated cluster of Sparks on this machine (root)")
    verbs = p.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser(
        "up",
        help="create the lab and return when it is ready",
        description="Creates N simulated Sparks: spark1 (the head), spark2, ... workers, each a network "
        "namespace with two interconnect twins (cabled directly for 2 nodes, through a switch for 3+) and "
        "a management port mgmt0 (10.77.0.N/24, the default route), and its own sparkd as a systemd unit. "
        "Without --bare, every node's link is configured (`host apply`) and the workers connected to the "
        "head before it returns.",
    )
    up.add_argument("--nodes", type=int, default=2, help="number of nodes, 2 to 16 (default 2)")
    up.add_argument(
        "--bare",
        action="store_true",
        help="fresh nodes, as newly cabled Sparks: return once every sparkd answers and the twins are up "
        "with carrier and IPv6 link-local addresses, but without IPv4 addresses (no `host apply`) and so "
        "with no peer connected",
    )
    up.set_defaults(func=_up)
    verbs.add_parser("status", help="each node's status").set_defaults(func=_status)
    e = verbs.add_parser("exec", help="run a command inside a node's namespace, SPARKD_SOCKET set")
    e.add_argument("node")
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    e.set_defaults(func=_exec)
    r = verbs.add_parser("reboot", help="a simulated reboot: sparkd and the units stop, new boot ID, sparkd starts")
    r.add_argument("node")
    r.set_defaults(func=_reboot)
    f = verbs.add_parser(
        "fault",
        help="make a deployment rank's framework stand-in crash, wedge or start slowly (none clears)",
        description="Sets the fault switch of one rank of a deployment, a file the lab's vLLM stand-in polls "
        'every 0.2 s (docs/lab.md, "Fault switches"). crash: it exits with status 3 at once, after an ERROR '
        "line, and the switch is consumed (the next start runs normally). wedge: it stays up, /health answers "
        "200, but completions hang and the token counters stop (a wedged worker stops answering the head), until "
        "cleared. slow_start --seconds N: every start sleeps N s before the rendezvous. crash_on_start: every "
        "start exits 1, until cleared. none: clears the switch.",
    )
    f.add_argument("node", help="the lab node that runs the rank (checked against its deployment records)")
    f.add_argument("name", help="the deployment, or the served model name its stand-ins run with")
    f.add_argument("rank", type=int, help="the rank (0 is the head)")
    f.add_argument("mode", choices=["crash", "wedge", "slow_start", "crash_on_start", "none"])
    f.add_argument("--seconds", type=float, help="how long a slow_start sleeps (slow_start only)")
    f.set_defaults(func=_fault)
    verbs.add_parser("down", help="remove everything the lab created").set_defaults(func=_down)
