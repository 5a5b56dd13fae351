"""The node's key pair and the node ID derived from it.

Generated on first start in the state directory (ECDSA P-256, PEM, mode 0600), never
derived from /etc/machine-id (Sparks ship with duplicates). The node ID is the first
80 bits of the SHA-256 of the public key (DER), in lowercase base32: stable for the
life of the key, and the same key always gives the same ID. Pairing and mutual TLS
pin this key: `node.crt` is a self-signed leaf certificate for it (CA:FALSE, the DNS
name `<node ID>.node.sparkd`, valid for 100 years: trust comes from pinning the key,
never from a CA or a date). The certificate is derived data: one that is missing or
does not match the key is written again; the key never is.

The key is written atomically and durably (a 0600 temporary file in the same directory,
fsynced, renamed onto `node.key`, then the directory fsynced), so a crash leaves either no
key or a whole one. An existing `node.key` is never replaced or overwritten, whatever it
holds: one that cannot be used (unreadable, empty, not PEM, not an EC P-256 private key,
readable by group or others) stops start-up with an `IdentityError` saying what to do.

The daemon reads its key in a short-lived child process (`python -m sparkd.identity STATE_DIR`,
through the host's `Runner`: `load_in_subprocess`), which prints the public identity: the
cryptography library (about 8 MiB resident) is then never mapped into the long-running
daemon. Nothing private crosses the pipe.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkd.errors import IdentityError
from sparkd.files import NotARegularFile, read_regular

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from sparkd.host.protocols import Runner

KEY_FILE = "node.key"
CERT_FILE = "node.crt"
MAX_KEY_BYTES = 64 * 1024  # a P-256 PEM key is about 240 bytes
MAX_CERT_CHARS = 2048  # a P-256 self-signed certificate is about 600 characters of PEM
CERT_YEARS = 100
ADVICE = (
    "this file is the node's identity for pairing; restore it from a backup, or move it away to make "
    "sparkd generate a new identity (its peers must then pair with it again)"
)


@dataclass(frozen=True)
class Identity:
    """This node's identity."""

    node_id: str
    fingerprint: str  # hex SHA-256 of the public key (DER)
    public_key_der: bytes
    cert_pem: str = ""  # node.crt: the self-signed certificate of the key, for TLS


def node_id_of(der: bytes) -> tuple[str, str]:
    """(node ID, hex fingerprint) of a public key (SubjectPublicKeyInfo DER)."""
    digest = hashlib.sha256(der).digest()
    return base64.b32encode(digest[:10]).decode().lower(), digest.hex()


def tls_name(node_id: str) -> str:
    """The DNS name in a node's certificate (what a TLS client checks)."""
    return f"{node_id}.node.sparkd"


def _identity(key: ec.EllipticCurvePrivateKey, cert_pem: str = "") -> Identity:
    from cryptography.hazmat.primitives import serialization

    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    node_id, fingerprint = node_id_of(der)
    return Identity(node_id=node_id, fingerprint=fingerprint, public_key_der=der, cert_pem=cert_pem)


def cert_public_key(cert_pem: str) -> bytes:
    """The public key (DER) of a PEM certificate from a peer; ValueError if it is not one sparkd would make."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if len(cert_pem) > MAX_CERT_CHARS or not cert_pem.startswith("-----BEGIN CERTIFICATE-----"):
        raise ValueError(f"not a PEM certificate of at most {MAX_CERT_CHARS} characters")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the certificate's key is not an EC P-256 key")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_cert(key: ec.EllipticCurvePrivateKey, node_id: str) -> str:
    """The self-signed certificate sparkd makes for `key` under the name of `node_id` (see the module docstring)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, tls_name(node_id))])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(tls_name(node_id))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ensure_cert(state_dir: Path, key: ec.EllipticCurvePrivateKey) -> Identity:
    """The identity with its certificate, (re)writing node.crt when it is missing or not the key's."""
    ident = _identity(key)
    path = state_dir / CERT_FILE
    try:
        pem = read_regular(path, MAX_CERT_CHARS, follow_symlinks=False)[0].decode()
        if cert_public_key(pem) == ident.public_key_der:
            return dataclasses.replace(ident, cert_pem=pem)
    except (OSError, NotARegularFile, ValueError, UnicodeDecodeError):
        pass
    pem = make_cert(key, ident.node_id)
    try:
        _write_atomically(state_dir, path, pem.encode(), 0o644)
    except OSError as e:
        raise IdentityError(f"{path}: cannot write the node certificate ({e.strerror or e})") from e
    return dataclasses.replace(ident, cert_pem=pem)


