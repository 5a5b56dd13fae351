"""A model directory's manifest: computed on each node, compared between nodes before a deployment starts.

Every rank loads the model from the same path (`spec.model`) on its own node's disk. A copy cut short,
another revision, another quantization or a missing tokenizer on one node makes the ranks load weights
that do not belong together: the framework fails late with a shape error, or serves nonsense. So every
node computes a manifest of its copy (`compute`): each file's relative path, size and SHA-256, and a
digest over them all; the head compares them (`compare`, `compare_entries`: pure) and names the files.

The digest is the SHA-256 of the lines "relpath\\0size\\0sha256\\n", one per file, sorted by relative path
("/" separated, no leading "/"). `compute` refuses paths that are not UTF-8 or hold control characters,
so no two different manifests give the same lines, and any path prints as it is.

What counts: every regular file under the directory, recursively, except inside a `.cache` directory
(`huggingface-cli download --local-dir` keeps its per-node download metadata there, which differs from
node to node by design). The directory is a host path read under the sysroot through `Files`. Symlinks
are followed while they resolve inside the sysroot (a Hugging Face cache snapshot is links into
`../../blobs`); one that leaves it, dangles or loops, and anything that is neither a file nor a
directory (a FIFO, a device), is refused rather than skipped: the copies must be the same files, and a
file that cannot be read cannot be compared.

Hashing is `Files.sha256`, cached by the file's identity, size and mtime: a model is hashed once per
daemon (at NVMe speed, a 140 GB model takes a minute or two the first time) and a later manifest of the
same files only lists the directory. `compute` blocks: the caller runs it in a thread. Bounded, since
the directory holds whatever is on disk: at most `MAX_FILES` files, `MAX_DIRS` directories, `MAX_DEPTH`
levels below the model directory, `MAX_FILE_BYTES` per file, config.json at most `CONFIG_LIMIT` bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from sparkd.errors import PreconditionFailed, shown
from sparkd.host.protocols import Files

MAX_FILES = 4096
MAX_DIRS = 1024
MAX_DEPTH = 8
MAX_FILE_BYTES = 2 * 10**12
CONFIG_LIMIT = 1 << 20
#: Directory names never entered (at any depth).
SKIPPED_DIRS = frozenset({".cache"})
#: The differences `compare` lists one by one; the rest are counted.
MAX_SHOWN = 5
#: What to do about a missing or differing model.
ADVICE = "copy the model directory to the same path on every node (rsync -a from one node), then retry"


class ManifestEntry(NamedTuple):
    """One file: its path relative to the model directory, its size and its hex SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A model directory: its files sorted by path, their digest, and the bytes of its config.json (what the
    memory plan reads)."""

    entries: tuple[ManifestEntry, ...]
    digest: str
    config_json: bytes = b""

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int, str]], config_json: bytes = b"") -> Manifest:
        """The manifest of `entries` (in any order), its digest computed."""
        ordered = tuple(sorted(ManifestEntry(*e) for e in entries))
        return cls(ordered, manifest_digest(ordered), config_json)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


def manifest_digest(entries: Iterable[tuple[str, int, str]]) -> str:
    """The hex SHA-256 over the sorted "relpath\\0size\\0sha256\\n" lines of `entries`."""
    digest = hashlib.sha256()
    for path, size, sha256 in sorted(entries):
        digest.update(f"{path}\0{size}\0{sha256}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def compare(local: Manifest, remote: Manifest, local_name: str, remote_name: str) -> list[str]:
    """What differs between this node's manifest and a peer's (see `compare_entries`); also a digest that
    differs while the files agree (the peer computed it some other way). Empty when they agree."""
    if local.digest == remote.digest and local.entries == remote.entries:
        return []
    lines = compare_entries(local.entries, remote.entries, local_name, remote_name)
    if not lines:
        a, b = _show(local_name), _show(remote_name)
        lines.append(f"the manifest digests differ: {a} has {_show(local.digest)}, {b} has {_show(remote.digest)}")
    return lines


def compare_entries(
    local: Iterable[tuple[str, int, str]], remote: Iterable[tuple[str, int, str]], local_name: str, remote_name: str
) -> list[str]:
    """The files that differ between two manifests' entries, one line each in path order ("spark2 lacks
    tokenizer.json", "spark2 has an extra file x", "model file x differs: spark1 has 4.9 GB sha256 ab12…,
    spark2 has ..."): at most `MAX_SHOWN` lines and a count of the rest; empty when the files agree.
    `remote` came from a peer: nothing of it is trusted to be sorted, unique or printable."""
    a, b = _show(local_name), _show(remote_name)
    ours = {path: (size, sha) for path, size, sha in local}
    theirs = {path: (size, sha) for path, size, sha in remote}
    lines = []
    for path in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(path), theirs.get(path)
        if mine == other:
            continue
        if other is None:
            lines.append(f"{b} lacks {_show(path)}")
        elif mine is None:
            lines.append(f"{b} has an extra file {_show(path)}")
        else:
            lines.append(f"model file {_show(path)} differs: {a} has {_file(*mine)}, {b} has {_file(*other)}")
    if len(lines) > MAX_SHOWN:
        return [*lines[:MAX_SHOWN], f"and {len(lines) - MAX_SHOWN} more differing files"]
    return lines


def size_text(size: int) -> str:
    """Bytes in decimal units, as a person reads them: "731 B", "9.1 MB", "4.9 GB"."""
    if size >= 10**18:  # a peer's figure: no float conversion of a huge integer
        return "over 1 EB"
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def compute(files: Files, model_path: str, *, node: str = "this node", max_files: int = MAX_FILES) -> Manifest:
    """The manifest of the model directory `model_path` on this node (`node` names it in messages).
    PreconditionFailed, naming the path and what to do, when the directory is missing, has no config.json,
    holds something that cannot be compared, or exceeds a bound."""
    if not model_path.startswith("/") or ".." in model_path.split("/") or "\0" in model_path:
        raise _refuse(f"the model path {shown(model_path)} is not an absolute path without '..'", model_path, node)
    model = model_path.rstrip("/") or "/"
    top = _list(files, model, node, max_files)
    if top is None:
        raise _refuse(f"the model directory {model} does not exist on {node}", model, node)
    if ("config.json", "file") not in {(name, kind) for name, kind, _ in top}:
        raise _refuse(f"the model directory {model} on {node} has no config.json", model, node)
    found: list[tuple[str, int]] = []
    pending = [("", 0, top)]
    dirs = 0
    while pending:
        rel_dir, depth, listing = pending.pop()
        for name, kind, size in listing:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            _check_name(model, rel, node)
            if kind == "dir":
                if name in SKIPPED_DIRS:
                    continue
                dirs += 1
                if depth + 1 > MAX_DEPTH:
                    raise _refuse(f"{model} on {node} is more than {MAX_DEPTH} levels deep (at {rel})", model, node)
                if dirs > MAX_DIRS:
                    raise _refuse(f"{model} on {node} has over {MAX_DIRS} directories", model, node)
                pending.append((rel, depth + 1, _list(files, f"{model}/{rel}", node, max_files) or []))
            elif kind == "file":
                if size > MAX_FILE_BYTES:
                    raise _refuse(f"{model}/{rel} on {node} is larger than {MAX_FILE_BYTES:,} bytes", model, node)
                found.append((rel, size))
                if len(found) > max_files:
                    raise _refuse(f"the model directory {model} on {node} has over {max_files} files", model, node)
            else:
                raise _refuse(
                    f"{model}/{rel} on {node} is neither a regular file nor a directory (a dangling symlink, one "
                    "that leads out of the sysroot, a FIFO or a device)",
                    model,
                    node,
                )
    found.sort()
    entries = [(rel, size, _sha256(files, f"{model}/{rel}", node, model)) for rel, size in found]
    return Manifest.of(entries, _config(files, model, node))


def _list(files: Files, host_path: str, node: str, max_files: int) -> list[tuple[str, str, int]] | None:
    """One directory's entries, at most `max_files` (more refuses); None when it does not exist."""
    try:
        listing = files.entries(host_path, max_files)
    except OSError as e:
        raise _refuse(f"cannot list {host_path} on {node}: {e.strerror or e}", host_path, node) from None
    if listing is not None and len(listing) > max_files:
        raise _refuse(f"the model directory {host_path} on {node} has over {max_files} entries", host_path, node)
    return listing


