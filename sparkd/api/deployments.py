"""sparkd.v1.DeploymentService: thin shim over the deployment manager and the head's supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from sparkd.api import convert
from sparkd.engine import logs
from sparkd.engine.deployments import DeploymentManager
from sparkd.engine.spec import parse_yaml, validate_name
from sparkd.engine.supervisor import Supervisor
from sparkd.errors import InvalidSpec
from sparkd.model.deployment import DeploymentSpec
from sparkd.v1 import deployment_service_pb2 as pb
from sparkd.v1 import deployment_service_pb2_grpc as pb_grpc

DEFAULT_LINES, MAX_LINES = 50, 1000


async def _spec(request: pb.CreateDeploymentRequest | pb.PlanDeploymentRequest) -> DeploymentSpec:
    match request.WhichOneof("source"):
        case "spec":
            return convert.spec_from_proto(request.spec)
        case "spec_yaml":
            # Parsed off the event loop: a slow document never stalls other calls.
            return await asyncio.to_thread(parse_yaml, request.spec_yaml)
        case _:
            raise InvalidSpec.one("source", "set spec or spec_yaml")


class DeploymentServicer(pb_grpc.DeploymentServiceServicer):  # type: ignore[misc]
    def __init__(self, deployments: DeploymentManager, supervisor: Supervisor, journal: bool = True) -> None:
        """`journal`: statuses carry the journal lines of a failure (false on the read-only socket: journals
        can hold prompts and secrets, as `DeploymentLogs` is admin only)."""
        self.deployments, self.supervisor, self.journal = deployments, supervisor, journal

    def for_socket(self, read_only: bool) -> DeploymentServicer:
        return DeploymentServicer(self.deployments, self.supervisor, journal=not read_only)

    async def CreateDeployment(
        self, request: pb.CreateDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateDeploymentResponse:
        status = await self.deployments.create(await _spec(request))
        return pb.CreateDeploymentResponse(deployment=convert.deployment_to_proto(status, self.journal))

    async def GetDeployment(
        self, request: pb.GetDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeploymentResponse:
        name = validate_name(request.name)
        return pb.GetDeploymentResponse(
            deployment=convert.deployment_to_proto(self.deployments.get(name), self.journal)
        )

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeploymentsResponse:
        return pb.ListDeploymentsResponse(
            deployments=[convert.deployment_to_proto(d, self.journal) for d in self.deployments.list()]
        )

    async def DeleteDeployment(
        self, request: pb.DeleteDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDeploymentResponse:
        name = validate_name(request.name)
        return pb.DeleteDeploymentResponse(stopped_units=await self.deployments.delete(name, force=request.force))

    async def PlanDeployment(
        self, request: pb.PlanDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.PlanDeploymentResponse:
        spec = await _spec(request)
        preflight, master_port = await self.deployments.plan(spec)
        return convert.plan_to_proto(spec, preflight, master_port)

    async def RestartDeployment(
        self, request: pb.RestartDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestartDeploymentResponse:
        status = await self.supervisor.restart(validate_name(request.name))
        return pb.RestartDeploymentResponse(deployment=convert.deployment_to_proto(status, self.journal))

    async def DeploymentLogs(
        self, request: pb.DeploymentLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DeploymentLogsResponse]:
        name = validate_name(request.name)
        lines = request.lines or DEFAULT_LINES
        if not 1 <= lines <= MAX_LINES:
            raise InvalidSpec.one("lines", f"must be from 1 to {MAX_LINES}, got {lines}")
        sources = logs.sources(self.deployments, name, request.node_name, lines, request.follow)
        async for node, rank, line in logs.merge(sources):
            yield pb.DeploymentLogsResponse(
                node_name=node, rank=rank, unit=line.unit, time=convert.ts(line.timestamp), message=line.message
            )
