"""The node key: created atomically and durably, never replaced, refused with advice when unusable."""

from __future__ import annotations

import asyncio
import datetime
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from sparkd import identity
from sparkd.errors import IdentityError

ADVICE = "restore it from a backup, or move it away to make sparkd generate a new identity"


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_file(state: Path, content: bytes, mode: int = 0o600) -> Path:
    state.mkdir(mode=0o700, exist_ok=True)
    path = state / identity.KEY_FILE
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _refused(state: Path) -> str:
    with pytest.raises(IdentityError) as e:
        identity.load_or_create(state)
    return str(e.value)


def test_first_start_creates_a_0600_key_in_a_0700_dir(tmp_path: Path) -> None:
    state = tmp_path / "var/lib/sparkd"
    ident = identity.load_or_create(state)
    key = state / identity.KEY_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # No temporary file left: the key and its certificate (public: 0644).
    assert sorted(p.name for p in state.iterdir()) == [identity.CERT_FILE, identity.KEY_FILE]
    cert = state / identity.CERT_FILE
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644 and stat.S_ISREG(cert.lstat().st_mode)
    assert cert.read_text() == ident.cert_pem and ident.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert len(ident.node_id) == 16 and ident.node_id == ident.node_id.lower()


def test_the_same_key_gives_the_same_node_id(tmp_path: Path) -> None:
    first = identity.load_or_create(tmp_path / "state")
    content = (tmp_path / "state" / identity.KEY_FILE).read_bytes()
    again = identity.load_or_create(tmp_path / "state")
    once_more = identity.load_or_create(tmp_path / "state")
    assert first == again == once_more
    assert (tmp_path / "state" / identity.KEY_FILE).read_bytes() == content


def test_an_existing_p256_key_is_used(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _key_file(tmp_path / "state", _pem(key))
    ident = identity.load_or_create(tmp_path / "state")
    expected = identity._identity(key)
    assert (ident.node_id, ident.fingerprint, ident.public_key_der) == (
        expected.node_id,
        expected.fingerprint,
        expected.public_key_der,
    )
    assert identity.cert_public_key(ident.cert_pem) == expected.public_key_der
    assert (tmp_path / "state" / identity.KEY_FILE).read_bytes() == _pem(key)


def test_an_empty_key_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "state", b"")
    message = _refused(tmp_path / "state")
    assert str(path) in message and "is empty" in message and ADVICE in message
    assert "its peers must then pair with it again" in message
    assert path.exists() and path.read_bytes() == b""


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"\x00\xff garbage \x13\x37", "is not a PEM file"),
        (b"  \n\t\n", "is empty"),
        (b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", "does not hold a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\n", "does not hold a PEM private key"),
        (b"x" * (identity.MAX_KEY_BYTES + 10), "too large"),
    ],
)
def test_garbage_is_refused_and_left_alone(tmp_path: Path, content: bytes, what: str) -> None:
    path = _key_file(tmp_path / "state", content)
    message = _refused(tmp_path / "state")
    assert str(path) in message and what in message and ADVICE in message
    assert path.read_bytes() == content


def test_a_public_key_is_refused(tmp_path: Path) -> None:
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = _key_file(tmp_path / "state", public)
    message = _refused(tmp_path / "state")
    assert str(path) in message and "does not hold a PEM private key" in message and ADVICE in message


def test_an_encrypted_key_is_refused(tmp_path: Path) -> None:
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = _key_file(tmp_path / "state", encrypted)
    message = _refused(tmp_path / "state")
    assert str(path) in message and "encrypted" in message and ADVICE in message


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "not an EC P-256 private key"),
        (ed25519.Ed25519PrivateKey.generate, "not an EC P-256 private key"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "on curve secp384r1"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "on curve secp256k1"),
    ],
    ids=["rsa", "ed25519", "p384", "secp256k1"],
)
def test_a_key_of_another_kind_is_refused(
    tmp_path: Path,
    make: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey],
    what: str,
) -> None:
    content = _pem(make())
    path = _key_file(tmp_path / "state", content)
    message = _refused(tmp_path / "state")
    assert str(path) in message and what in message and ADVICE in message
    assert path.read_bytes() == content


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o666, 0o620])
def test_a_key_open_to_group_or_others_is_refused_with_chmod(tmp_path: Path, mode: int) -> None:
    content = _pem(ec.generate_private_key(ec.SECP256R1()))
    path = _key_file(tmp_path / "state", content, mode)
    message = _refused(tmp_path / "state")
    assert str(path) in message and f"chmod 600 {path}" in message and f"{mode:04o}" in message
    assert path.read_bytes() == content and stat.S_IMODE(path.stat().st_mode) == mode
    path.chmod(0o600)
    identity.load_or_create(tmp_path / "state")  # fixed by the chmod


