"""Pairing: a single-use token bound to both node IDs; every hostile join is refused and pairs nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkd import PEER_PROTOCOL_MAX, PEER_PROTOCOL_MIN, identity
from sparkd.config import Config, NodeConfig
from sparkd.engine.membership import Membership, Record
from sparkd.errors import InvalidSpec, PermissionDenied, PreconditionFailed
from sparkd.events import EventBus
from sparkd.host.sysroot import Sysroot
from sparkd.identity import Identity
from sparkd.peer import pairing
from sparkd.peer.pairing import PairingOffice, check_join_response, normalize_token, proof, show_token
from sparkd.peer.v1 import peer_service_pb2 as pb

TTL = 300.0
CALLER = "ipv6:[fe80::2%enp1s0f0np0]:51234"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def cert_id(pem: str) -> tuple[str, str]:
    """The node ID of a certificate, in process (production parses it in a child process)."""
    return identity.node_id_of(identity.cert_public_key(pem))


@dataclass
class Node:
    name: str
    ident: Identity
    membership: Membership
    root: Path

    def reloaded(self) -> Record:
        """The record as the next start would read it."""
        return Membership(self.membership_config, Sysroot(self.root)).record

    @property
    def membership_config(self) -> Config:
        return Config(node=NodeConfig(name=self.name), state_dir="/var/lib/sparkd")


def _node(tmp_path: Path, name: str, role: str = "", index: int | None = None) -> Node:
    root = tmp_path / name
    ident = identity.load_or_create(root / "var/lib/sparkd")
    config = Config(node=NodeConfig(name=name, role=role, index=index), state_dir="/var/lib/sparkd")
    return Node(name, ident, Membership(config, Sysroot(root)), root)


@dataclass
class Head:
    node: Node
    office: PairingOffice
    bus: EventBus
    clock: Clock
    changes: list[int] = field(default_factory=list)

    def events(self) -> list[tuple[str, str, str]]:
        return [(e.kind, e.subject, e.state) for e in self.bus.recent]


def _head(tmp_path: Path, name: str = "spark1") -> Head:
    node = _node(tmp_path, name)
    bus, clock = EventBus(), Clock()
    changes: list[int] = []
    office = PairingOffice(name, node.membership, node.ident, bus, cert_id, lambda: changes.append(1), clock)
    return Head(node, office, bus, clock, changes)


def _request(token: str, head_id: str, worker: Identity, name: str = "spark2", cert_pem: str = "") -> pb.JoinRequest:
    return pb.JoinRequest(
        name=name,
        cert_pem=cert_pem or worker.cert_pem,
        proof=proof(token, "worker", head_id, worker.node_id),
        protocol_min=PEER_PROTOCOL_MIN,
        protocol_max=PEER_PROTOCOL_MAX,
    )


def _join(head: Head, request: pb.JoinRequest) -> pb.JoinResponse:
    return asyncio.run(head.office.join(request, CALLER))


def _other_token(token: str) -> str:
    return ("b" if token[0] == "a" else "a") + token[1:]


@pytest.fixture
def head(tmp_path: Path) -> Head:
    return _head(tmp_path)


@pytest.fixture
def worker(tmp_path: Path) -> Node:
    return _node(tmp_path, "spark2")


# --- a correct join ---------------------------------------------------------------------------------------------------


def test_a_correct_join_pairs_both_sides(head: Head, worker: Node) -> None:
    token, offer = head.office.begin(TTL)
    assert pairing.TOKEN_RE.fullmatch(token) and offer.tries_left == pairing.MAX_TRIES
    assert head.office.offer() is offer and head.node.membership.role == "head"
    response = _join(head, _request(token, head.node.ident.node_id, worker.ident))

    # The head: the worker stored with the next free index and its certificate pinned; the token used up.
    assert (response.node_id, response.name, response.index) == (head.node.ident.node_id, "spark1", 1)
    assert response.cert_pem == head.node.ident.cert_pem
    stored = head.node.membership.by_id(worker.ident.node_id)
    assert stored is not None
    assert (stored.name, stored.index, stored.cert_pem, stored.fingerprint) == (
        "spark2",
        1,
        worker.ident.cert_pem,
        worker.ident.fingerprint,
    )
    assert head.node.reloaded() == head.node.membership.record
    assert head.office.offer() is None
    assert ("pairing", "spark1", "open") in head.events() and ("pairing", "spark2", "paired") in head.events()
    assert len(head.changes) == 2  # opened, paired

    # The worker: the head's answer proves it knew the token; the head is stored with the index it gave.
    member = check_join_response(
        response,
        token,
        head.node.ident.node_id,
        worker.ident.node_id,
        head.node.ident.cert_pem,
        head.node.ident.fingerprint,
    )
    assert (member.node_id, member.name, member.index, member.role) == (head.node.ident.node_id, "spark1", 0, "head")
    assert (member.cert_pem, member.fingerprint) == (head.node.ident.cert_pem, head.node.ident.fingerprint)
    worker.membership.join_head(member, response.index)
    assert (worker.membership.role, worker.membership.index) == ("worker", 1)
    assert worker.membership.head() == member
    assert worker.reloaded() == worker.membership.record


def test_the_same_worker_joining_again_keeps_its_index(tmp_path: Path, head: Head, worker: Node) -> None:
    token, _ = head.office.begin(TTL)
    _join(head, _request(token, head.node.ident.node_id, worker.ident))
    token, _ = head.office.begin(TTL)
    third = _node(tmp_path, "spark3")
    assert _join(head, _request(token, head.node.ident.node_id, third.ident, "spark3")).index == 2
    token, _ = head.office.begin(TTL)
    assert _join(head, _request(token, head.node.ident.node_id, worker.ident)).index == 1
    assert sorted((p.name, p.index) for p in head.node.membership.peers()) == [("spark2", 1), ("spark3", 2)]


def test_a_new_begin_replaces_the_live_token(head: Head, worker: Node) -> None:
    old, _ = head.office.begin(TTL)
    new, _ = head.office.begin(TTL)
    assert old != new
    with pytest.raises(PermissionDenied):
        _join(head, _request(old, head.node.ident.node_id, worker.ident))
    assert _join(head, _request(new, head.node.ident.node_id, worker.ident)).index == 1


# --- hostile joins: refused, and the head's record unchanged ----------------------------------------------------------


def _refused_unchanged(
    head: Head, request: pb.JoinRequest, error: type[Exception] = PermissionDenied, match: str | None = None
) -> Exception:
    before = head.node.membership.record
    with pytest.raises(error, match=match) as e:
        _join(head, request)
    assert head.node.membership.record == before == head.node.reloaded()
    return e.value


def test_an_expired_token_is_refused(head: Head, worker: Node) -> None:
    start = head.clock.now
    token, _ = head.office.begin(TTL)
    head.clock.now = start + TTL - 0.001
    assert head.office.offer() is not None
    head.clock.now = start + TTL
    _refused_unchanged(head, _request(token, head.node.ident.node_id, worker.ident), match="no pairing is open")
    assert head.office.offer() is None
    assert ("pairing", "spark1", "closed") in head.events()
    assert head.node.membership.peers() == ()


def test_a_used_token_is_refused(head: Head, worker: Node) -> None:
    token, _ = head.office.begin(TTL)
    request = _request(token, head.node.ident.node_id, worker.ident)
    _join(head, request)
    _refused_unchanged(head, request, match="no pairing is open")
    assert [p.node_id for p in head.node.membership.peers()] == [worker.ident.node_id]


def test_a_proof_for_another_head_is_refused(tmp_path: Path, head: Head, worker: Node) -> None:
    other_head = _node(tmp_path, "spark9")
    token, offer = head.office.begin(TTL)
    _refused_unchanged(head, _request(token, other_head.ident.node_id, worker.ident), match="proof does not match")
    assert offer.tries_left == pairing.MAX_TRIES - 1
    assert head.node.membership.peers() == ()


def test_a_relayed_join_is_refused(tmp_path: Path, head: Head, worker: Node) -> None:
    """An attacker replays W's proof with its own certificate: the proof is bound to W's node ID."""
    attacker = _node(tmp_path, "mallory")
    token, _ = head.office.begin(TTL)
    stolen = _request(token, head.node.ident.node_id, worker.ident)
    relayed = pb.JoinRequest()
    relayed.CopyFrom(stolen)
    relayed.cert_pem = attacker.ident.cert_pem
    _refused_unchanged(head, relayed, match="proof does not match")
    assert head.node.membership.by_cert(attacker.ident.cert_pem) is None
    assert head.office.offer() is not None  # W itself may still join
    assert _join(head, stolen).index == 1


def test_a_wrong_token_is_refused(head: Head, worker: Node) -> None:
    token, offer = head.office.begin(TTL)
    _refused_unchanged(head, _request(_other_token(token), head.node.ident.node_id, worker.ident))
    assert offer.tries_left == pairing.MAX_TRIES - 1


def test_a_head_proof_is_not_a_worker_proof(head: Head, worker: Node) -> None:
    token, _ = head.office.begin(TTL)
    request = _request(token, head.node.ident.node_id, worker.ident)
    request.proof = proof(token, "head", head.node.ident.node_id, worker.ident.node_id)
    _refused_unchanged(head, request)


def test_five_wrong_tries_close_the_offer(head: Head, worker: Node) -> None:
    token, offer = head.office.begin(TTL)
    wrong = _request(_other_token(token), head.node.ident.node_id, worker.ident)
    for left in range(pairing.MAX_TRIES - 1, 0, -1):
        error = _refused_unchanged(head, wrong)
        assert "pairing is now closed" not in str(error)
        assert offer.tries_left == left and head.office.offer() is offer
    _refused_unchanged(head, wrong, match="pairing is now closed")
    assert head.office.offer() is None
    assert ("pairing", "spark1", "closed") in head.events()
    # Even the right token is refused now.
    _refused_unchanged(head, _request(token, head.node.ident.node_id, worker.ident), match="no pairing is open")


@pytest.mark.parametrize(
    "cert_pem",
    [
        "garbage",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n" + "A" * 3000 + "\n-----END CERTIFICATE-----\n",
    ],
    ids=["not-pem", "not-a-certificate", "too-long"],
)
def test_a_garbage_certificate_is_refused_and_counts_as_a_try(head: Head, worker: Node, cert_pem: str) -> None:
    token, offer = head.office.begin(TTL)
    request = _request(token, head.node.ident.node_id, worker.ident, cert_pem=cert_pem)
    _refused_unchanged(head, request, match="certificate is unusable")
    assert offer.tries_left == pairing.MAX_TRIES - 1


def test_a_node_cannot_pair_with_itself(head: Head) -> None:
    token, _ = head.office.begin(TTL)
    _refused_unchanged(head, _request(token, head.node.ident.node_id, head.node.ident, "spark1"), match="itself")
    assert head.node.membership.peers() == ()


def test_a_name_paired_with_another_key_is_refused(tmp_path: Path, head: Head, worker: Node) -> None:
    token, _ = head.office.begin(TTL)
    _join(head, _request(token, head.node.ident.node_id, worker.ident))
    impostor = _node(tmp_path, "impostor")
    token, _ = head.office.begin(TTL)
    error = _refused_unchanged(
        head,
        _request(token, head.node.ident.node_id, impostor.ident, "spark2"),
        PreconditionFailed,
        match="is paired with another key",
    )
    assert worker.ident.node_id in str(error) and "peer pair reset" in str(error)
    assert ("peer", "spark2", "key_changed") in head.events()
    stored = head.node.membership.by_id(worker.ident.node_id)
    assert stored is not None and stored.cert_pem == worker.ident.cert_pem
    assert head.node.membership.by_id(impostor.ident.node_id) is None


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (PEER_PROTOCOL_MAX + 1, PEER_PROTOCOL_MAX + 5),  # a newer worker only
        (0, PEER_PROTOCOL_MIN - 1),  # an older worker only
        (PEER_PROTOCOL_MAX, PEER_PROTOCOL_MIN - 1),  # an empty range
        (0, 0),  # not set
    ],
    ids=["newer", "older", "empty", "unset"],
)
def test_protocol_ranges_that_do_not_overlap_are_refused(head: Head, worker: Node, low: int, high: int) -> None:
    token, _ = head.office.begin(TTL)
    request = _request(token, head.node.ident.node_id, worker.ident)
    request.protocol_min, request.protocol_max = low, high
    error = _refused_unchanged(head, request, InvalidSpec)
    assert isinstance(error, InvalidSpec)
    assert [v.field for v in error.violations] == ["protocol_max"]
    assert "upgrade the older sparkd" in str(error)


@pytest.mark.parametrize(
    ("name", "proof_bytes", "fields"),
    [
        ("", None, ["name"]),
        ("spark 2", None, ["name"]),
        ("-spark2", None, ["name"]),
        ("spark2", b"", ["proof"]),
        ("spark2", b"\0" * 31, ["proof"]),
        ("", b"\0" * 33, ["name", "proof"]),
    ],
)
def test_a_malformed_join_is_refused_naming_the_fields(
    head: Head, worker: Node, name: str, proof_bytes: bytes | None, fields: list[str]
) -> None:
    token, _ = head.office.begin(TTL)
    request = _request(token, head.node.ident.node_id, worker.ident, name or "x")
    request.name = name
    if proof_bytes is not None:
        request.proof = proof_bytes
    error = _refused_unchanged(head, request, InvalidSpec)
    assert isinstance(error, InvalidSpec)
    assert [v.field for v in error.violations] == fields


def test_no_join_before_begin(head: Head, worker: Node) -> None:
    token = pairing.new_token()
    _refused_unchanged(head, _request(token, head.node.ident.node_id, worker.ident), match="no pairing is open")


def test_close_ends_the_offer(head: Head, worker: Node) -> None:
    token, _ = head.office.begin(TTL)
    head.office.close("operator")
    assert head.office.offer() is None
    _refused_unchanged(head, _request(token, head.node.ident.node_id, worker.ident), match="no pairing is open")


def test_concurrent_joins_use_the_token_once(tmp_path: Path, head: Head, worker: Node) -> None:
    async def slow_cert_id(pem: str) -> tuple[str, str]:
        await asyncio.sleep(0)  # a child process in production: the joins overlap
        return await cert_id(pem)

    head.office.cert_id = slow_cert_id
    other = _node(tmp_path, "spark3")
    token, _ = head.office.begin(TTL)

    async def both() -> tuple[pb.JoinResponse | BaseException, pb.JoinResponse | BaseException]:
        return await asyncio.gather(
            head.office.join(_request(token, head.node.ident.node_id, worker.ident), CALLER),
            head.office.join(_request(token, head.node.ident.node_id, other.ident, "spark3"), CALLER),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    assert sum(isinstance(r, pb.JoinResponse) for r in results) == 1
    assert len(head.node.membership.peers()) == 1


def test_a_join_cancelled_while_its_certificate_is_read_still_costs_a_try(head: Head, worker: Node) -> None:
    """Else a caller could time out joins on purpose and make the head read certificates without end."""
    reading = asyncio.Event()

    async def hanging_cert_id(pem: str) -> tuple[str, str]:
        reading.set()
        await asyncio.Event().wait()  # a child process that never answers
        raise AssertionError

    head.office.cert_id = hanging_cert_id
    token, offer = head.office.begin(TTL)

    async def cancelled_joins() -> None:
        for _ in range(pairing.MAX_TRIES):
            reading.clear()
            task = asyncio.ensure_future(
                head.office.join(_request(token, head.node.ident.node_id, worker.ident), CALLER)
            )
            await reading.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancelled_joins())
    assert offer.tries_left == 0
    _refused_unchanged(head, _request(token, head.node.ident.node_id, worker.ident), match="no pairing is open|closed")


# --- the worker's check of the head's answer --------------------------------------------------------------------------


@dataclass
class Answer:
    response: pb.JoinResponse
    token: str
    head: Identity
    worker: Identity

    def check(self, response: pb.JoinResponse | None = None) -> object:
        return check_join_response(
            response or self.response,
            self.token,
            self.head.node_id,
            self.worker.node_id,
            self.head.cert_pem,
            self.head.fingerprint,
        )

    def changed(self) -> pb.JoinResponse:
        copy = pb.JoinResponse()
        copy.CopyFrom(self.response)
        return copy


@pytest.fixture
def answer(head: Head, worker: Node) -> Answer:
    token, _ = head.office.begin(TTL)
    response = _join(head, _request(token, head.node.ident.node_id, worker.ident))
    return Answer(response, token, head.node.ident, worker.ident)


def test_check_join_response_accepts_the_heads_answer(answer: Answer) -> None:
    answer.check()


def test_check_join_response_refuses_a_wrong_proof(answer: Answer) -> None:
    for wrong in (
        proof(_other_token(answer.token), "head", answer.head.node_id, answer.worker.node_id),  # another token
        proof(answer.token, "worker", answer.head.node_id, answer.worker.node_id),  # the worker's own proof
        proof(answer.token, "head", answer.head.node_id, answer.head.node_id),  # for another worker
        b"",
    ):
        response = answer.changed()
        response.proof = wrong
        with pytest.raises(PermissionDenied, match="does not prove it knows the token"):
            answer.check(response)


def test_check_join_response_refuses_another_node_id(tmp_path: Path, answer: Answer) -> None:
    response = answer.changed()
    response.node_id = _node(tmp_path, "spark9").ident.node_id
    with pytest.raises(PermissionDenied, match="names another node or certificate"):
        answer.check(response)


def test_check_join_response_refuses_another_cert(tmp_path: Path, answer: Answer) -> None:
    response = answer.changed()
    response.cert_pem = _node(tmp_path, "spark9").ident.cert_pem
    with pytest.raises(PermissionDenied, match="names another node or certificate"):
        answer.check(response)


@pytest.mark.parametrize("index", [0, 251, 2**32 - 1])
def test_check_join_response_refuses_an_index_out_of_range(answer: Answer, index: int) -> None:
    response = answer.changed()
    response.index = index
    with pytest.raises(PermissionDenied, match="out of range"):
        answer.check(response)


@pytest.mark.parametrize("name", ["", "spark 1", "\x1b[2Jspark1"])
def test_check_join_response_refuses_a_bad_name(answer: Answer, name: str) -> None:
    response = answer.changed()
    response.name = name
    with pytest.raises(PermissionDenied, match="out of range"):
        answer.check(response)


# --- tokens and begin -------------------------------------------------------------------------------------------------


def test_new_tokens_are_100_random_bits_in_base32() -> None:
    tokens = {pairing.new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(pairing.TOKEN_RE.fullmatch(t) for t in tokens)


def test_normalize_token_accepts_what_show_token_prints() -> None:
    token = pairing.new_token()
    shown = show_token(token)
    assert shown.count("-") == 3 and all(len(group) == 5 for group in shown.split("-"))
    for text in (token, shown, shown.upper(), token.upper(), " ".join(shown.split("-")), f"{shown[:7]}-{shown[7:]}"):
        assert normalize_token(text) == token


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abcde",
        "abcde-fghij-klmno-pqrs",
        "abcde-fghij-klmno-pqrst-u",
        "abcde-fghij-klmno-pqrs0",
        "abcde-fghij-klmno-pqrs1",
        "abcde-fghij-klmno-pqrs8",
        "abcde_fghij_klmno_pqrst",
        "abcde-fghij-klmno-pqrs\u00e9",
        "abcde\nfghijklmnopqrst",
    ],
)
def test_normalize_token_refuses_what_is_not_a_token(text: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        normalize_token(text)
    assert [v.field for v in e.value.violations] == ["token"]
    with pytest.raises(InvalidSpec) as e:
        normalize_token(text, "pairing_token")
    assert [v.field for v in e.value.violations] == ["pairing_token"]


@pytest.mark.parametrize("ttl", [0.0, 0.5, -1.0, 900.5, 3600.0, float("nan"), float("inf")])
def test_a_ttl_out_of_range_is_refused(head: Head, ttl: float) -> None:
    with pytest.raises(InvalidSpec) as e:
        head.office.begin(ttl)
    assert [v.field for v in e.value.violations] == ["ttl_seconds"]
    assert head.office.offer() is None
    assert head.node.membership.record == Record()  # not made the head either


@pytest.mark.parametrize("ttl", [1.0, pairing.MAX_TTL_S])
def test_a_ttl_in_range_is_kept(head: Head, ttl: float) -> None:
    _, offer = head.office.begin(ttl)
    assert offer.expires == head.clock.now + ttl
    head.clock.now += ttl
    assert head.office.offer() is None


@pytest.mark.parametrize("pinned", [False, True], ids=["paired-worker", "pinned-worker"])
def test_begin_on_a_worker_is_refused(tmp_path: Path, pinned: bool) -> None:
    head = _head(tmp_path)
    if pinned:
        node = _node(tmp_path, "spark2", "worker", 1)
    else:
        node = _node(tmp_path, "spark2")
        token, _ = head.office.begin(TTL)
        response = _join(head, _request(token, head.node.ident.node_id, node.ident))
        member = check_join_response(
            response,
            token,
            head.node.ident.node_id,
            node.ident.node_id,
            head.node.ident.cert_pem,
            head.node.ident.fingerprint,
        )
        node.membership.join_head(member, response.index)
    bus = EventBus()
    office = PairingOffice("spark2", node.membership, node.ident, bus, cert_id, lambda: None, Clock())
    before = node.membership.record
    with pytest.raises(PreconditionFailed, match="paired as a worker"):
        office.begin(TTL)
    assert office.offer() is None and not bus.recent
    assert node.membership.record == before
