"""Peers as this daemon sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sparkd.model.deployment import PartSummary
from sparkd.model.versions import Difference, Versions


class PeerState(Enum):
    """Mirrors sparkd.v1.PeerState (name after the prefix)."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    REFUSED = "REFUSED"
    KEY_CHANGED = "KEY_CHANGED"


@dataclass(frozen=True)
class PeerInfo:
    """One paired peer, with what its last hello said."""

    node_id: str
    name: str
    role: str
    index: int
    address: str  # its twin-A interconnect address, derived from its index
    state: PeerState
    key_fingerprint: str = ""
    sparkd_version: str = ""
    last_seen: float = 0.0  # time.time() of the last hello exchanged (shown)
    seen: float = 0.0  # time.monotonic() of it (liveness: a wall-clock step never declares a peer down)
    rtt_us: int = 0
    last_error: str = ""
    epoch: int = 0
    protocol_version: int = 0
    boot_id: str = ""
    versions: Versions | None = None
    differences: tuple[Difference, ...] = ()
    deployments: dict[str, PartSummary] = field(default_factory=dict)
