"""Bounded reads of regular files: what the config, the node key and the records on disk share.

A root daemon reads files that others may have planted or damaged: a FIFO where a file should
be (a plain open would block start-up), a device such as /dev/zero (an endless read), a
directory, a symlink, or a file of gigabytes. `read_regular` opens without blocking, refuses
anything but a regular file, and reads at most one byte more than the caller's limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotARegularFile(OSError):
    """A directory, FIFO, device or socket where a file should be."""


def read_regular(path: Path, limit: int, follow_symlinks: bool = True) -> tuple[bytes, int]:
    """At most `limit` + 1 bytes of the regular file at `path` (so a caller sees it is too large without
    reading it all) and its mode bits. Never blocks on a FIFO or device (O_NONBLOCK, then refused as
    NotARegularFile); with `follow_symlinks=False` a symlink is refused too (ELOOP). Other failures are the
    OSError of open or read (FileNotFoundError when there is nothing)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(65536, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), stat.S_IMODE(st.st_mode)
    finally:
        os.close(fd)
