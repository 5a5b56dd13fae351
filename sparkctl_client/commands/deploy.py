"""`deploy up|list|show|down`: deployments (call the head)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.message import Message

from sparkctl_client.client import Client, ClientError
from sparkctl_client.commands import render
from sparkd.v1 import deployment_pb2, deployment_service_pb2


def up(client: Client, args: argparse.Namespace) -> tuple[Message, str]:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as e:
        raise SystemExit(f"sparkctl-client: cannot read {args.file}: {e.strerror}") from e
    r = client.call(client.deployments.CreateDeployment, deployment_service_pb2.CreateDeploymentRequest(spec_yaml=text))
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
            print(f"{name}: {state.removeprefix('DEPLOYMENT_STATE_')}: {d.message}", file=sys.stderr)
        if d.state == deployment_pb2.DEPLOYMENT_STATE_READY:
            return d
        if d.state == deployment_pb2.DEPLOYMENT_STATE_FAILED:
            raise ClientError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"deployment {name} failed: {d.message}",
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
    r = client.call(client.deployments.DeleteDeployment, deployment_service_pb2.DeleteDeploymentRequest(name=args.name))
    return r, f"stopped {', '.join(r.stopped_units) or 'nothing'}"


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
    d = verbs.add_parser("down", help="stop a deployment on every node and delete it")
    d.add_argument("name")
    d.set_defaults(handler=down)
