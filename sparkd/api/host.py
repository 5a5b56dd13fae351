"""sparkd.v1.HostService: thin shim over the host configurator (and, for --cluster, the cluster apply)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from sparkd.api import convert
from sparkd.engine.hostcfg.configurator import HostConfigurator, HostRequest
from sparkd.engine.hostcfg.pipeline import Outcome
from sparkd.errors import InvalidSpec, PermissionDenied, PreconditionFailed
from sparkd.peer.convert import host_action_to_proto
from sparkd.v1 import host_service_pb2 as pb
from sparkd.v1 import host_service_pb2_grpc as pb_grpc


class ClusterApply(Protocol):
    """The cluster-wide apply (`sparkd.peer.hostcluster`): every node's outcome, workers first."""

    async def apply(self, request: HostRequest) -> tuple[list[tuple[str, bool, list[Any]]], Outcome]:
        """Every worker's (name, changed, its HostAction messages), and this node's outcome."""
        ...


def _request(target: pb.HostTarget, confirm_timeout_s: float = 0.0) -> HostRequest:
    return HostRequest(
        desired_state=target.desired_state,
        accept_risk=target.accept_risk,
        ssh_address=target.ssh_address[:64],
        confirm_timeout_s=confirm_timeout_s,
    )


class HostServicer(pb_grpc.HostServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        host: HostConfigurator,
        after_apply: Callable[[], Awaitable[None]],
        cluster: ClusterApply | None = None,
        read_only: bool = False,
    ) -> None:
        self.host, self.after_apply, self.cluster, self.read_only = host, after_apply, cluster, read_only

    def for_socket(self, read_only: bool) -> HostServicer:
        return HostServicer(self.host, self.after_apply, self.cluster, read_only)

    async def PlanHost(self, request: pb.PlanHostRequest, context: grpc.aio.ServicerContext) -> pb.PlanHostResponse:
        if self.read_only and request.target.desired_state:
            raise PermissionDenied(
                "a plan of a desired-state file needs the admin socket (root or group sparkd)", method="PlanHost"
            )
        plan = await self.host.plan(_request(request.target))
        return pb.PlanHostResponse(
            changed=bool(plan.steps),
            actions=[host_action_to_proto(a) for a in plan.actions],
            desired=convert.desired_host_to_proto(plan.desired),
            notes=list(plan.notes),
        )

    async def ApplyHost(self, request: pb.ApplyHostRequest, context: grpc.aio.ServicerContext) -> pb.ApplyHostResponse:
        target = _request(request.target, request.confirm_timeout_s)
        if request.cluster and (request.confirm_timeout_s or request.dry_run):
            field = "confirm_timeout_s" if request.confirm_timeout_s else "dry_run"
            raise InvalidSpec.one(
                field, "does not go with cluster (a cluster-wide apply commits or rolls back by itself)"
            )
        if request.dry_run:
            plan = await self.host.plan(target)
            return pb.ApplyHostResponse(
                changed=False,
                actions=[host_action_to_proto(a) for a in plan.actions],
                verified=not plan.steps,
                desired=convert.desired_host_to_proto(plan.desired),
            )
        if request.cluster:
            if self.cluster is None:
                raise PreconditionFailed("this daemon has no peer layer: a cluster-wide apply is not possible")
            workers, own = await self.cluster.apply(target)
            await self.after_apply()
            own_actions = [host_action_to_proto(a) for a in own.plan.actions] if own.changed else []
            nodes = [
                pb.NodeHostResult(node=name, changed=changed, actions=actions) for name, changed, actions in workers
            ]
            nodes.append(pb.NodeHostResult(node=self.host.config.node.name, changed=own.changed, actions=own_actions))
            return pb.ApplyHostResponse(
                changed=any(n.changed for n in nodes),
                actions=own_actions,
                verified=True,
                nodes=nodes,
                desired=convert.desired_host_to_proto(own.plan.desired),
            )
        outcome = await self.host.apply(target)
        await self.after_apply()
        return pb.ApplyHostResponse(
            changed=outcome.changed,
            actions=[host_action_to_proto(a) for a in outcome.plan.actions] if outcome.changed else [],
            verified=outcome.verified,
            pending_until=outcome.pending_until,
            desired=convert.desired_host_to_proto(outcome.plan.desired),
        )

    async def ConfirmHost(
        self, request: pb.ConfirmHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmHostResponse:
        return pb.ConfirmHostResponse(apply_id=await self.host.confirm())

    async def RollbackHost(
        self, request: pb.RollbackHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.RollbackHostResponse:
        apply_id = await self.host.rollback()
        await self.after_apply()
        return pb.RollbackHostResponse(apply_id=apply_id)

    async def RestoreHost(
        self, request: pb.RestoreHostRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreHostResponse:
        restored = await self.host.restore()
        await self.after_apply()
        return pb.RestoreHostResponse(restored=restored)
