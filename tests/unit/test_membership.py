"""pairing.json: the node's role, index, pinned peers and epoch; config pins win; a bad record is moved aside."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkd import identity
from sparkd.config import Config, NodeConfig
from sparkd.engine import membership
from sparkd.engine.membership import Member, Membership, Record
from sparkd.errors import PreconditionFailed
from sparkd.host.sysroot import Sysroot

STATE = "/var/lib/sparkd"


def _config(role: str = "", index: int | None = None) -> Config:
    return Config(node=NodeConfig(name="spark1", role=role, index=index), state_dir=STATE)


def _membership(root: Path, role: str = "", index: int | None = None) -> Membership:
    return Membership(_config(role, index), Sysroot(root))


def _record_path(root: Path) -> Path:
    return root / STATE.lstrip("/") / "pairing.json"


def _node_id(n: int) -> str:
    """A well-formed node ID (16 base32 characters), different for each n."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digits = ""
    for _ in range(16):
        n, d = divmod(n, 32)
        digits += alphabet[d]
    return digits


def _fingerprint(n: int) -> str:
    return f"{n:064x}"


def _cert(n: int) -> str:
    return f"-----BEGIN CERTIFICATE-----\ncert{n}\n-----END CERTIFICATE-----\n"


def _member(n: int, index: int, name: str = "") -> Member:
    return Member(_node_id(n), name or f"spark{n}", index, _cert(n), _fingerprint(n), 1700000000.0 + n)


def _good_doc() -> dict[str, Any]:
    """A valid record of a head with two workers, as JSON would hold it."""
    doc: dict[str, Any] = json.loads(
        membership.dump(Record(role="head", index=0, peers=(_member(1, 1), _member(2, 2)), epoch=7))
    )
    return doc


# --- the record -------------------------------------------------------------------------------------------------------


def test_a_record_round_trips() -> None:
    for record in (
        Record(),
        Record(role="head", index=0, peers=(_member(1, 1), _member(2, 5)), epoch=42),
        Record(role="worker", index=3, peers=(_member(9, 0, "head-node"),), epoch=0),
    ):
        data = membership.dump(record)
        assert json.loads(data)["format"] == membership.FORMAT
        assert membership.parse(data) == record


def test_real_certificates_round_trip_through_the_file(tmp_path: Path) -> None:
    worker = identity.load_or_create(tmp_path / "worker")
    m = _membership(tmp_path / "root")
    m.become_head()
    added = m.add_worker(worker.node_id, "spark2", worker.cert_pem, worker.fingerprint)
    path = _record_path(tmp_path / "root")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = _membership(tmp_path / "root")
    assert again.record == m.record
    assert again.by_cert(worker.cert_pem) == added == again.by_id(worker.node_id)
    assert again.by_cert(worker.cert_pem.strip() + "\n\n") == added  # as the TLS layer may present it
    assert again.by_cert(identity.load_or_create(tmp_path / "other").cert_pem) is None


