"""Host actions: the steps of a host plan."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ActionKind(Enum):
    """Mirrors sparkd.v1.HostActionKind (name after the prefix)."""

    SET_MTU = "SET_MTU"
    ADD_ADDRESS = "ADD_ADDRESS"
    REMOVE_ADDRESS = "REMOVE_ADDRESS"
    SET_LINK_UP = "SET_LINK_UP"
    WRITE_FILE = "WRITE_FILE"


@dataclass(frozen=True)
class HostAction:
    """One change to the host. `current`/`desired` are printable values."""

    kind: ActionKind
    target: str
    current: str
    desired: str
    description: str
    # For WRITE_FILE: the bytes to write (not shown to people).
    content: bytes = b""