def _sha256(files: Files, host_path: str, node: str, model: str) -> str:
    try:
        digest = files.sha256(host_path, MAX_FILE_BYTES)
    except OSError as e:
        raise _refuse(f"cannot read {host_path} on {node}: {e.strerror or e}", model, node) from None
    if digest is None:
        raise _refuse(f"{host_path} on {node} disappeared while the model was being hashed", model, node)
    return digest


def _config(files: Files, model: str, node: str) -> bytes:
    path = f"{model}/config.json"
    try:
        data = files.read_resolved(path, CONFIG_LIMIT)
    except OSError as e:
        raise _refuse(f"cannot read {path} on {node}: {e.strerror or e}", model, node) from None
    if data is None:
        raise _refuse(f"{path} on {node} disappeared while the model was being hashed", model, node)
    if len(data) > CONFIG_LIMIT:
        raise _refuse(f"{path} on {node} is larger than {CONFIG_LIMIT:,} bytes: not a model config", model, node)
    return data


def _check_name(model: str, rel: str, node: str) -> None:
    """A path the manifest can carry: UTF-8 (what the peer protocol's strings are) and printable (so the
    digest's lines are unambiguous and messages show it as it is)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(f"a file name under {model} on {node} is not UTF-8: {shown(rel)}", model, node) from None
    if not rel.isprintable():
        raise _refuse(f"a file name under {model} on {node} has control characters: {shown(rel)}", model, node)


def _refuse(what: str, path: str, node: str) -> PreconditionFailed:
    return PreconditionFailed(f"{what}; {ADVICE}", path=path, node=node)


def _file(size: int, sha256: str) -> str:
    return f"{size_text(size)} sha256 {_show(sha256)[:12]}…"


def _show(value: str) -> str:
    """A name or path fit for a message: at most 200 characters, control characters as "?"."""
    text = "".join(c if c.isprintable() else "?" for c in value[:200])
    return text + ("…" if len(value) > 200 else "")
