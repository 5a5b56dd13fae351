"""Who this node is in the cluster, and whom it trusts: `<state_dir>/pairing.json` (0600, atomic).

Roles are fixed at pairing, never elected (two nodes have no quorum): `peer pair begin`
makes a node the head (index 0), `peer pair join` makes it a worker and stores the index
the head gave it; host configuration derives the node's interconnect addresses from
that index. The config file's `node.role` and `node.index` are optional overrides (the
tests and a lab may pin them); a pinned role wins over the record, and pairing refuses
to contradict it.

The record also holds each paired peer's certificate: the peer port trusts exactly
these (mutual TLS pinned to the keys), and a peer is recognised by its certificate,
never by its address. And it holds the head's epoch counter, bumped at every
rendezvous (saved before it is used), so a message from an older session is refused.

The record is never trusted: it is read bounded, never through a link, validated in
full, and one that fails is moved aside (`pairing.json.corrupt`) and the node starts
unpaired, saying so in the log: it must be paired again, which is safe (pairing needs
the operator), where guessing would not be.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import structlog

from sparkd.config import Config
from sparkd.errors import HostOperationFailed, PreconditionFailed
from sparkd.files import NotARegularFile
from sparkd.host.protocols import Files

log = structlog.get_logger(__name__)

FORMAT = 1
MAX_BYTES = 256 * 1024
MAX_INDEX = 250
MAX_PEERS = 64
NODE_ID_RE = re.compile(r"[a-z2-7]{16}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ROLES = ("", "head", "worker")


@dataclass(frozen=True)
class Member:
    """A paired peer: its identity, its index and its pinned certificate."""

    node_id: str
    name: str
    index: int
    cert_pem: str
    fingerprint: str
    paired_at: float

    @property
    def role(self) -> str:
        return "head" if self.index == 0 else "worker"


@dataclass(frozen=True)
class Record:
    """pairing.json: this node's role and index, its peers, the head's epoch counter."""

    role: str = ""
    index: int = 0
    peers: tuple[Member, ...] = ()
    epoch: int = 0


def _member(doc: Any) -> Member:
    if not isinstance(doc, dict):
        raise ValueError("a peer must be an object")
    node_id, name, cert, fingerprint = (doc.get(k) for k in ("node_id", "name", "cert_pem", "fingerprint"))
    index, paired_at = doc.get("index"), doc.get("paired_at")
    if not isinstance(node_id, str) or not NODE_ID_RE.fullmatch(node_id):
        raise ValueError("a peer's node_id must be 16 base32 characters")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"peer {node_id}: name must be a node name")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
        raise ValueError(f"peer {node_id}: index must be from 0 to {MAX_INDEX}")
    if not isinstance(cert, str) or len(cert) > 2048 or not cert.startswith("-----BEGIN CERTIFICATE-----"):
        raise ValueError(f"peer {node_id}: cert_pem must be a PEM certificate")
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise ValueError(f"peer {node_id}: fingerprint must be 64 hex digits")
    if not isinstance(paired_at, (int, float)) or isinstance(paired_at, bool) or not math.isfinite(paired_at):
        raise ValueError(f"peer {node_id}: paired_at must be a number")
    return Member(node_id, name, index, cert, fingerprint, float(paired_at))


def parse(data: bytes) -> Record:
    """Parses and checks pairing.json; raises ValueError saying what is wrong."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except RecursionError as e:
        raise ValueError("nested too deeply") from e
    if not isinstance(doc, dict) or type(doc.get("format")) is not int or doc["format"] != FORMAT:
        raise ValueError(f"not a pairing record of format {FORMAT}")
    role, index, epoch, peers = doc.get("role"), doc.get("index"), doc.get("epoch"), doc.get("peers")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be from 0 to {MAX_INDEX}")
    if (role == "head") != (index == 0) and role:
        raise ValueError("the head has index 0 and only the head")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**63:
        raise ValueError("epoch must be a non-negative integer")
    if not isinstance(peers, list) or len(peers) > MAX_PEERS:
        raise ValueError(f"peers must be a list of at most {MAX_PEERS}")
    members = tuple(_member(p) for p in peers)
    if len({m.node_id for m in members}) != len(members) or len({m.index for m in members}) != len(members):
        raise ValueError("two peers share a node ID or an index")
    if any(m.index == index for m in members) and role:
        raise ValueError("a peer has this node's own index")
    return Record(role=str(role), index=index, peers=members, epoch=epoch)


def dump(record: Record) -> bytes:
    doc = {"format": FORMAT, **dataclasses.asdict(record)}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