def test_bad_content_is_reported_before_loose_permissions(tmp_path: Path) -> None:
    _key_file(tmp_path / "state", b"", 0o644)
    message = _refused(tmp_path / "state")
    assert "is empty" in message and "chmod" not in message


def test_a_directory_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state" / identity.KEY_FILE).mkdir(parents=True)
    message = _refused(tmp_path / "state")
    assert "is not a regular file" in message and ADVICE in message


def test_a_dangling_symlink_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    link = state / identity.KEY_FILE
    link.symlink_to(tmp_path / "backup/node.key")
    message = _refused(state)
    assert str(link) in message and "symbolic link" in message
    assert link.is_symlink() and not link.exists()


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    message = _refused(tmp_path / "state")
    assert "is not a directory" in message and "state_dir" in message
    assert (tmp_path / "state").read_text() == "not a directory"


def test_a_failed_write_leaves_no_temporary_file_and_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    real_fsync = os.fsync
    calls: list[int] = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    message = _refused(state)
    assert "cannot create the node key" in message and "Input/output error" in message
    assert list(state.iterdir()) == []
    # The next start (the disk now working) creates the key and its certificate.
    identity.load_or_create(state)
    assert sorted(p.name for p in state.iterdir()) == [identity.CERT_FILE, identity.KEY_FILE]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    assert "No space left on device" in _refused(state)
    assert list(state.iterdir()) == []


def test_a_stale_temporary_file_does_not_block_creation(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / f".{identity.KEY_FILE}.tmp").write_bytes(b"half a key")
    identity.load_or_create(state)
    assert (state / identity.KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_the_key_and_the_cert_are_each_fsynced_before_their_rename_and_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    real_fsync, real_replace = os.fsync, os.replace
    # ("fsync", target, is a directory, size at fsync time) or ("replace", source, destination)
    seen: list[tuple[str, str, bool, int] | tuple[str, str, str]] = []

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), stat.S_ISDIR(st.st_mode), st.st_size))
        real_fsync(fd)

    def recording_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    identity.load_or_create(state)
    key, cert = state / identity.KEY_FILE, state / identity.CERT_FILE

    # The new state directory's entry in its parent first; then, for the key and then the certificate: the
    # temporary file fsynced once wholly written, renamed onto its name, and the directory fsynced.
    assert len(seen) == 7
    assert seen[0][:3] == ("fsync", str(tmp_path), True)
    for at, final in ((1, key), (4, cert)):
        synced, renamed, dir_synced = seen[at], seen[at + 1], seen[at + 2]
        assert synced[0] == "fsync" and synced[2] is False
        tmp = Path(str(synced[1]))
        assert tmp.parent == state and tmp.name.startswith(f".{final.name}.") and tmp.name.endswith(".tmp")
        assert synced[3] == final.stat().st_size > 0  # fsynced after the whole file was written
        assert renamed == ("replace", str(tmp), str(final))
        assert dir_synced[:3] == ("fsync", str(state), True)


def test_loading_an_existing_key_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    identity.load_or_create(tmp_path / "state")

    def no_fsync(fd: int) -> None:
        raise AssertionError("an existing key must not be rewritten")

    monkeypatch.setattr(os, "fsync", no_fsync)
    identity.load_or_create(tmp_path / "state")


