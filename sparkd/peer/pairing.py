"""Pairing: a single-use token and the node IDs, checked both ways; then each side pins the other's key.

The head (`peer pair begin`) makes a token of 100 random bits, valid for at most 15
minutes and closed after 5 failed tries, and prints it with its node ID. The worker
(`peer pair join --head ID --token T`) finds the head on the interconnect (discovery:
where a node claiming that ID announces itself, and the certificate it claims), checks
that the certificate's key hashes to the ID the operator typed, then dials the head's
pairing listener over TLS pinned to that certificate and proves the token bound to both
node IDs: HMAC-SHA256(token, "worker" | head ID | worker ID). The head checks the proof
against the key the worker sent, gives it the next free index, stores its certificate,
and answers with its own proof (HMAC over "head" | ...), which the worker checks before
storing the head. A proof made for another head, another worker key or another token
is useless: relaying a join changes nothing but who is refused.

The token lives only in the head's memory (a restart closes pairing); a failed try is
counted whatever made it fail after the token was presented, so guessing ends after 5.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog

from sparkd import PEER_PROTOCOL_MAX, PEER_PROTOCOL_MIN
from sparkd.config import Config
from sparkd.engine.membership import NAME_RE, NODE_ID_RE, Member, Membership
from sparkd.errors import (
    FieldViolation,
    InvalidSpec,
    PeerUnavailable,
    PermissionDenied,
    PreconditionFailed,
    RouteNotOnInterconnect,
    SparkdError,
    shown,
)
from sparkd.events import EventBus
from sparkd.identity import Identity
from sparkd.peer import tls
from sparkd.peer.discovery import Sighting
from sparkd.peer.route_guard import RouteGuard
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.peer.v1 import peer_service_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

TOKEN_CHARS = 20  # base32: 100 bits
MAX_TTL_S = 900.0
MAX_TRIES = 5
TOKEN_RE = re.compile(r"[a-z2-7]{20}")
CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{64,1900}-----END CERTIFICATE-----\n?")

CertId = Callable[[str], Awaitable[tuple[str, str]]]  # certificate PEM -> (node ID, fingerprint)


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(15)).decode().lower()[:TOKEN_CHARS]


def show_token(token: str) -> str:
    return "-".join(token[i : i + 5] for i in range(0, len(token), 5))


def normalize_token(text: str, field: str = "token") -> str:
    token = text.replace("-", "").replace(" ", "").lower()
    if not TOKEN_RE.fullmatch(token):
        raise InvalidSpec.one(field, f"must be the 20-character token `peer pair begin` printed, got {shown(text)}")
    return token


def proof(token: str, side: str, head_id: str, worker_id: str) -> bytes:
    message = f"sparkd pairing v1\0{side}\0{head_id}\0{worker_id}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).digest()


def protocols_overlap(low: int, high: int) -> bool:
    return low <= PEER_PROTOCOL_MAX and high >= PEER_PROTOCOL_MIN and low <= high


@dataclass
class Offer:
    """The live token on a head."""

    token: str
    expires: float  # time.monotonic()
    expires_wall: float
    tries_left: int = MAX_TRIES


class PairingOffice:
    """The head's side of pairing: the token and the join handler."""

    def __init__(
        self,
        name: str,
        membership: Membership,
        identity: Identity,
        bus: EventBus,
        cert_id: CertId,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.membership, self.identity, self.bus = name, membership, identity, bus
        self.cert_id = cert_id
        self.on_change, self.clock = on_change, clock
        self._offer: Offer | None = None
        self._lock = asyncio.Lock()  # one join at a time: a single-use token is used once, tries are counted

    def offer(self) -> Offer | None:
        """The live offer, or None (an expired one is closed here)."""
        if self._offer is not None and self.clock() >= self._offer.expires:
            self.close("expired")
        return self._offer

    def begin(self, ttl_s: float) -> tuple[str, Offer]:
        """Opens pairing with a fresh token (replacing a live one). Makes this node the head."""
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidSpec.one("ttl_seconds", f"must be from 1 to {MAX_TTL_S:g} seconds, got {ttl_s:g}")
        self.membership.become_head()
        token = new_token()
        self._offer = Offer(token, self.clock() + ttl_s, time.time() + ttl_s)
        self.bus.publish("pairing", self.name, "open", f"token valid for {ttl_s:g} s, {MAX_TRIES} tries")
        self.on_change()
        return token, self._offer

    def close(self, why: str) -> None:
        if self._offer is not None:
            self._offer = None
            self.bus.publish("pairing", self.name, "closed", why)
            self.on_change()

    def _failed(self, offer: Offer, what: str, peer: str) -> PermissionDenied:
        """The refusal of a join whose try is already counted (see `_join`)."""
        log.warning("pairing.refused", peer=peer, reason=what, tries_left=offer.tries_left)
        if offer.tries_left <= 0 and self._offer is offer:
            self.close(f"{MAX_TRIES} failed tries")
            return PermissionDenied(f"{what}; pairing is now closed: run `peer pair begin` again", peer=peer)
        return PermissionDenied(what, peer=peer)

    async def join(self, request: pb.JoinRequest, caller: str) -> pb.JoinResponse:
        """A worker's join, on the pairing listener (unauthenticated: everything is checked)."""
        async with self._lock:
            return await self._join(request, caller)

    async def _join(self, request: pb.JoinRequest, caller: str) -> pb.JoinResponse:
        offer = self.offer()
        if offer is None:
            raise PermissionDenied(
                "no pairing is open on this head (never begun, expired, used or closed after failed tries); "
                "run `peer pair begin` on the head and use the new token",
                peer=caller,
            )
        bad = []
        if not NAME_RE.fullmatch(request.name):
            bad.append(FieldViolation("name", f"must be a node name, got {shown(request.name)}"))
        if len(request.proof) != 32:
            bad.append(FieldViolation("proof", f"must be 32 bytes (HMAC-SHA256), got {len(request.proof)}"))
        if not protocols_overlap(request.protocol_min, request.protocol_max):
            bad.append(
                FieldViolation(
                    "protocol_max",
                    f"the worker speaks peer protocol {request.protocol_min}..{request.protocol_max}, this head "
                    f"{PEER_PROTOCOL_MIN}..{PEER_PROTOCOL_MAX}: upgrade the older sparkd",
                )
            )
        if bad:
            raise InvalidSpec(bad)
        # The try counts from here, before any await: a join cancelled or timed out while its certificate is
        # read is a try all the same (else a caller could spawn certificate readers without end).
        if offer.tries_left <= 0:  # used up by joins that never finished
            self.close(f"{MAX_TRIES} tries")
            raise PermissionDenied("pairing is closed after failed tries: run `peer pair begin` again", peer=caller)
        offer.tries_left -= 1
        if not CERT_RE.fullmatch(request.cert_pem):
            raise self._failed(offer, "the join's certificate is unusable: not one PEM certificate", caller)
        try:
            worker_id, fingerprint = await self.cert_id(request.cert_pem)
        except ValueError as e:
            raise self._failed(offer, f"the join's certificate is unusable: {str(e)[:200]}", caller) from None
        if self.offer() is not offer:  # expired (or replaced) while the certificate was read
            raise PermissionDenied("the pairing token expired during the join; run `peer pair begin` again")
        expected = proof(offer.token, "worker", self.identity.node_id, worker_id)
        if not hmac.compare_digest(expected, request.proof):
            raise self._failed(
                offer, "the join's proof does not match this head, the worker's key and the live token", caller
            )
        if worker_id == self.identity.node_id:
            raise self._failed(offer, "a node cannot pair with itself", caller)
        same_name = [m for m in self.membership.peers() if m.name == request.name and m.node_id != worker_id]
        if same_name:
            old = same_name[0]
            self.bus.publish("peer", request.name, "key_changed", f"was {old.node_id}, now presents {worker_id}")
            raise PreconditionFailed(
                f"{request.name} is paired with another key (node ID {old.node_id}); if it was reinstalled, run "
                f"`peer pair reset {old.node_id}` on this head, then join again",
                peer=request.name,
            )
        member = self.membership.add_worker(worker_id, request.name, request.cert_pem, fingerprint)
        self._offer = None  # single use
        self.bus.publish("pairing", request.name, "paired", f"node ID {worker_id}, index {member.index}")
        self.on_change()
        log.info("pairing.paired", worker=request.name, node_id=worker_id, index=member.index)
        return pb.JoinResponse(
            node_id=self.identity.node_id,
            name=self.name,
            index=member.index,
            proof=proof(offer.token, "head", self.identity.node_id, worker_id),
            cert_pem=self.identity.cert_pem,
        )


def check_join_response(
    response: pb.JoinResponse, token: str, head_id: str, own_id: str, head_cert: str, fingerprint: str
) -> Member:
    """The worker's check of the head's answer; PermissionDenied unless it proves the head knew the token."""
    if response.node_id != head_id or response.cert_pem.strip() != head_cert.strip():
        raise PermissionDenied("the head's answer names another node or certificate than the one dialled")
    if not hmac.compare_digest(proof(token, "head", head_id, own_id), response.proof):
        raise PermissionDenied("the head's answer does not prove it knows the token: not pairing with it")
    if not NAME_RE.fullmatch(response.name) or not 1 <= response.index <= 250:
        raise PermissionDenied(
            f"the head's answer is out of range (name {shown(response.name)}, index {response.index})"
        )
    if not NODE_ID_RE.fullmatch(head_id):
        raise PermissionDenied("the head's node ID is malformed")
    return Member(head_id, response.name, 0, head_cert, fingerprint, time.time())


class Finder(Protocol):
    """Where a node claiming an ID announces itself (`sparkd.peer.discovery.Discovery`)."""

    async def wait_for(self, node_id: str, timeout: float) -> Sighting | None: ...

    def sightings(self) -> list[Sighting]: ...


class Joiner:
    """The worker's side of pairing (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        membership: Membership,
        identity: Identity,
        bus: EventBus,
        cert_id: CertId,
        finder: Finder,
        guard: RouteGuard,
        twins: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self.config, self.membership, self.identity, self.bus = config, membership, identity, bus
        self.cert_id, self.finder, self.guard, self.twins = cert_id, finder, guard, twins

    async def join(self, head_id: str, token_text: str, timeout: float) -> Member:
        token = normalize_token(token_text)
        if not NODE_ID_RE.fullmatch(head_id):
            raise InvalidSpec.one(
                "head_node_id", f"must be the 16-character node ID `peer pair begin` printed, got {shown(head_id)}"
            )
        if head_id == self.identity.node_id:
            raise InvalidSpec.one("head_node_id", "is this node's own ID; run `peer pair join` on the worker")
        if self.membership.role == "head":
            raise PreconditionFailed("this node is a head; a head cannot join another. Run `peer pair reset` first")
        paired = self.membership.head()
        if paired is not None and paired.node_id != head_id:
            raise PreconditionFailed(
                f"this node is paired with head {paired.name} ({paired.node_id}); run `peer pair reset` first"
            )
        sighting = await self.finder.wait_for(head_id, timeout)
        if sighting is None:
            twins = ", ".join(await self.twins()) or "no twin"
            raise PeerUnavailable(
                f"no node with ID {head_id} announced itself on the interconnect ({twins}) "
                f"within {timeout:g} s; check the cable and that `peer pair begin` runs on the head",
                peer=head_id,
            )
        sighting, fingerprint = await self._verified(head_id, sighting)
        cert = sighting.announcement.cert_pem
        target = await self._target(sighting)
        request = pb.JoinRequest(
            name=self.config.node.name,
            cert_pem=self.identity.cert_pem,
            proof=proof(token, "worker", head_id, self.identity.node_id),
            protocol_min=PEER_PROTOCOL_MIN,
            protocol_max=PEER_PROTOCOL_MAX,
        )
        channel = grpc.aio.secure_channel(
            target,
            tls.channel_credentials(None, cert),
            options=[*tls.channel_options(head_id), ("grpc.max_receive_message_length", 8 * 1024)],
        )
        try:
            response = await pb_grpc.PairingServiceStub(channel).Join(request, timeout=tls.HANDSHAKE_TIMEOUT_MS / 1000)
        except grpc.aio.AioRpcError as e:
            raise _join_failed(e, head_id) from e
        finally:
            await channel.close()
        head = check_join_response(response, token, head_id, self.identity.node_id, cert, fingerprint)
        self.membership.join_head(head, response.index)
        self.bus.publish("pairing", head.name, "paired", f"joined head {head_id} as index {response.index}")
        log.info("pairing.joined", head=head.name, node_id=head_id, index=response.index)
        return head

    async def _verified(self, head_id: str, first: Sighting) -> tuple[Sighting, str]:
        """The first sighting of `head_id` whose certificate's key hashes to it, and its fingerprint. Every
        claim of the ID is tried (at most 8, one reading per distinct certificate): a forged claim must not
        hide the real head."""
        claims = [first, *(s for s in self.finder.sightings() if s.announcement.node_id == head_id and s != first)]
        seen: dict[str, tuple[str, str]] = {}
        for sighting in claims[:8]:
            cert = sighting.announcement.cert_pem
            if cert not in seen:
                try:
                    seen[cert] = await self.cert_id(cert)
                except ValueError:
                    seen[cert] = ("", "")
            claimed, fingerprint = seen[cert]
            if claimed == head_id:
                return sighting, fingerprint
        raise PermissionDenied(
            f"the node announcing ID {head_id} on {first.netdev} presents a certificate for another key or none: "
            "refusing it (a discovery claim is checked, never trusted)",
            peer=head_id,
        )

    async def _target(self, sighting: Sighting) -> str:
        """The dial target of the head's pairing listener, after checking it is on the interconnect."""
        port = self.config.peer.pairing_port
        if sighting.address.startswith("fe80:"):
            if sighting.netdev not in await self.twins():
                raise RouteNotOnInterconnect(
                    f"refusing to dial {sighting.address}: {sighting.netdev} is not an interconnect twin",
                    address=sighting.address,
                )
            return f"ipv6:[{sighting.address}%25{sighting.netdev}]:{port}"
        await self.guard.check(sighting.address)
        return f"{sighting.address}:{port}"


def _join_failed(e: grpc.aio.AioRpcError, head_id: str) -> SparkdError:
    details = f"the head refused the join: {str(e.details())[:400]}"
    if e.code() is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details, peer=head_id)
    if e.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
        return PreconditionFailed(details, peer=head_id)
    return PeerUnavailable(
        f"cannot reach the head's pairing listener: {e.code().name}: {str(e.details())[:300]}", peer=head_id
    )
