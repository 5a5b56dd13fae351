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


class SubprocessRunner:
    """Implements `protocols.Runner` with asyncio subprocesses."""

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        if not argv or any("\0" in a for a in argv):
            raise HostOperationFailed(f"refusing to run {list(argv)!r}: empty argv or a NUL byte")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"},
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
