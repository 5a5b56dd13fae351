"""sparkd.v1.HostService: thin shim over the host configurator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from sparkd.api import convert
from sparkd.engine.host import HostConfigurator
from sparkd.v1 import host_service_pb2 as pb
from sparkd.v1 import host_service_pb2_grpc as pb_grpc


class HostServicer(pb_grpc.HostServiceServicer):  # type: ignore[misc]
    def __init__(self, host: HostConfigurator, after_apply: Callable[[], Awaitable[None]]) -> None:
        self.host, self.after_apply = host, after_apply

    async def PlanHost(self, request: pb.PlanHostRequest, context: grpc.aio.ServicerContext) -> pb.PlanHostResponse:
        actions = await self.host.plan()
        return pb.PlanHostResponse(changed=bool(actions), actions=[convert.host_action_to_proto(a) for a in actions])

    async def ApplyHost(self, request: pb.ApplyHostRequest, context: grpc.aio.ServicerContext) -> pb.ApplyHostResponse:
        actions, verified = await self.host.apply(dry_run=request.dry_run)
        if not request.dry_run:
            await self.after_apply()
        return pb.ApplyHostResponse(
            changed=bool(actions) and not request.dry_run,
            actions=[convert.host_action_to_proto(a) for a in actions],
            verified=verified,
        )
