"""sparkd.v1.PeerService: the local view of the peers."""

from __future__ import annotations

import grpc

from sparkd.api import convert
from sparkd.peer.manager import PeerManager
from sparkd.v1 import peer_service_pb2 as pb
from sparkd.v1 import peer_service_pb2_grpc as pb_grpc


class PeerServicer(pb_grpc.PeerServiceServicer):  # type: ignore[misc]
    def __init__(self, peers: PeerManager) -> None:
        self.peers = peers

    async def ListPeers(self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext) -> pb.ListPeersResponse:
        return pb.ListPeersResponse(peers=[convert.peer_to_proto(p) for p in self.peers.peers()])
