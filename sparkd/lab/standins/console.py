"""The stand-ins' output, in the style of vLLM's log lines, and their way out."""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn


def log(message: str) -> None:
    print(f"INFO {time.strftime('%m-%d %H:%M:%S')} [stand-in] {message}", flush=True)


def error(message: str) -> None:
    print(f"ERROR {time.strftime('%m-%d %H:%M:%S')} [stand-in] {message}", file=sys.stderr, flush=True)


def exit_now(status: int) -> NoReturn:
    """Ends the process with `status` at once, from any thread. Not sys.exit: a daemon thread (the fault
    switch, a connection reader) may hold stdout's lock at interpreter shutdown, which aborts the process
    (SIGABRT) instead of exiting with the status (seen on a fresh Debian)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def fail(message: str) -> NoReturn:
    """Exits 1 at once, as the frameworks do on a fatal start-up error."""
    print(f"ERROR [stand-in] {message}", file=sys.stderr, flush=True)
    exit_now(1)


def engine_dead(message: str) -> NoReturn:
    """Ends the process at once from any thread (a peer rank died: the engine cannot go on)."""
    error(f"{message}; exiting (engine dead)")
    exit_now(1)
