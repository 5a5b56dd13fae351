"""Discovery announcements: what a node says about itself on the cable, and its datagram (compact JSON).

Every field is validated strictly on the way in and on the way out: a datagram is untrusted input to a
root daemon. `sparkd.peer.discovery` sends and hears them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

#: Largest datagram accepted (and sent); larger ones are refused, not truncated.
MAX_DATAGRAM = 2048
MAX_CERT_PEM = 2048
#: The magic key of the JSON object; its value is the discovery protocol version.
MAGIC = "sparkd_discovery"
PROTOCOL = 1

_NODE_ID = re.compile(r"[a-z2-7]{16}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_-]{0,31}")
_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/=]{1,76}\n)+-----END CERTIFICATE-----\n")
ROLES = ("head", "worker", "")


class MalformedAnnouncement(ValueError):
    """An announcement (or datagram) that is not acceptable; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"discovery announcement: {field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Announcement:
    """What a node says about itself on the cable. Constructing one validates every field."""

    node_id: str  # 16 chars of lowercase base32 (sparkd.identity)
    name: str  # a label such as spark-1
    role: str  # "head", "worker", or "" while unpaired
    pairing_open: bool  # a pairing token is live on this node
    cert_pem: str  # the node's self-signed certificate (claimed, verified only by pairing)
    sparkd_version: str
    protocol: int = PROTOCOL

    def __post_init__(self) -> None:
        _check_str("node_id", self.node_id, _NODE_ID, "16 characters of lowercase base32 ([a-z2-7])")
        _check_str("name", self.name, _NAME, "a label of 1-63 characters [A-Za-z0-9._-], starting alphanumeric")
        if not isinstance(self.role, str) or self.role not in ROLES:
            raise MalformedAnnouncement("role", 'must be "head", "worker" or "" (unpaired)')
        if not isinstance(self.pairing_open, bool):
            raise MalformedAnnouncement("pairing_open", "must be a boolean")
        if isinstance(self.cert_pem, str) and len(self.cert_pem) > MAX_CERT_PEM:
            raise MalformedAnnouncement("cert_pem", f"longer than {MAX_CERT_PEM} characters")
        _check_str("cert_pem", self.cert_pem, _CERT, "one PEM certificate (BEGIN/END CERTIFICATE, base64 lines)")
        _check_str("sparkd_version", self.sparkd_version, _VERSION, "1-32 characters [A-Za-z0-9.+~_-]")
        if type(self.protocol) is not int or not 1 <= self.protocol <= 0xFFFF:
            raise MalformedAnnouncement("protocol", "must be an integer from 1 to 65535")


def _check_str(field: str, value: object, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise MalformedAnnouncement(field, f"must be {what}")


_FIELDS = [f.name for f in dataclasses.fields(Announcement) if f.name != "protocol"]


def encode(a: Announcement) -> bytes:
    """The datagram for `a`: compact JSON with the magic key. Raises ValueError if over MAX_DATAGRAM."""
    Announcement(**dataclasses.asdict(a))  # re-validate: a caller may have bypassed __init__
    obj: dict[str, Any] = {MAGIC: a.protocol, **{k: getattr(a, k) for k in _FIELDS}}
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(data) > MAX_DATAGRAM:
        raise MalformedAnnouncement("datagram", f"{len(data)} bytes encoded, more than {MAX_DATAGRAM}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedAnnouncement("datagram", "a key appears twice")
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedAnnouncement("datagram", f"{name} is not JSON")


def decode(data: bytes) -> Announcement:
    """Parses and validates a datagram. Raises ValueError (MalformedAnnouncement) naming the field.

    Keys other than the magic and the fields are ignored (a later protocol may add some, never
    change these); a later protocol version is accepted as long as these fields are valid.
    """
    if len(data) > MAX_DATAGRAM:
        raise MalformedAnnouncement("datagram", f"{len(data)} bytes, more than {MAX_DATAGRAM}")
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: deep nesting
        raise MalformedAnnouncement("datagram", f"not UTF-8 JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise MalformedAnnouncement("datagram", "not a JSON object")
    if MAGIC not in obj:
        raise MalformedAnnouncement(MAGIC, "missing: not a sparkd discovery datagram")
    for key in _FIELDS:
        if key not in obj:
            raise MalformedAnnouncement(key, "missing")
    try:
        return Announcement(**{k: obj[k] for k in _FIELDS}, protocol=obj[MAGIC])
    except MalformedAnnouncement as e:
        if e.field == "protocol":
            raise MalformedAnnouncement(MAGIC, "the protocol version must be an integer from 1 to 65535") from None
        raise