def load_or_create(state_dir: Path) -> Identity:
    """Loads the node key from `state_dir`, creating it (atomically, 0600) on first start.

    Raises IdentityError if the key exists but cannot be used, or cannot be created.
    """
    path = state_dir / KEY_FILE
    found = _read(path)
    if found is None:
        return _create(state_dir, path)
    pem, mode = found
    key = _parse(path, pem)  # first: if the content is bad, a chmod would not help
    if mode & 0o077:
        raise IdentityError(
            f"{path}: the node's private key is open to group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}` and start sparkd again (if others may have read it, move it away to make "
            "sparkd generate a new identity; its peers must then pair with it again)"
        )
    return _ensure_cert(state_dir, key)


def read_key_pem(state_dir: Path) -> bytes:
    """node.key's PEM, for TLS (gRPC parses it; `load_or_create` has checked the file first)."""
    found = _read(state_dir / KEY_FILE)
    if found is None:
        raise IdentityError(f"{state_dir / KEY_FILE}: the node key is gone; restart sparkd")
    return found[0]


def _unusable(path: Path, what: str) -> IdentityError:
    return IdentityError(f"{path}: {what}; {ADVICE}")


def _read(path: Path) -> tuple[bytes, int] | None:
    """The key file's bytes (at most MAX_KEY_BYTES + 1) and mode bits, or None when there is no key file."""
    try:
        return read_regular(path, MAX_KEY_BYTES)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise _unusable(path, "is a symbolic link to a file that does not exist") from None
        return None
    except NotADirectoryError as e:
        raise IdentityError(
            f"{path}: the state directory {path.parent} (or a folder above it) is not a directory; "
            "point state_dir in the config at a directory, or move that file away"
        ) from e
    except NotARegularFile as e:
        raise _unusable(path, "is not a regular file") from e
    except OSError as e:
        raise _unusable(path, f"cannot be read ({e.strerror}); check the file and its permissions") from e


def _parse(path: Path, pem: bytes) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key in `pem`, or IdentityError saying what the file holds instead."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not pem.strip():
        raise _unusable(path, "is empty")
    if len(pem) > MAX_KEY_BYTES:
        raise _unusable(path, f"is larger than {MAX_KEY_BYTES} bytes, too large to be a node key")
    if b"-----BEGIN " not in pem:
        raise _unusable(path, "is not a PEM file (it has no -----BEGIN line)")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as e:  # encrypted: cryptography asks for a password
        raise _unusable(path, "holds an encrypted private key; sparkd needs it unencrypted") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise _unusable(path, "does not hold a PEM private key that can be read") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _unusable(path, f"holds a {type(key).__name__}, not an EC P-256 private key")
    if not isinstance(key.curve, ec.SECP256R1):
        raise _unusable(path, f"holds an EC key on curve {key.curve.name}, not an EC P-256 (secp256r1) private key")
    return key


def _create(state_dir: Path, path: Path) -> Identity:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        if _make_dir(state_dir):
            _fsync_dir(state_dir.parent)  # the new directory's entry
        _write_atomically(state_dir, path, pem, 0o600)
    except OSError as e:
        where = f" on {e.filename}" if e.filename else ""
        raise IdentityError(
            f"{path}: cannot create the node key ({e.strerror or e}{where}); check that the state directory "
            "(state_dir in the config) can be written by sparkd and that the disk has room"
        ) from e
    return _ensure_cert(state_dir, key)


