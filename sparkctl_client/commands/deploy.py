"""`deploy up|plan|list|show|restart|logs|down`: deployments (call the head)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.message import Message

from sparkctl_client.client import Client, ClientError
from sparkctl_client.commands import render
from sparkctl_client.output import to_json
from sparkd.v1 import deployment_pb2, deployment_service_pb2


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise SystemExit(f"sparkctl-client: cannot read {path}: {e.strerror}") from e


#: A first plan hashes every model file on every node (minutes for hundreds of GB); later ones are cached.
PLAN_TIMEOUT_S = 1800.0


def up(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    text = _read(args.file)
    request = deployment_service_pb2.CreateDeploymentRequest(spec_yaml=text)
    r = client.call(client.deployments.CreateDeployment, request, timeout=PLAN_TIMEOUT_S)
    deployment = r.deployment
    if args.wait:
        deployment = wait(client, deployment.name, args.timeout)
    return deployment_service_pb2.GetDeploymentResponse(deployment=deployment), render.deployments([deployment])


def wait(client: Client, name: str, timeout: float) -> deployment_pb2.Deployment:
    """Polls until READY; FAILED or the timeout is an error."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        d: deployment_pb2.Deployment = client.call(
            client.deployments.GetDeployment, deployment_service_pb2.GetDeploymentRequest(name=name)
        ).deployment
        state = deployment_pb2.DeploymentState.Name(d.state)
        if f"{state} {d.message}" != last:
            last = f"{state} {d.message}"
            print(f"{name}: {state.removeprefix('DEPLOYMENT_STATE_')}: {render.clean(d.message)}", file=sys.stderr)
        if d.state == deployment_pb2.DEPLOYMENT_STATE_READY:
            return d
        if d.state == deployment_pb2.DEPLOYMENT_STATE_FAILED:
            raise ClientError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"deployment {name} failed: {render.clean(d.message)}",
                "ERROR_REASON_PRECONDITION_FAILED",
            )
        if time.monotonic() > deadline:
            raise ClientError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"deployment {name} not READY after {timeout:.0f} s (last state {state}: {d.message})",
            )
        time.sleep(0.5)


def list_(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.deployments.ListDeployments, deployment_service_pb2.ListDeploymentsRequest())
    return r, render.deployments(list(r.deployments))


def show(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    r = client.call(client.deployments.GetDeployment, deployment_service_pb2.GetDeploymentRequest(name=args.name))
    return r, render.deployments([r.deployment])


def down(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    request = deployment_service_pb2.DeleteDeploymentRequest(name=args.name, force=args.force)
    r = client.call(client.deployments.DeleteDeployment, request, timeout=120.0)
    return r, f"stopped {', '.join(r.stopped_units) or 'nothing'}"


def plan(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    request = deployment_service_pb2.PlanDeploymentRequest(spec_yaml=_read(args.file))
    r = client.call(client.deployments.PlanDeployment, request, timeout=PLAN_TIMEOUT_S)
    return r, render.deployment_plan(r)


def restart(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    request = deployment_service_pb2.RestartDeploymentRequest(name=args.name)
    r = client.call(client.deployments.RestartDeployment, request, timeout=PLAN_TIMEOUT_S)
    deployment = wait(client, args.name, args.timeout) if args.wait else r.deployment
    return deployment_service_pb2.GetDeploymentResponse(deployment=deployment), render.deployments([deployment])


def logs(client: Client, args: argparse.Namespace) -> None:
    """Prints as it goes (`-o json`: one DeploymentLogsResponse per line); Ctrl-C ends it quietly."""
    request = deployment_service_pb2.DeploymentLogsRequest(
        name=args.name, node_name=args.node or "", follow=args.follow, lines=args.lines
    )
    try:
        for line in client.stream(client.deployments.DeploymentLogs, request, timeout=None if args.follow else 60.0):
            if args.output == "json":
                print(to_json(line, indent=None), flush=True)
            else:
                print(render.log_line(line), flush=True)
    except KeyboardInterrupt:
        pass


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("deploy", help="deployments (run against the head)")
    verbs = p.add_subparsers(dest="verb", required=True)
    u = verbs.add_parser("up", help="create a deployment from a YAML spec")
    u.add_argument("-f", "--file", required=True, help="the spec (YAML), or - for stdin")
    u.add_argument("--wait", action="store_true", help="wait until the deployment is READY")
    u.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (with --wait)")
    u.set_defaults(handler=up)
    verbs.add_parser("list", help="list deployments").set_defaults(handler=list_)
    s = verbs.add_parser("show", help="show one deployment")
    s.add_argument("name")
    s.set_defaults(handler=show)
    d = verbs.add_parser("down", help="stop a deployment on every node (the head's rank first) and delete it")
    d.add_argument("name")
    d.add_argument(
        "--force",
        action="store_true",
        help="on a worker: stop this node's part although the head coordinates it (the head is gone for good)",
    )
    d.set_defaults(handler=down)
    pl = verbs.add_parser("plan", help="the memory plan and every node's launch plan of a spec; starts nothing")
    pl.add_argument("-f", "--file", required=True, help="the spec (YAML), or - for stdin")
    pl.set_defaults(handler=plan)
    r = verbs.add_parser("restart", help="restart on every node (workers first) and close the circuit breaker")
    r.add_argument("name")
    r.add_argument("--wait", action="store_true", help="wait until the deployment is READY")
    r.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (with --wait)")
    r.set_defaults(handler=restart)
    lg = verbs.add_parser("logs", help="the journal of every rank's unit (workers' through the peer API)")
    lg.add_argument("name")
    lg.add_argument("--node", help="only this node's rank")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("-n", "--lines", type=int, default=50, help="lines of history per rank (1-1000)")
    lg.set_defaults(handler=logs)
