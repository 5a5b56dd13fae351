"""The discovery datagram: round trip, strict validation of every field, size bound, and fuzzing.

A datagram is untrusted input to a root daemon: `decode` must refuse anything malformed with a
ValueError (MalformedAnnouncement) that names the field, and raise nothing else, whatever the bytes.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkd.identity import make_cert
from sparkd.peer.announcement import (
    MAGIC,
    MAX_DATAGRAM,
    Announcement,
    MalformedAnnouncement,
    decode,
    encode,
)

NODE_ID = "abcdefghijklmnop"


@cache
def certificate() -> str:
    """A real self-signed P-256 certificate, as sparkd's identity makes one."""
    return make_cert(ec.generate_private_key(ec.SECP256R1()), NODE_ID)


def announcement(**changes: Any) -> Announcement:
    fields: dict[str, Any] = {
        "node_id": NODE_ID,
        "name": "spark-1",
        "role": "",
        "pairing_open": True,
        "cert_pem": certificate(),
        "sparkd_version": "0.1.0",
        "protocol": 1,
    }
    return Announcement(**(fields | changes))


def fields_of(**changes: Any) -> dict[str, Any]:
    """The JSON object of a valid datagram, with `changes` applied (a value of ... removes the key)."""
    obj: dict[str, Any] = json.loads(encode(announcement()))
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


def refused(data: bytes) -> MalformedAnnouncement:
    with pytest.raises(MalformedAnnouncement) as caught:
        decode(data)
    return caught.value


def test_round_trip() -> None:
    for role in ("head", "worker", ""):
        for pairing_open in (True, False):
            a = announcement(role=role, pairing_open=pairing_open)
            assert decode(encode(a)) == a


def test_datagram_is_compact_json_with_the_magic_key() -> None:
    data = encode(announcement())
    assert b" " not in data.replace(b"BEGIN CERTIFICATE", b"").replace(b"END CERTIFICATE", b"")
    obj = json.loads(data)
    assert obj[MAGIC] == 1 and obj["node_id"] == NODE_ID and obj["pairing_open"] is True
    assert len(data) < 1024  # a P-256 certificate leaves plenty of room under MAX_DATAGRAM


