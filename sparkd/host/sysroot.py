"""Files under the sysroot: every path sparkd reads or writes goes through `Sysroot.path()`.

In production the sysroot is `/`; tests and lab nodes use a directory. Writes are
atomic (temp file, fsync, rename, fsync of the directory) so a crash never leaves a
half-written file, and a write of identical bytes is skipped (idempotent apply).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path

from sparkd.files import NotARegularFile, read_regular

#: How many files' digests `Sysroot.sha256` remembers: one NCCL library per framework environment, and
#: every file of the model directories whose manifests are computed (at most 4096 files each, so a model
#: is hashed once per daemon). An entry is a path and two small tuples: 8192 of them are a few MB.
DIGEST_CACHE = 8192


class Sysroot:
    """A root directory that host paths are resolved under (implements `protocols.Files`)."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)
        # sha256(): real path -> ((st_dev, st_ino, st_size, st_mtime_ns), hex digest)
        self._digests: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._digests_lock = threading.Lock()

    def path(self, host_path: str) -> Path:
        """Maps an absolute host path (e.g. "/etc/nccl.conf") into the sysroot."""
        if not host_path.startswith("/") or "\0" in host_path:
            raise ValueError(f"host path must be absolute: {host_path!r}")
        if ".." in host_path.split("/"):
            raise ValueError(f"host path must not contain '..': {host_path!r}")
        return self.root / host_path.lstrip("/")

    def read_text(self, host_path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(host_path).read_text()
        except FileNotFoundError:
            return None

    def write_atomic(
        self, host_path: str, data: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None
    ) -> bool:
        """Writes `data` atomically with `mode` and `owner` (uid, gid; None: the writer's own); returns False
        (and writes nothing) when the bytes, the mode and the owner are already there."""
        target = self.path(host_path)
        try:
            st = os.stat(target, follow_symlinks=False)
            same_meta = stat.S_IMODE(st.st_mode) == mode and (owner is None or (st.st_uid, st.st_gid) == owner)
            if same_meta and stat.S_ISREG(st.st_mode) and target.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        _make_dirs(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)  # while it is still the writer's: changing another's mode needs FOWNER
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return True

    def stat(self, host_path: str) -> tuple[int, int, int] | None:
        """(permission bits, uid, gid) of the file itself, never a symlink's target; None when absent."""
        try:
            st = os.stat(self.path(host_path), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    def write_attribute(self, host_path: str, data: bytes, group: str = "") -> None:
        """Writes a sysfs/configfs attribute in place: open, one write, close (those file systems have no
        temporary files or rename). `group` is a configfs directory made first when missing."""
        if group:
            try:
                os.mkdir(self.path(group))
            except FileExistsError:
                pass
        fd = os.open(self.path(host_path), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def rename(self, host_path: str, new_host_path: str) -> None:
        """Renames atomically and makes the rename durable (fsync of the directory)."""
        target = self.path(new_host_path)
        os.replace(self.path(host_path), target)
        _fsync_dir(target.parent)

    def list_dir(self, host_path: str) -> list[str]:
        """The names in a directory, sorted; empty when it does not exist."""
        try:
            return sorted(os.listdir(self.path(host_path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def entries(self, host_path: str, limit: int) -> list[tuple[str, str, int]] | None:
        """A directory's entries as (name, kind, size), sorted; None when it does not exist. Kind is "file"
        (size in bytes), "dir" or "other" (size 0). Symlinks, the directory's own included, are followed
        only while they resolve inside the sysroot: a link out of it, a dangling link or a loop is "other",
        and so is a FIFO, socket or device (never opened). At most `limit` + 1 entries are read (so a
        caller sees there are more); which ones is then the kernel's order. OSError (EXDEV when the
        directory resolves outside the sysroot, NotADirectoryError) when it cannot be listed."""
        real = self._resolve(host_path)
        if real is None:
            return None
        root = os.path.realpath(self.root)
        found: list[tuple[str, str, int]] = []
        with os.scandir(real) as listing:
            for entry in listing:
                if len(found) > limit:
                    break
                found.append((entry.name, *_entry_kind(root, entry)))
        return sorted(found)

    def read_resolved(self, host_path: str, limit: int) -> bytes | None:
        """`read_bounded`, but a symlink is followed while it resolves inside the sysroot (as `sha256`
        does): how a file of a model directory is read, where links into a blob store are the norm."""
        real = self._resolve(host_path)
        if real is None:
            return None
        try:
            return read_regular(Path(real), limit, follow_symlinks=False)[0]
        except FileNotFoundError:
            return None

    def read_bounded(self, host_path: str, limit: int) -> bytes | None:
        """At most `limit` + 1 bytes of a regular file, never following a symlink and never blocking on a
        FIFO or device; None when it does not exist. OSError when it is not a regular file."""
        try:
            return read_regular(self.path(host_path), limit, follow_symlinks=False)[0]
        except FileNotFoundError:
            return None

    def sha256(self, host_path: str, limit: int) -> str | None:
        """The hex SHA-256 of a regular file of at most `limit` bytes; None when it does not exist. Symlinks
        are resolved, and the result must lie inside the sysroot (an absolute link in a test or lab sysroot
        points at the machine's own files: refused with EXDEV). Not regular: NotARegularFile; larger than
        `limit`: EFBIG. Read in 1 MiB chunks; cached by the opened file's (device, inode, size, mtime_ns)."""
        real = self._resolve(host_path)
        if real is None:
            return None
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotARegularFile(errno.EINVAL, "not a regular file", host_path)
            if st.st_size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", host_path)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            with self._digests_lock:
                cached = self._digests.get(real)
            if cached is not None and cached[0] == key:
                return cached[1]
            digest, size = hashlib.sha256(), 0
            while chunk := os.read(fd, 1 << 20):
                size += len(chunk)
                if size > limit:
                    raise OSError(errno.EFBIG, f"larger than {limit} bytes", host_path)
                digest.update(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        hexdigest = digest.hexdigest()
        if (after.st_size, after.st_mtime_ns) == (size, st.st_mtime_ns):  # not rewritten while being read
            with self._digests_lock:
                self._digests.pop(real, None)
                while len(self._digests) >= DIGEST_CACHE:
                    self._digests.pop(next(iter(self._digests)))
                self._digests[real] = (key, hexdigest)
        return hexdigest

    def _resolve(self, host_path: str) -> str | None:
        """The real path of `host_path`, every symlink resolved; None when nothing is there. OSError EXDEV
        when it resolves outside the sysroot (an absolute link in a test or lab sysroot points at the
        machine's own files)."""
        root = os.path.realpath(self.root)
        try:
            real = os.path.realpath(self.path(host_path), strict=True)
        except FileNotFoundError:
            return None
        if os.path.commonpath([root, real]) != root:
            raise OSError(errno.EXDEV, "resolves outside the sysroot", host_path)
        return real

    def remove(self, host_path: str) -> bool:
        """Removes the file (never a directory); returns False when it was not there."""
        try:
            self.path(host_path).unlink()
        except FileNotFoundError:
            return False
        return True


def _entry_kind(root: str, entry: os.DirEntry[str]) -> tuple[str, int]:
    """("file", size), ("dir", 0) or ("other", 0) for one directory entry (see `Sysroot.entries`)."""
    try:
        if entry.is_symlink():
            target = os.path.realpath(entry.path, strict=True)
            if os.path.commonpath([root, target]) != root:
                return "other", 0
            st = os.stat(target, follow_symlinks=False)
        else:
            st = entry.stat(follow_symlinks=False)
    except OSError:  # dangling, a loop, or gone since the listing
        return "other", 0
    if stat.S_ISREG(st.st_mode):
        return "file", st.st_size
    return ("dir", 0) if stat.S_ISDIR(st.st_mode) else ("other", 0)


def _make_dirs(directory: Path) -> None:
    """Makes the missing directories of `directory` 0755, whatever the umask (sparkd's is 0077: a new
    /etc/profile.d must stay readable by the shells that source it)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            continue
        os.chmod(d, 0o755)


def _fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
