"""The node key: created atomically and durably, never replaced, refused with advice when unusable."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

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
    assert sorted(p.name for p in state.iterdir()) == [identity.KEY_FILE]  # no temporary file left
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
    assert identity.load_or_create(tmp_path / "state") == identity._identity(key)


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
    # The next start (the disk now working) creates the key.
    identity.load_or_create(state)
    assert sorted(p.name for p in state.iterdir()) == [identity.KEY_FILE]


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


def test_the_key_is_fsynced_after_the_write_and_then_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    real_fsync = os.fsync
    seen: list[tuple[str, bool, int]] = []  # (target, is a directory, size at fsync time)

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.append((os.readlink(f"/proc/self/fd/{fd}"), stat.S_ISDIR(st.st_mode), st.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    identity.load_or_create(state)
    size = (state / identity.KEY_FILE).stat().st_size

    files = [i for i, (_, is_dir, _) in enumerate(seen) if not is_dir]
    assert len(files) == 1
    target, _, synced_size = seen[files[0]]
    assert Path(target).parent == state and Path(target).name.endswith(".tmp")
    assert synced_size == size > 0  # fsynced after the whole key was written
    # The state directory is fsynced after the file (making the rename durable), and its parent when it was created.
    assert (str(state), True, seen[-1][2]) == seen[-1]
    assert files[0] < len(seen) - 1
    assert any(t == str(tmp_path) and is_dir for t, is_dir, _ in seen[: files[0]])


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
