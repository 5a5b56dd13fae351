"""sparkd.v1.StatusService: node, peers and deployments in one answer."""

from __future__ import annotations

import grpc

from sparkd.api import convert
from sparkd.engine.deployments import DeploymentManager
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.engine.inventory import Inventory
from sparkd.peer.manager import PeerManager
from sparkd.v1 import status_service_pb2 as pb
from sparkd.v1 import status_service_pb2_grpc as pb_grpc


class StatusServicer(pb_grpc.StatusServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        inventory: Inventory,
        peers: PeerManager,
        deployments: DeploymentManager,
        journal: bool = True,
        host: HostConfigurator | None = None,
    ) -> None:
        """`journal`: as `DeploymentServicer`'s (false on the read-only socket)."""
        self.inventory, self.peers, self.deployments, self.journal = inventory, peers, deployments, journal
        self.host = host

    def for_socket(self, read_only: bool) -> StatusServicer:
        return StatusServicer(self.inventory, self.peers, self.deployments, not read_only, self.host)

    def _host(self) -> pb.HostStatus | None:
        if self.host is None:
            return None
        return pb.HostStatus(
            committed=self.host.records.committed() is not None,
            drift=[a.description for a in self.host.drift],
            pending_until=self.host.pending_deadline(),
        )

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        return pb.GetStatusResponse(
            node=convert.node_to_proto(self.inventory.node()),
            peers=[convert.peer_to_proto(p) for p in self.peers.peers()],
            deployments=[convert.deployment_to_proto(d, self.journal) for d in self.deployments.list()],
            host=self._host(),
        )