def test_no_record_means_unpaired(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    assert m.record == Record()
    assert (m.role, m.pinned, m.addressed, m.peers(), m.head()) == ("", False, False, (), None)
    assert not _record_path(tmp_path).exists()  # reading writes nothing


# --- pins from the config file ------------------------------------------------------------------------------------


def test_pins_win_over_the_record(tmp_path: Path) -> None:
    worker = _membership(tmp_path)
    worker.join_head(_member(9, 0, "head-node"), 3)
    assert (worker.role, worker.index, worker.pinned) == ("worker", 3, False)

    pinned_head = _membership(tmp_path, "head", 0)
    assert (pinned_head.role, pinned_head.index, pinned_head.pinned, pinned_head.addressed) == ("head", 0, True, True)
    assert pinned_head.record.role == "worker"  # the record is kept, only overridden

    pinned_worker = _membership(tmp_path, "worker", 5)
    assert (pinned_worker.role, pinned_worker.index) == ("worker", 5)

    pinned_role_only = _membership(tmp_path, "worker", None)
    assert (pinned_role_only.role, pinned_role_only.index) == ("worker", 3)  # the index pairing gave


def test_a_pinned_head_starts_addressed_without_a_record(tmp_path: Path) -> None:
    m = _membership(tmp_path, "head", 0)
    assert (m.role, m.index, m.addressed) == ("head", 0, True)


def test_a_pinned_worker_without_an_index_is_not_addressed_until_paired(tmp_path: Path) -> None:
    m = _membership(tmp_path, "worker", None)
    assert m.role == "worker"
    assert not m.addressed


# --- changes ------------------------------------------------------------------------------------------------------


def test_become_head_saves_the_role_once(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.become_head()
    assert (m.role, m.index, m.record.role) == ("head", 0, "head")
    data = _record_path(tmp_path).read_bytes()
    m.become_head()
    assert _record_path(tmp_path).read_bytes() == data
    assert _membership(tmp_path).role == "head"


@pytest.mark.parametrize("pinned", [False, True], ids=["paired-worker", "pinned-worker"])
def test_become_head_on_a_worker_is_refused(tmp_path: Path, pinned: bool) -> None:
    if pinned:
        m = _membership(tmp_path, "worker", 1)
    else:
        m = _membership(tmp_path)
        m.join_head(_member(9, 0, "head-node"), 1)
    before = m.record
    with pytest.raises(PreconditionFailed, match="paired as a worker"):
        m.become_head()
    assert m.record == before == _membership(tmp_path).record


@pytest.mark.parametrize("pinned", [False, True], ids=["paired-head", "pinned-head"])
def test_join_head_on_a_head_is_refused(tmp_path: Path, pinned: bool) -> None:
    m = _membership(tmp_path, "head", 0) if pinned else _membership(tmp_path)
    if not pinned:
        m.become_head()
    before = m.record
    with pytest.raises(PreconditionFailed, match="a head cannot join another"):
        m.join_head(_member(9, 0, "head-node"), 1)
    assert m.record == before == _membership(tmp_path).record


def test_a_pinned_index_contradicting_the_heads_is_refused(tmp_path: Path) -> None:
    m = _membership(tmp_path, "worker", 2)
    with pytest.raises(PreconditionFailed, match=r"the head gave index 1, but the config file pins node.index = 2"):
        m.join_head(_member(9, 0, "head-node"), 1)
    assert m.record == Record()
    assert not _record_path(tmp_path).exists()
    m.join_head(_member(9, 0, "head-node"), 2)  # the same index is fine
    assert (m.record.role, m.record.index, m.index) == ("worker", 2, 2)


def test_join_head_stores_the_head_and_the_index(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    head = _member(9, 0, "head-node")
    m.join_head(head, 4)
    again = _membership(tmp_path)
    assert (again.role, again.index, again.addressed) == ("worker", 4, True)
    assert again.head() == head and again.peers() == (head,)
    assert head.role == "head"


def test_add_worker_gives_the_next_free_index_and_keeps_a_known_keys(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.become_head()
    one = m.add_worker(_node_id(1), "spark2", _cert(1), _fingerprint(1))
    two = m.add_worker(_node_id(2), "spark3", _cert(2), _fingerprint(2))
    assert (one.index, two.index) == (1, 2)
    assert (one.role, two.role) == ("worker", "worker")
    # The same key again (say, renamed, with a new certificate): its old index, one entry.
    again = m.add_worker(_node_id(1), "spark2b", _cert(11), _fingerprint(1))
    assert again.index == 1 and again.name == "spark2b" and again.cert_pem == _cert(11)
    assert sorted((p.node_id, p.index) for p in m.peers()) == [(_node_id(1), 1), (_node_id(2), 2)]
    # A forgotten index is given again, lowest first.
    m.forget(_node_id(1))
    assert m.add_worker(_node_id(3), "spark4", _cert(3), _fingerprint(3)).index == 1
    assert m.add_worker(_node_id(4), "spark5", _cert(4), _fingerprint(4)).index == 3
    assert _membership(tmp_path).record == m.record


def test_add_worker_on_an_unpaired_node_makes_it_the_head(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    assert m.add_worker(_node_id(1), "spark2", _cert(1), _fingerprint(1)).index == 1
    assert (m.record.role, m.record.index) == ("head", 0)


def test_a_full_head_refuses_another_worker(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.become_head()
    for n in range(1, membership.MAX_PEERS + 1):
        m.add_worker(_node_id(n), f"spark{n}", _cert(n), _fingerprint(n))
    before = m.record
    with pytest.raises(PreconditionFailed, match="no index is free"):
        m.add_worker(_node_id(1000), "late", _cert(1000), _fingerprint(1000))
    assert m.record == before
    assert m.add_worker(_node_id(1), "spark1", _cert(1), _fingerprint(1)).index == 1  # a known key still re-pairs


def test_forget_one_peer(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.become_head()
    m.next_epoch()
    m.add_worker(_node_id(1), "spark2", _cert(1), _fingerprint(1))
    m.add_worker(_node_id(2), "spark3", _cert(2), _fingerprint(2))
    assert m.forget(_node_id(1)) == [_node_id(1)]
    assert [p.node_id for p in m.peers()] == [_node_id(2)]
    assert (m.role, m.record.epoch) == ("head", 1)
    assert m.forget(_node_id(7)) == []  # unknown: nothing forgotten
    assert m.forget(_node_id(2)) == [_node_id(2)]
    assert (m.role, m.peers()) == ("head", ())  # a head without workers is still the head
    assert _membership(tmp_path).record == m.record


def test_a_worker_forgetting_its_head_is_unpaired(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.next_epoch()
    m.join_head(_member(9, 0, "head-node"), 2)
    assert m.forget(_node_id(9)) == [_node_id(9)]
    assert m.record == Record(epoch=1) == _membership(tmp_path).record
    assert (m.role, m.addressed) == ("", False)


def test_forget_all(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    m.become_head()
    m.add_worker(_node_id(1), "spark2", _cert(1), _fingerprint(1))
    m.add_worker(_node_id(2), "spark3", _cert(2), _fingerprint(2))
    epoch = m.next_epoch()
    assert sorted(m.forget()) == sorted([_node_id(1), _node_id(2)])
    assert m.record == Record(epoch=epoch) == _membership(tmp_path).record  # the epoch is never reused
    assert m.role == ""


def test_next_epoch_is_saved_before_it_is_used(tmp_path: Path) -> None:
    m = _membership(tmp_path)
    assert [m.next_epoch(), m.next_epoch()] == [1, 2]
    assert _membership(tmp_path).record.epoch == 2
    again = _membership(tmp_path)
    assert again.next_epoch() == 3
    assert _membership(tmp_path).next_epoch() == 4


# --- a malformed record: refused by parse, moved aside by Membership ----------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc[key] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        del doc[key]

    return change


def _set_peer(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["peers"][0][key] = value

    return change


def _drop_peer(key: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        del doc["peers"][0][key]

    return change


def _worker_with_own_index(doc: dict[str, Any]) -> None:
    doc.update(role="worker", index=2)
    doc["peers"][0]["index"] = 0


MALFORMED_DOCS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no-format", _drop("format"), "not a pairing record of format 1"),
    ("format-2", _set("format", 2), "not a pairing record of format 1"),
    ("format-text", _set("format", "1"), "not a pairing record of format 1"),
    ("role-unknown", _set("role", "boss"), "role must be one of"),
    ("role-number", _set("role", 1), "role must be one of"),
    ("role-missing", _drop("role"), "role must be one of"),
    ("index-missing", _drop("index"), "index must be from 0 to 250"),
    ("index-negative", _set("index", -1), "index must be from 0 to 250"),
    ("index-too-large", _set("index", 251), "index must be from 0 to 250"),
    ("index-text", _set("index", "0"), "index must be from 0 to 250"),
    ("index-bool", _set("index", False), "index must be from 0 to 250"),
    ("index-float", _set("index", 0.0), "index must be from 0 to 250"),
    ("head-index-1", _set("index", 3), "the head has index 0 and only the head"),
    ("worker-index-0", _set("role", "worker"), "the head has index 0 and only the head"),
    ("epoch-missing", _drop("epoch"), "epoch must be a non-negative integer"),
    ("epoch-negative", _set("epoch", -1), "epoch must be a non-negative integer"),
    ("epoch-too-large", _set("epoch", 2**63), "epoch must be a non-negative integer"),
    ("epoch-bool", _set("epoch", True), "epoch must be a non-negative integer"),
    ("epoch-float", _set("epoch", 1.5), "epoch must be a non-negative integer"),
    ("epoch-text", _set("epoch", "7"), "epoch must be a non-negative integer"),
    ("peers-missing", _drop("peers"), "peers must be a list"),
    ("peers-object", _set("peers", {}), "peers must be a list"),
    ("peers-too-many", _set("peers", [{}] * (membership.MAX_PEERS + 1)), "peers must be a list of at most 64"),
    ("peer-not-object", _set("peers", ["spark2"]), "a peer must be an object"),
    ("node-id-missing", _drop_peer("node_id"), "node_id must be 16 base32 characters"),
    ("node-id-short", _set_peer("node_id", "abc"), "node_id must be 16 base32 characters"),
    ("node-id-upper", _set_peer("node_id", _node_id(1).upper()), "node_id must be 16 base32 characters"),
    ("node-id-not-base32", _set_peer("node_id", "0" * 16), "node_id must be 16 base32 characters"),
    ("node-id-number", _set_peer("node_id", 1), "node_id must be 16 base32 characters"),
    ("name-missing", _drop_peer("name"), "name must be a node name"),
    ("name-empty", _set_peer("name", ""), "name must be a node name"),
    ("name-dash-first", _set_peer("name", "-spark"), "name must be a node name"),
    ("name-space", _set_peer("name", "spark 2"), "name must be a node name"),
    ("name-control", _set_peer("name", "spark\x1b[2J"), "name must be a node name"),
    ("name-too-long", _set_peer("name", "a" * 64), "name must be a node name"),
    ("name-number", _set_peer("name", 2), "name must be a node name"),
    ("peer-index-missing", _drop_peer("index"), "index must be from 0 to 250"),
    ("peer-index-negative", _set_peer("index", -1), "index must be from 0 to 250"),
    ("peer-index-too-large", _set_peer("index", 251), "index must be from 0 to 250"),
    ("peer-index-bool", _set_peer("index", True), "index must be from 0 to 250"),
    ("peer-index-text", _set_peer("index", "1"), "index must be from 0 to 250"),
    ("cert-missing", _drop_peer("cert_pem"), "cert_pem must be a PEM certificate"),
    ("cert-not-pem", _set_peer("cert_pem", "MIIB..."), "cert_pem must be a PEM certificate"),
    ("cert-too-long", _set_peer("cert_pem", _cert(1) + "A" * 2048), "cert_pem must be a PEM certificate"),
    ("cert-number", _set_peer("cert_pem", 1), "cert_pem must be a PEM certificate"),
    ("fingerprint-missing", _drop_peer("fingerprint"), "fingerprint must be 64 hex digits"),
    ("fingerprint-short", _set_peer("fingerprint", "ab" * 31), "fingerprint must be 64 hex digits"),
    ("fingerprint-upper", _set_peer("fingerprint", "AB" * 32), "fingerprint must be 64 hex digits"),
    ("fingerprint-not-hex", _set_peer("fingerprint", "g" * 64), "fingerprint must be 64 hex digits"),
    ("paired-at-missing", _drop_peer("paired_at"), "paired_at must be a number"),
    ("paired-at-text", _set_peer("paired_at", "yesterday"), "paired_at must be a number"),
    ("paired-at-bool", _set_peer("paired_at", True), "paired_at must be a number"),
    ("peer-same-id", lambda d: d["peers"][1].update(node_id=d["peers"][0]["node_id"]), "share a node ID or an index"),
    ("peer-same-index", lambda d: d["peers"][1].update(index=1), "share a node ID or an index"),
    ("peer-own-index", _set_peer("index", 0), "a peer has this node's own index"),
    ("worker-peer-own-index", _worker_with_own_index, "a peer has this node's own index"),
]


def _malformed(change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = _good_doc()
    change(doc)
    return json.dumps(doc).encode()


MALFORMED_BYTES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b'{"format": 1, "role": '),
    ("not-utf8", b'{"format": 1, "role": "\xff"}'),
    ("a-list", b"[1]"),
    ("a-string", b'"head"'),
    ("null", b"null"),
    ("too-large", b" " * (membership.MAX_BYTES + 1)),
]


@pytest.mark.parametrize(
    ("change", "what"), [(c, w) for _, c, w in MALFORMED_DOCS], ids=[i for i, _, _ in MALFORMED_DOCS]
)
def test_parse_refuses_a_malformed_field(change: Callable[[dict[str, Any]], None], what: str) -> None:
    membership.parse(_malformed(lambda doc: None))  # the unchanged record is good
    with pytest.raises(ValueError, match=re.escape(what)):
        membership.parse(_malformed(change))


@pytest.mark.parametrize("data", [d for _, d in MALFORMED_BYTES], ids=[i for i, _ in MALFORMED_BYTES])
def test_parse_refuses_what_is_not_a_record(data: bytes) -> None:
    with pytest.raises(ValueError):
        membership.parse(data)


@pytest.mark.parametrize(
    "data",
    [_malformed(c) for _, c, _ in MALFORMED_DOCS] + [d for _, d in MALFORMED_BYTES],
    ids=[i for i, _, _ in MALFORMED_DOCS] + [i for i, _ in MALFORMED_BYTES],
)
def test_a_malformed_record_is_moved_aside_and_the_node_starts_unpaired(tmp_path: Path, data: bytes) -> None:
    path = _record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    m = _membership(tmp_path)
    assert m.record == Record() and m.role == "" and not m.addressed
    assert not path.exists()
    assert Path(f"{path}.corrupt").read_bytes() == data
    # The next start finds no record; pairing again writes a fresh one and leaves the corrupt one for a look.
    again = _membership(tmp_path)
    assert again.record == Record()
    again.become_head()
    assert _membership(tmp_path).role == "head"
    assert Path(f"{path}.corrupt").read_bytes() == data


def test_a_malformed_record_is_moved_aside_even_when_the_node_is_pinned(tmp_path: Path) -> None:
    path = _record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{")
    m = _membership(tmp_path, "worker", 2)
    assert (m.role, m.index, m.peers()) == ("worker", 2, ())
    assert Path(f"{path}.corrupt").read_bytes() == b"{"


def test_a_deeply_nested_record_is_moved_aside(tmp_path: Path) -> None:
    path = _record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[" * 100_000)
    assert _membership(tmp_path).record == Record()
    assert Path(f"{path}.corrupt").exists()