def test_sparkd_run_reports_an_identity_error_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real `sparkd run` on a sysroot whose node key is empty: a clear message, exit 2, key kept."""
    from sparkd import log
    from sparkd.__main__ import main

    (tmp_path / "var/lib").mkdir(parents=True)
    key = _key_file(tmp_path / "var/lib/sparkd", b"")
    config_file = tmp_path / "sparkd.toml"
    config_file.write_text(f'sysroot = "{tmp_path}"\n[node]\nname = "spark1"\n')
    monkeypatch.setattr(log, "configure", lambda fmt: None)

    assert main(["run", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sparkd: {key}: is empty") and ADVICE in err
    assert key.read_bytes() == b""


def test_the_daemon_reads_its_key_in_a_child_process_without_mapping_cryptography(tmp_path: Path) -> None:
    import asyncio
    import subprocess
    import sys

    from sparkd.host.runner import SubprocessRunner

    state = tmp_path / "state"
    first = asyncio.run(identity.load_in_subprocess(SubprocessRunner(), state))  # creates it
    assert (
        first == identity.load_or_create(state) == asyncio.run(identity.load_in_subprocess(SubprocessRunner(), state))
    )
    _key_file(state, b"", 0o600)
    with pytest.raises(IdentityError, match="is empty"):
        asyncio.run(identity.load_in_subprocess(SubprocessRunner(), state))
    probe = "import sys, sparkd.system, sparkd.__main__; print('cryptography' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


# --- node.crt: the self-signed certificate of the key -------------------------------------------------------------


def _self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, name: str = "x.node.sparkd") -> str:
    """A self-signed certificate for any key (sparkd only makes P-256 ones)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_der(state: Path) -> bytes:
    key = serialization.load_pem_private_key((state / identity.KEY_FILE).read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_certs_public_key_is_the_node_keys(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ident = identity.load_or_create(state)
    assert identity.cert_public_key(ident.cert_pem) == _key_der(state) == ident.public_key_der
    assert identity.node_id_of(identity.cert_public_key(ident.cert_pem)) == (ident.node_id, ident.fingerprint)
    assert (state / identity.CERT_FILE).read_text() == ident.cert_pem


def test_the_cert_is_a_self_signed_leaf_named_after_the_node_id(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path / "state")
    cert = x509.load_pem_x509_certificate(ident.cert_pem.encode())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert identity.tls_name(ident.node_id) == f"{ident.node_id}.node.sparkd"
    assert san.get_values_for_type(x509.DNSName) == [f"{ident.node_id}.node.sparkd"]
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{ident.node_id}.node.sparkd"
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))  # self-signed
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=365 * 99)


