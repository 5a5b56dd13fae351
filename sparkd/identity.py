"""The node's key pair and the node ID derived from it.

Generated on first start in the state directory (ECDSA P-256, PEM, mode 0600), never
derived from /etc/machine-id (Sparks ship with duplicates). The node ID is the first
80 bits of the SHA-256 of the public key (DER), in lowercase base32: stable for the
life of the key, and the same key always gives the same ID. Pairing and mutual TLS
(a later revision) pin this key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEY_FILE = "node.key"


@dataclass(frozen=True)
class Identity:
    """This node's identity."""

    node_id: str
    fingerprint: str  # hex SHA-256 of the public key (DER)
    public_key_der: bytes


def _identity(key: ec.EllipticCurvePrivateKey) -> Identity:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).digest()
    node_id = base64.b32encode(digest[:10]).decode().lower()
    return Identity(node_id=node_id, fingerprint=digest.hex(), public_key_der=der)


def load_or_create(state_dir: Path) -> Identity:
    """Loads the node key from `state_dir`, creating it (atomically, 0600) on first start."""
    path = state_dir / KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{KEY_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return _identity(loaded)
