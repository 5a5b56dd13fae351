"""Files under the sysroot: every path sparkd reads or writes goes through `Sysroot.path()`.

In production the sysroot is `/`; tests and lab nodes use a directory. Writes are
atomic (temp file, fsync, rename, fsync of the directory) so a crash never leaves a
half-written file, and a write of identical bytes is skipped (idempotent apply).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class Sysroot:
    """A root directory that host paths are resolved under."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)

    def path(self, host_path: str) -> Path:
        """Maps an absolute host path (e.g. "/etc/nccl.conf") into the sysroot."""
        if not host_path.startswith("/"):
            raise ValueError(f"host path must be absolute: {host_path!r}")
        return self.root / host_path.lstrip("/")

    def read_text(self, host_path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(host_path).read_text()
        except FileNotFoundError:
            return None

    def write_atomic(self, host_path: str, data: bytes, mode: int = 0o644) -> bool:
        """Writes `data` atomically; returns False (and writes nothing) when it is already there."""
        target = self.path(host_path)
        try:
            if target.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(target.parent, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def remove(self, host_path: str) -> bool:
        """Removes the file; returns False when it was not there."""
        try:
            self.path(host_path).unlink()
        except FileNotFoundError:
            return False
        return True
