"""The model manifest: computed on FakeHost's temporary sysroot (the real `Sysroot` adapter), compared purely.

Two FakeHosts stand for two nodes with their own copies of a model at /models/llama.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from sparkd.engine import manifest as collector
from sparkd.engine.manifest import ADVICE, MAX_SHOWN, Manifest, compare, compare_entries, manifest_digest, size_text
from sparkd.errors import PreconditionFailed
from sparkd.host import sysroot
from tests.fakes.host import FakeHost

MODEL = "/models/llama"
CONFIG = b'{"model_type": "llama", "num_hidden_layers": 2}'
FILES = {
    "config.json": CONFIG,
    "tokenizer.json": b'{"version": "1.0"}',
    "model-00001-of-00002.safetensors": b"\x01" * 4096,
    "model-00002-of-00002.safetensors": b"\x02" * 1000,
    "original/params.json": b"{}",
}


def node(tmp_path: Path, name: str, files: dict[str, bytes] = FILES) -> FakeHost:
    host = FakeHost(tmp_path / name)
    for rel, data in files.items():
        path = host.root / MODEL.lstrip("/") / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return host


def model_dir(host: FakeHost) -> Path:
    return host.root / MODEL.lstrip("/")


def compute(host: FakeHost, **kw: Any) -> Manifest:
    return collector.compute(host.sysroot, MODEL, node="spark1", **kw)


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    m = compute(node(tmp_path, "a"))
    assert [(path, size) for path, size, _ in m.entries] == sorted((rel, len(data)) for rel, data in FILES.items())
    assert all(sha == hashlib.sha256(FILES[path]).hexdigest() for path, _, sha in m.entries)
    lines = "".join(f"{path}\0{size}\0{sha}\n" for path, size, sha in m.entries).encode()
    assert m.digest == hashlib.sha256(lines).hexdigest() == manifest_digest(m.entries)
    assert m.config_json == CONFIG
    assert m.total_bytes == sum(len(d) for d in FILES.values())


def test_same_files_same_digest(tmp_path: Path) -> None:
    a, b = compute(node(tmp_path, "a")), compute(node(tmp_path, "b"))
    assert a == b
    assert compare(a, b, "spark1", "spark2") == []


def test_a_changed_byte_is_named(tmp_path: Path) -> None:
    a = compute(node(tmp_path, "a"))
    host = node(tmp_path, "b")
    shard = model_dir(host) / "model-00001-of-00002.safetensors"
    shard.write_bytes(b"\x01" * 4095 + b"\x00")
    b = compute(host)
    assert a.digest != b.digest
    ours, theirs = hashlib.sha256(FILES[shard.name]).hexdigest(), hashlib.sha256(shard.read_bytes()).hexdigest()
    assert compare(a, b, "spark1", "spark2") == [
        f"model file model-00001-of-00002.safetensors differs: spark1 has 4.1 kB sha256 {ours[:12]}…, "
        f"spark2 has 4.1 kB sha256 {theirs[:12]}…"
    ]


def test_missing_and_extra_files(tmp_path: Path) -> None:
    a = compute(node(tmp_path, "a"))
    files = {k: v for k, v in FILES.items() if k != "tokenizer.json"} | {"notes.txt": b"mine"}
    b = compute(node(tmp_path, "b", files))
    assert compare(a, b, "spark1", "spark2") == ["spark2 has an extra file notes.txt", "spark2 lacks tokenizer.json"]
    # what the peer protocol carries: plain (path, size, sha256) tuples
    plain = [(e.path, e.size, e.sha256) for e in b.entries]
    assert compare_entries(a.entries, plain, "spark1", "spark2") == compare(a, b, "spark1", "spark2")


def test_compare_shows_five_and_counts_the_rest() -> None:
    local = Manifest.of([(f"f{i}", 1, "a" * 64) for i in range(8)])
    remote = Manifest.of([])
    lines = compare(local, remote, "spark1", "spark\n2")
    assert len(lines) == MAX_SHOWN + 1
    assert lines[0] == "spark?2 lacks f0"
    assert lines[-1] == "and 3 more differing files"


def test_compare_same_files_other_digest() -> None:
    local = Manifest.of([("a", 1, "a" * 64)])
    remote = Manifest(local.entries, "b" * 64)
    assert compare(local, remote, "spark1", "spark2") == [
        f"the manifest digests differ: spark1 has {local.digest}, spark2 has {'b' * 64}"
    ]


def test_size_text() -> None:
    assert [size_text(n) for n in (731, 9_100_000, 4_900_000_000, 10**19)] == ["731 B", "9.1 MB", "4.9 GB", "over 1 EB"]


def test_missing_directory_or_config_is_refused(tmp_path: Path) -> None:
    host = FakeHost(tmp_path / "a")
    with pytest.raises(PreconditionFailed) as e:
        compute(host)
    assert e.value.message == f"the model directory {MODEL} does not exist on spark1; {ADVICE}"
    assert e.value.metadata == {"path": MODEL, "node": "spark1"}
    host = node(tmp_path, "b", {"tokenizer.json": b"{}"})
    with pytest.raises(PreconditionFailed, match=f"the model directory {MODEL} on spark1 has no config.json; copy"):
        compute(host)


def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    host = FakeHost(tmp_path / "a")
    (host.root / "models").mkdir(exist_ok=True)
    (host.root / "models" / "llama").write_text("not a directory")
    with pytest.raises(PreconditionFailed, match=f"cannot list {MODEL} on spark1: Not a directory"):
        compute(host)


def test_hugging_face_cache_links_inside_the_sysroot_are_followed(tmp_path: Path) -> None:
    """A hub cache snapshot: every file a relative link into ../../blobs; the download metadata in .cache
    (which differs per node) is not part of the manifest."""
    plain = compute(node(tmp_path, "a"))
    host = FakeHost(tmp_path / "b")
    blobs = host.root / "models" / "blobs"
    blobs.mkdir(parents=True)
    for rel, data in FILES.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = model_dir(host) / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (model_dir(host) / ".cache" / "huggingface").mkdir(parents=True)
    (model_dir(host) / ".cache" / "huggingface" / "download.lock").write_text("node b")
    assert compute(host) == plain


def test_a_symlink_out_of_the_sysroot_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"secret")
    host = node(tmp_path, "a")
    (model_dir(host) / "model-00003.safetensors").symlink_to(outside)
    with pytest.raises(PreconditionFailed, match=r"model-00003\.safetensors on spark1 is neither a regular file"):
        compute(host)
    (model_dir(host) / "model-00003.safetensors").unlink()
    (model_dir(host) / "config.json").unlink()
    (model_dir(host) / "config.json").symlink_to(outside)
    with pytest.raises(PreconditionFailed, match=r"has no config\.json"):
        compute(host)


def test_the_model_directory_itself_may_not_leave_the_sysroot(tmp_path: Path) -> None:
    elsewhere = node(tmp_path, "elsewhere")
    host = FakeHost(tmp_path / "a")
    (host.root / "models").mkdir(exist_ok=True)
    (host.root / "models" / "llama").symlink_to(model_dir(elsewhere))
    with pytest.raises(PreconditionFailed, match="resolves outside the sysroot"):
        compute(host)


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    host = node(tmp_path, "a")
    os.mkfifo(model_dir(host) / "pipe")
    with pytest.raises(PreconditionFailed, match="pipe on spark1 is neither a regular file nor a directory"):
        compute(host)


def test_more_files_than_the_cap_are_refused(tmp_path: Path) -> None:
    host = node(tmp_path, "a")
    assert len(compute(host, max_files=5).entries) == 5
    (model_dir(host) / "original" / "extra").write_bytes(b"")
    with pytest.raises(PreconditionFailed, match=f"the model directory {MODEL} on spark1 has over 5 files"):
        compute(host, max_files=5)
    for i in range(6):
        (model_dir(host) / f"x{i}").write_bytes(b"")
    with pytest.raises(PreconditionFailed, match=f"{MODEL} on spark1 has over 5 entries"):
        compute(host, max_files=5)


def test_the_real_file_cap(tmp_path: Path) -> None:
    host = node(tmp_path, "a")
    extra = model_dir(host) / "extra"
    extra.mkdir()
    for i in range(collector.MAX_FILES - len(FILES) + 1):
        (extra / f"{i:04d}").write_bytes(b"")
    with pytest.raises(PreconditionFailed, match=f"has over {collector.MAX_FILES} files"):
        compute(host)


def test_depth_is_bounded_and_a_link_loop_ends(tmp_path: Path) -> None:
    host = node(tmp_path, "a")
    (model_dir(host) / "loop").symlink_to(".")
    with pytest.raises(PreconditionFailed, match="is more than 8 levels deep"):
        compute(host)


def test_control_characters_in_names_are_refused(tmp_path: Path) -> None:
    host = node(tmp_path, "a", {**FILES, "bad\nname": b""})
    with pytest.raises(PreconditionFailed, match="has control characters: 'bad\\\\nname'"):
        compute(host)


def test_a_huge_config_is_refused(tmp_path: Path) -> None:
    host = node(tmp_path, "a", {**FILES, "config.json": b" " * (collector.CONFIG_LIMIT + 1)})
    with pytest.raises(PreconditionFailed, match=r"config\.json on spark1 is larger than 1,048,576 bytes"):
        compute(host)


class CountingSha256:
    """hashlib as sysroot.py sees it, counting the digests it starts."""

    def __init__(self) -> None:
        self.calls = 0

    def sha256(self, *args: Any) -> Any:
        self.calls += 1
        return hashlib.sha256(*args)


def test_hashing_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = node(tmp_path, "a")
    counting = CountingSha256()
    monkeypatch.setattr(sysroot, "hashlib", counting)
    first = compute(host)
    assert counting.calls == len(FILES)
    assert compute(host) == first
    assert counting.calls == len(FILES)  # the second compute hashed nothing
    shard = model_dir(host) / "model-00002-of-00002.safetensors"
    shard.write_bytes(b"\x03" * 1000)
    os.utime(shard, ns=(1, 1))  # another mtime, whatever the clock's resolution
    assert compute(host) != first
    assert counting.calls == len(FILES) + 1  # only the changed file
