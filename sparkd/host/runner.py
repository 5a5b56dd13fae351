"""The one place where sparkd runs programs: argv only (never a shell), a timeout, capped output.

Later revisions run `mlnx_qos`, `dcb` and `modprobe` through this adapter; tests replace it
with a fake that records every argv, so no unit test ever starts a process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import CommandResult

MAX_OUTPUT = 64 * 1024  # bytes kept of stdout and of stderr each


#: Where programs are looked up (`which`) and what their PATH is: the distribution's directories first.
SYSTEM_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")


def _trusted(path: str) -> bool:
    """A program root may run: owned by root (or by this process's user) and writable by no one else."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


class SubprocessRunner:
    """Implements `protocols.Runner` with asyncio subprocesses. `first` is a directory searched before the
    system's (the lab's stand-in tools: `lab.tools_dir`; empty in production)."""

    def __init__(self, first: str = "") -> None:
        self.search = ((first,) if first else ()) + SYSTEM_PATH

    def which(self, name: str) -> str | None:
        if not name or "/" in name:
            return None
        for directory in self.search:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and _trusted(candidate):
                return candidate
        return None

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        if not argv or any("\0" in a for a in argv):
            raise HostOperationFailed(f"refusing to run {list(argv)!r}: empty argv or a NUL byte")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": os.environ.get("PATH", ":".join(SYSTEM_PATH)), "LC_ALL": "C"},
                cwd="/",  # never the directory sparkd was started from: a program may read or import from it
            )
        except OSError as e:
            raise HostOperationFailed(f"cannot run {argv[0]}: {e.strerror}", command=argv[0]) from e
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            raise HostOperationFailed(f"{argv[0]} did not finish within {timeout:g} s", command=argv[0]) from None
        finally:
            if process.returncode is None:  # timed out, or the caller was cancelled: the child goes too
                process.kill()
                await asyncio.shield(process.wait())
        return CommandResult(
            tuple(argv),
            process.returncode if process.returncode is not None else -1,
            stdout[:MAX_OUTPUT].decode(errors="replace"),
            stderr[:MAX_OUTPUT].decode(errors="replace"),
        )