@pytest.mark.parametrize("damage", ["deleted", "foreign", "garbage", "empty", "rsa"])
def test_a_missing_or_foreign_cert_is_rewritten_and_the_key_left_alone(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    first = identity.load_or_create(state)
    key_bytes = (state / identity.KEY_FILE).read_bytes()
    cert = state / identity.CERT_FILE
    if damage == "deleted":
        cert.unlink()
    elif damage == "foreign":
        cert.write_text(identity.load_or_create(tmp_path / "other").cert_pem)
    elif damage == "garbage":
        cert.write_bytes(b"-----BEGIN CERTIFICATE-----\n\xff\x00 not base64\n-----END CERTIFICATE-----\n")
    elif damage == "empty":
        cert.write_bytes(b"")
    else:
        cert.write_text(_self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    again = identity.load_or_create(state)
    assert (again.node_id, again.fingerprint, again.public_key_der) == (
        first.node_id,
        first.fingerprint,
        first.public_key_der,
    )
    assert identity.cert_public_key(again.cert_pem) == first.public_key_der
    assert cert.read_text() == again.cert_pem and stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert (state / identity.KEY_FILE).read_bytes() == key_bytes
    assert sorted(p.name for p in state.iterdir()) == [identity.CERT_FILE, identity.KEY_FILE]


@pytest.mark.parametrize("kind", ["symlink-to-foreign-cert", "dangling-symlink", "fifo"])
def test_a_cert_that_is_a_link_or_a_fifo_is_replaced_not_followed(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    first = identity.load_or_create(state)
    cert = state / identity.CERT_FILE
    cert.unlink()
    target = tmp_path / "elsewhere.pem"
    foreign = identity.load_or_create(tmp_path / "other").cert_pem
    if kind == "symlink-to-foreign-cert":
        target.write_text(foreign)
        cert.symlink_to(target)
    elif kind == "dangling-symlink":
        cert.symlink_to(target)
    else:
        os.mkfifo(cert)
    again = identity.load_or_create(state)  # never blocks on the FIFO
    assert again.node_id == first.node_id
    assert stat.S_ISREG(cert.lstat().st_mode) and not cert.is_symlink()
    assert cert.read_text() == again.cert_pem
    assert identity.cert_public_key(again.cert_pem) == first.public_key_der
    # The link's target was not written through.
    if kind == "symlink-to-foreign-cert":
        assert target.read_text() == foreign
    else:
        assert not target.exists()


def test_a_directory_in_place_of_the_cert_is_refused_and_the_key_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    identity.load_or_create(state)
    key_bytes = (state / identity.KEY_FILE).read_bytes()
    cert = state / identity.CERT_FILE
    cert.unlink()
    cert.mkdir()
    message = _refused(state)
    assert str(cert) in message and "cannot write the node certificate" in message
    assert cert.is_dir() and (state / identity.KEY_FILE).read_bytes() == key_bytes
    assert sorted(p.name for p in state.iterdir()) == [identity.CERT_FILE, identity.KEY_FILE]  # no temporary file


def test_a_failed_cert_write_keeps_the_new_key_and_the_next_start_writes_the_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    real_fsync = os.fsync
    files_synced: list[int] = []

    def failing_fsync(fd: int) -> None:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            files_synced.append(fd)
            if len(files_synced) == 2:  # the certificate's temporary file
                raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    message = _refused(state)
    assert "cannot write the node certificate" in message and "Input/output error" in message
    assert sorted(p.name for p in state.iterdir()) == [identity.KEY_FILE]
    key_bytes = (state / identity.KEY_FILE).read_bytes()
    ident = identity.load_or_create(state)
    assert (state / identity.KEY_FILE).read_bytes() == key_bytes
    assert identity.cert_public_key((state / identity.CERT_FILE).read_text()) == ident.public_key_der


def test_read_key_pem_gives_node_key_and_refuses_when_it_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    identity.load_or_create(state)
    assert identity.read_key_pem(state) == (state / identity.KEY_FILE).read_bytes()
    (state / identity.KEY_FILE).unlink()
    with pytest.raises(IdentityError, match="the node key is gone"):
        identity.read_key_pem(state)


@pytest.mark.parametrize(
    ("pem", "what"),
    [
        ("", "not a PEM certificate"),
        ("garbage", "not a PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\n" + "A" * 3000 + "\n-----END CERTIFICATE-----\n", "at most 2048"),
        ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", None),
    ],
    ids=["empty", "not-pem", "too-long", "not-a-certificate"],
)
def test_cert_public_key_refuses_what_is_not_a_certificate(pem: str, what: str | None) -> None:
    with pytest.raises(ValueError, match=what):
        identity.cert_public_key(pem)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ],
    ids=["rsa", "p384"],
)
def test_cert_public_key_refuses_keys_other_than_p256(
    make: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey],
) -> None:
    with pytest.raises(ValueError, match="not an EC P-256 key"):
        identity.cert_public_key(_self_signed(make()))


def test_cert_node_id_in_subprocess_matches_the_identity(tmp_path: Path) -> None:
    from sparkd.host.runner import SubprocessRunner

    ident = identity.load_or_create(tmp_path / "state")
    got = asyncio.run(identity.cert_node_id_in_subprocess(SubprocessRunner(), ident.cert_pem))
    assert got == (ident.node_id, ident.fingerprint)


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n" + "A" * 3000 + "\n-----END CERTIFICATE-----\n",  # refused before the child
        "-----BEGIN CERTIFICATE-----\né\n-----END CERTIFICATE-----\n",  # not ASCII: refused before the child
        "-----BEGIN CERTIFICATE-----\n\0\n-----END CERTIFICATE-----\n",  # a NUL: refused before the child
        "rsa",
        "p384",
    ],
    ids=["empty", "not-pem", "not-a-certificate", "too-long", "not-ascii", "nul", "rsa", "p384"],
)
def test_cert_node_id_in_subprocess_refuses_what_sparkd_would_not_make(pem: str) -> None:
    from sparkd.host.runner import SubprocessRunner

    if pem == "rsa":
        pem = _self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif pem == "p384":
        pem = _self_signed(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError):
        asyncio.run(identity.cert_node_id_in_subprocess(SubprocessRunner(), pem))
