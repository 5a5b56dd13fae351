"""sparkd.v1.NodeService: thin shim over the inventory."""

from __future__ import annotations

import grpc

from sparkd import API_REVISION, PEER_PROTOCOL_MAX, __version__
from sparkd.api import convert
from sparkd.engine.inventory import Inventory
from sparkd.v1 import node_service_pb2 as pb
from sparkd.v1 import node_service_pb2_grpc as pb_grpc


class NodeServicer(pb_grpc.NodeServiceServicer):  # type: ignore[misc]
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    async def GetNode(self, request: pb.GetNodeRequest, context: grpc.aio.ServicerContext) -> pb.GetNodeResponse:
        return pb.GetNodeResponse(node=convert.node_to_proto(self.inventory.node()))

    async def GetVersion(
        self, request: pb.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetVersionResponse:
        return pb.GetVersionResponse(
            version=__version__, api_revision=API_REVISION, peer_protocol_version=PEER_PROTOCOL_MAX
        )
