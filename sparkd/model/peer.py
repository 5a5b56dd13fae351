"""Peers as this daemon sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sparkd.model.deployment import PartSummary


class PeerState(Enum):
    """Mirrors sparkd.v1.PeerState (name after the prefix)."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class PeerInfo:
    """One peer."""

    address: str
    state: PeerState
    node_id: str = ""
    name: str = ""
    role: str = ""
    index: int = 0
    sparkd_version: str = ""
    last_seen: float = 0.0
    rtt_us: int = 0
    last_error: str = ""
    deployments: dict[str, PartSummary] = field(default_factory=dict)
