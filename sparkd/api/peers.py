"""sparkd.v1.PeerService: the local view of the peers, and pairing (admin socket)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import grpc

from sparkd.api import convert
from sparkd.engine.membership import NODE_ID_RE, Membership
from sparkd.errors import InvalidSpec, NotFound, shown
from sparkd.events import EventBus
from sparkd.peer.convert import role_to_proto, ts
from sparkd.peer.manager import PeerManager
from sparkd.peer.pairing import MAX_TTL_S, Joiner, PairingOffice, show_token
from sparkd.v1 import peer_service_pb2 as pb
from sparkd.v1 import peer_service_pb2_grpc as pb_grpc

DEFAULT_JOIN_TIMEOUT_S = 10


class PeerServicer(pb_grpc.PeerServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        peers: PeerManager,
        membership: Membership,
        office: PairingOffice,
        joiner: Joiner,
        bus: EventBus,
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self.peers, self.membership, self.office, self.joiner = peers, membership, office, joiner
        self.bus, self.changed = bus, changed

    def pairing(self) -> pb.Pairing:
        offer = self.office.offer()
        m = self.membership
        return pb.Pairing(
            role=role_to_proto(m.role),
            index=m.index,
            pinned=m.pinned,
            open=offer is not None,
            expire_time=ts(offer.expires_wall) if offer else None,
            tries_left=offer.tries_left if offer else 0,
            paired_peers=len(m.peers()),
        )

    async def ListPeers(self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext) -> pb.ListPeersResponse:
        return pb.ListPeersResponse(
            peers=[convert.peer_to_proto(p) for p in self.peers.peers()], pairing=self.pairing()
        )

    async def BeginPairing(
        self, request: pb.BeginPairingRequest, context: grpc.aio.ServicerContext
    ) -> pb.BeginPairingResponse:
        ttl = float(request.ttl_seconds or MAX_TTL_S)
        token, offer = self.office.begin(ttl)
        await self.changed()
        node_id = self.peers.identity.node_id
        return pb.BeginPairingResponse(
            token=show_token(token),
            node_id=node_id,
            expire_time=ts(offer.expires_wall),
            join_command=f"sparkctl-client peer pair join --head {node_id} --token {show_token(token)}",
        )

    async def JoinPairing(
        self, request: pb.JoinPairingRequest, context: grpc.aio.ServicerContext
    ) -> pb.JoinPairingResponse:
        timeout = request.timeout_seconds or DEFAULT_JOIN_TIMEOUT_S
        if not 1 <= timeout <= 60:
            raise InvalidSpec.one("timeout_seconds", f"must be from 1 to 60, got {timeout}")
        head = await self.joiner.join(request.head_node_id, request.token, float(timeout))
        await self.changed()
        info = self.peers.peer(head.node_id)
        return pb.JoinPairingResponse(head=convert.peer_to_proto(info) if info else None, index=self.membership.index)

    async def ResetPairing(
        self, request: pb.ResetPairingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetPairingResponse:
        node_id = request.node_id
        if node_id:
            if not NODE_ID_RE.fullmatch(node_id):
                raise InvalidSpec.one("node_id", f"must be a 16-character node ID, got {shown(node_id)}")
            if self.membership.by_id(node_id) is None:
                raise NotFound(f"no paired peer with node ID {node_id}; `peer status` lists them", node_id=node_id)
        forgotten = self.membership.forget(node_id)
        if not node_id:
            self.office.close("reset")
        self.bus.publish("pairing", node_id or "all", "reset", f"forgot {len(forgotten)} peer(s) at {time.ctime()}")
        await self.changed()
        return pb.ResetPairingResponse(forgotten=forgotten)