BAD_FIELDS = [
    ("node_id", "ABCDEFGHIJKLMNOP"),  # uppercase
    ("node_id", "abcdefghijklmno"),  # 15
    ("node_id", "abcdefghijklmnopq"),  # 17
    ("node_id", "abcdefghijklmno1"),  # 1 is not base32
    ("node_id", "abcdefghijklmnop\n"),
    ("node_id", 1234567890123456),
    ("node_id", None),
    ("name", ""),
    ("name", "-spark"),
    ("name", "spark 1"),
    ("name", "spark/1"),
    ("name", "s" * 64),
    ("name", "spark\u00e9"),
    ("name", ["spark-1"]),
    ("role", "master"),
    ("role", "HEAD"),
    ("role", None),
    ("role", 0),
    ("pairing_open", 1),
    ("pairing_open", "true"),
    ("pairing_open", None),
    ("cert_pem", ""),
    ("cert_pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),  # no final newline
    ("cert_pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    ("cert_pem", "-----BEGIN CERTIFICATE-----\nAA AA\n-----END CERTIFICATE-----\n"),
    ("cert_pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),  # no body
    ("cert_pem", "x-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    ("cert_pem", "-----BEGIN CERTIFICATE-----\n" + "A" * 64 + "\n-----END CERTIFICATE-----\n" * 2),
    ("cert_pem", 7),
    ("sparkd_version", ""),
    ("sparkd_version", "1" * 33),
    ("sparkd_version", "0.1 beta"),
    ("sparkd_version", "0.1.0\n"),
    ("sparkd_version", 1.0),
    (MAGIC, 0),
    (MAGIC, -1),
    (MAGIC, 65536),
    (MAGIC, "1"),
    (MAGIC, 1.0),
    (MAGIC, True),
    (MAGIC, None),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_malformed_field_is_refused_and_named(field: str, value: Any) -> None:
    error = refused(json.dumps(fields_of(**{field: value})).encode())
    assert error.field == field and field in str(error)


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, v in BAD_FIELDS if f != MAGIC])
def test_constructing_a_malformed_announcement_is_refused(field: str, value: Any) -> None:
    with pytest.raises(MalformedAnnouncement) as caught:
        announcement(**{field: value})
    assert caught.value.field == field


@pytest.mark.parametrize("field", [MAGIC, "node_id", "name", "role", "pairing_open", "cert_pem", "sparkd_version"])
def test_missing_field_is_refused_and_named(field: str) -> None:
    error = refused(json.dumps(fields_of(**{field: ...})).encode())
    assert error.field == field and "missing" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",  # not UTF-8
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"NaN",
        b'{"x": Infinity}',
        b"[" * 2000,  # nesting deeper than the recursion limit
        b'{"a": ' * 400,
    ],
)
def test_not_a_json_object_is_refused(data: bytes) -> None:
    assert refused(data).field == "datagram"


def test_duplicate_key_is_refused() -> None:
    text = json.dumps(fields_of())
    data = text.replace('"role":', '"role": "head", "role":', 1).encode()
    assert refused(data).field == "datagram"


def test_oversize_datagram_is_refused_even_if_valid() -> None:
    data = encode(announcement())
    padded = data[:-1] + b" " * (MAX_DATAGRAM + 1 - len(data)) + b"}"
    assert len(padded) == MAX_DATAGRAM + 1 and json.loads(padded)
    error = refused(padded)
    assert error.field == "datagram" and str(MAX_DATAGRAM) in str(error)
    exact = data[:-1] + b" " * (MAX_DATAGRAM - len(data)) + b"}"
    assert len(exact) == MAX_DATAGRAM and decode(exact) == announcement()  # 2048 bytes is fine


def test_certificate_over_2048_characters_is_refused() -> None:
    long = "-----BEGIN CERTIFICATE-----\n" + ("A" * 64 + "\n") * 32 + "-----END CERTIFICATE-----\n"
    with pytest.raises(MalformedAnnouncement) as caught:
        announcement(cert_pem=long)
    assert caught.value.field == "cert_pem" and "2048" in str(caught.value)
    error = refused(json.dumps(fields_of(cert_pem=long)).encode())  # and on the wire it cannot even fit
    assert error.field == "datagram"


def test_encode_refuses_what_would_not_fit_in_a_datagram() -> None:
    body = ("A" * 64 + "\n") * 30  # under MAX_CERT_PEM characters, but the JSON escapes every newline
    a = announcement(cert_pem=f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    with pytest.raises(MalformedAnnouncement) as caught:
        encode(a)
    assert caught.value.field == "datagram"


def test_encode_revalidates_a_tampered_announcement() -> None:
    a = announcement()
    object.__setattr__(a, "role", "master")
    with pytest.raises(MalformedAnnouncement) as caught:
        encode(a)
    assert caught.value.field == "role"


def test_unknown_keys_and_a_later_protocol_are_accepted() -> None:
    data = json.dumps(fields_of(**{MAGIC: 2, "extra": {"nested": [1, 2]}})).encode()
    assert decode(data) == dataclasses.replace(announcement(), protocol=2)


# Fuzzing: whatever arrives, decode returns an Announcement or raises ValueError, never anything else.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def decodes_or_value_error(data: bytes) -> None:
    try:
        a = decode(data)
    except ValueError:
        return
    assert isinstance(a, Announcement)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 64))
def test_fuzz_bytes(data: bytes) -> None:
    decodes_or_value_error(data)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from([MAGIC, *fields_of()]), JSON, max_size=8), st.booleans())
def test_fuzz_fields(changes: dict[str, Any], drop: bool) -> None:
    obj = fields_of() if not drop else {}
    obj.update(changes)
    decodes_or_value_error(json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=700), st.binary(min_size=1, max_size=8))
def test_fuzz_corrupted_valid_datagram(at: int, junk: bytes) -> None:
    data = encode(announcement())
    decodes_or_value_error(data[:at] + junk + data[at + len(junk) :])