class Membership:
    """This node's pairing record, with the config file's pins applied. Every change is saved before it is
    visible, so what the daemon acts on is what the next start reads back."""

    def __init__(self, config: Config, files: Files) -> None:
        self.files = files
        self.path = f"{config.state_dir}/pairing.json"
        self.pinned_role, self.pinned_index = config.node.role, config.node.index
        self.record = self._load()

    def _load(self) -> Record:
        try:
            data = self.files.read_bounded(self.path, MAX_BYTES + 1)
            if data is None:
                return Record()
            return parse(data)
        except OSError as e:
            if not isinstance(e, NotARegularFile) and e.errno not in (errno.ELOOP, errno.EISDIR):
                # EIO, EMFILE, EACCES...: not a bad record, and no reason to forget whom this node trusts.
                raise HostOperationFailed(
                    f"cannot read {self.path}: {e.strerror}; fix the state directory and start sparkd again",
                    path=self.path,
                ) from e
            aside = f"{self.path}.corrupt"  # a link, a FIFO, a directory: not a record sparkd wrote
            self.files.rename(self.path, aside)
            log.error("pairing.record_corrupt", path=self.path, moved_to=aside, error="not a regular file")
            return Record()
        except (ValueError, UnicodeDecodeError) as e:
            aside = f"{self.path}.corrupt"
            self.files.rename(self.path, aside)
            log.error("pairing.record_corrupt", path=self.path, moved_to=aside, error=str(e)[:300])
            return Record()

    def _save(self, record: Record) -> None:
        self.files.write_atomic(self.path, dump(record), 0o600)
        self.record = record

    # --- who this node is ---------------------------------------------------------------------

    @property
    def role(self) -> str:
        """ "head", "worker", or "" while unpaired and not pinned."""
        return self.pinned_role or self.record.role

    @property
    def index(self) -> int:
        if self.pinned_index is not None:
            return self.pinned_index
        return self.record.index

    @property
    def pinned(self) -> bool:
        return bool(self.pinned_role)

    @property
    def addressed(self) -> bool:
        """Whether the node knows its index, and so its interconnect addresses."""
        if self.pinned_index is not None:
            return True
        return bool(self.record.role) and self.record.role == self.role

    # --- whom it trusts -----------------------------------------------------------------------

    def peers(self) -> tuple[Member, ...]:
        return self.record.peers

    def head(self) -> Member | None:
        return next((m for m in self.record.peers if m.index == 0), None)

    def by_id(self, node_id: str) -> Member | None:
        return next((m for m in self.record.peers if m.node_id == node_id), None)

    def by_cert(self, cert_pem: str) -> Member | None:
        """The paired peer whose pinned certificate this is (as the TLS layer presents it)."""
        wanted = cert_pem.strip()
        return next((m for m in self.record.peers if m.cert_pem.strip() == wanted), None)

    # --- changes ------------------------------------------------------------------------------

    def become_head(self) -> None:
        if self.role == "worker":
            raise PreconditionFailed(
                "this node is paired as a worker; a cluster has one head. Run `peer pair begin` on the head, "
                "or `peer pair reset` here first to make this node a head"
            )
        if self.record.role != "head":
            self._save(dataclasses.replace(self.record, role="head", index=0))

    def next_index(self) -> int:
        used = {m.index for m in self.record.peers} | {0}
        free = next((i for i in range(1, MAX_INDEX + 1) if i not in used), None)
        if free is None or len(self.record.peers) >= MAX_PEERS:
            raise PreconditionFailed(f"this head has {len(self.record.peers)} workers: no index is free")
        return free

    def add_worker(self, node_id: str, name: str, cert_pem: str, fingerprint: str) -> Member:
        """Pairs a worker (on the head): a new index, or its old one if this key was paired before."""
        old = self.by_id(node_id)
        index = old.index if old else self.next_index()
        member = Member(node_id, name, index, cert_pem, fingerprint, time.time())
        others = tuple(m for m in self.record.peers if m.node_id != node_id)
        self._save(dataclasses.replace(self.record, role="head", index=0, peers=(*others, member)))
        return member

    def join_head(self, head: Member, index: int) -> None:
        """Pairs with a head (on a worker): stores it and the index it gave this node."""
        if self.pinned_role == "head" or self.record.role == "head":
            raise PreconditionFailed(
                "this node is a head; a head cannot join another. Run `peer pair reset` here first"
            )
        if self.pinned_index is not None and self.pinned_index != index:
            raise PreconditionFailed(
                f"the head gave index {index}, but the config file pins node.index = {self.pinned_index}; "
                "remove node.index from the config file"
            )
        self._save(dataclasses.replace(self.record, role="worker", index=index, peers=(head,)))

    def forget(self, node_id: str = "") -> list[str]:
        """Forgets one peer, or (empty) every peer and this node's role. Returns the node IDs forgotten."""
        if node_id:
            gone = [m.node_id for m in self.record.peers if m.node_id == node_id]
            kept = tuple(m for m in self.record.peers if m.node_id != node_id)
            record = dataclasses.replace(self.record, peers=kept)
            if self.record.role == "worker" and not kept:
                record = Record(epoch=self.record.epoch)
        else:
            gone = [m.node_id for m in self.record.peers]
            record = Record(epoch=self.record.epoch)
        self._save(record)
        return gone

    def next_epoch(self) -> int:
        """A new epoch, saved before it is used (so no epoch is ever handed out twice)."""
        epoch = self.record.epoch + 1
        self._save(dataclasses.replace(self.record, epoch=epoch))
        return epoch
