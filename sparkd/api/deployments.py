"""sparkd.v1.DeploymentService: thin shim over the deployment manager."""

from __future__ import annotations

import asyncio

import grpc

from sparkd.api import convert
from sparkd.engine.deployments import DeploymentManager
from sparkd.engine.spec import parse_yaml, validate_name
from sparkd.errors import InvalidSpec
from sparkd.v1 import deployment_service_pb2 as pb
from sparkd.v1 import deployment_service_pb2_grpc as pb_grpc


class DeploymentServicer(pb_grpc.DeploymentServiceServicer):  # type: ignore[misc]
    def __init__(self, deployments: DeploymentManager) -> None:
        self.deployments = deployments

    async def CreateDeployment(
        self, request: pb.CreateDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateDeploymentResponse:
        match request.WhichOneof("source"):
            case "spec":
                spec = convert.spec_from_proto(request.spec)
            case "spec_yaml":
                # Parsed off the event loop: a slow document never stalls other calls.
                spec = await asyncio.to_thread(parse_yaml, request.spec_yaml)
            case _:
                raise InvalidSpec.one("source", "set spec or spec_yaml")
        status = await self.deployments.create(spec)
        return pb.CreateDeploymentResponse(deployment=convert.deployment_to_proto(status))

    async def GetDeployment(
        self, request: pb.GetDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeploymentResponse:
        name = validate_name(request.name)
        return pb.GetDeploymentResponse(deployment=convert.deployment_to_proto(self.deployments.get(name)))

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeploymentsResponse:
        return pb.ListDeploymentsResponse(deployments=[convert.deployment_to_proto(d) for d in self.deployments.list()])

    async def DeleteDeployment(
        self, request: pb.DeleteDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDeploymentResponse:
        name = validate_name(request.name)
        return pb.DeleteDeploymentResponse(stopped_units=await self.deployments.delete(name))