def _make_dir(directory: Path) -> bool:
    """Creates `directory` 0700 (parents included); False if it existed (its mode is left alone)."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return False
    os.chmod(directory, 0o700)  # whatever the umask
    return True


def _write_atomically(directory: Path, path: Path, data: bytes, mode: int) -> None:
    """Writes `data` to `path` through a fresh temporary file (`mode`) in `directory`; durable on return.

    The temporary file is removed on any failure. O_EXCL: never opens a file (or a link) that is there already; a
    random name: a temporary file left by a crash does not block the next start.
    """
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:  # os.write is unbuffered: nothing is left to flush once it returns
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Makes a rename or creation in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def to_json(ident: Identity) -> str:
    return json.dumps(
        {
            "node_id": ident.node_id,
            "fingerprint": ident.fingerprint,
            "public_key_der": ident.public_key_der.hex(),
            "cert_pem": ident.cert_pem,
        }
    )


async def load_in_subprocess(runner: Runner, state_dir: Path, timeout: float = 60.0) -> Identity:
    """`load_or_create` in a child process (see the module docstring); raises IdentityError as it would."""
    result = await runner.run([sys.executable, "-I", "-m", "sparkd.identity", str(state_dir)], timeout)
    if result.returncode == 2:
        raise IdentityError(result.stderr.strip()[:2000])
    if result.returncode != 0:
        raise IdentityError(
            f"could not read the node key in {state_dir}: the helper exited {result.returncode}: "
            f"{result.stderr.strip()[-1000:]}"
        )
    try:
        doc = json.loads(result.stdout)
        ident = Identity(
            str(doc["node_id"]), str(doc["fingerprint"]), bytes.fromhex(doc["public_key_der"]), str(doc["cert_pem"])
        )
    except (ValueError, KeyError, TypeError) as e:
        raise IdentityError(f"could not read the node key in {state_dir}: the helper's answer is unreadable") from e
    digest = hashlib.sha256(ident.public_key_der).digest()
    if digest.hex() != ident.fingerprint or base64.b32encode(digest[:10]).decode().lower() != ident.node_id:
        raise IdentityError(f"could not read the node key in {state_dir}: the helper's answer does not add up")
    return ident


async def cert_node_id_in_subprocess(runner: Runner, cert_pem: str, timeout: float = 30.0) -> tuple[str, str]:
    """(node ID, fingerprint) of a peer's certificate, parsed in a child process (see the module docstring);
    ValueError if it is not a P-256 certificate."""
    if len(cert_pem) > MAX_CERT_CHARS or not cert_pem.isascii() or "\0" in cert_pem:
        raise ValueError(f"not a PEM certificate of at most {MAX_CERT_CHARS} ASCII characters")
    result = await runner.run([sys.executable, "-I", "-m", "sparkd.identity", "--cert-id", cert_pem], timeout)
    node_id, _, fingerprint = result.stdout.strip().partition(" ")
    if result.returncode != 0 or len(node_id) != 16 or len(fingerprint) != 64:
        raise ValueError(result.stderr.strip()[-300:] or "the certificate cannot be read")
    return node_id, fingerprint


def main(argv: list[str] | None = None) -> int:
    """`python -m sparkd.identity STATE_DIR`: prints this node's public identity as JSON.
    `python -m sparkd.identity --cert-id PEM`: prints a certificate's node ID and fingerprint."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--cert-id":
        try:
            node_id, fingerprint = node_id_of(cert_public_key(args[1]))
        except ValueError as e:
            print(f"not a usable certificate: {e}", file=sys.stderr)
            return 2
        print(node_id, fingerprint)
        return 0
    if len(args) != 1 or not args[0].startswith("/"):
        print("usage: python -m sparkd.identity /ABSOLUTE/STATE_DIR", file=sys.stderr)
        return 1
    try:
        ident = load_or_create(Path(args[0]))
    except IdentityError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(to_json(ident))
    return 0


if __name__ == "__main__":
    sys.exit(main())
