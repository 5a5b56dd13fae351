"""End-to-end tests against a whole lab: real systemd (sandboxed where PID 1 is not systemd),
real namespaces and veths, real sparkd daemons as units, the stand-in vLLM. Root only: tests/conftest.py marks every
test here `lab` and `netns` (by path) and skips it without root and `ip netns`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from tests.conftest import LeakGuard

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _guard(leak_guard: LeakGuard) -> Iterator[None]:
    """Keeps the root-namespace leak guard on for every test here, and checks it after each one."""
    yield
    assert leak_guard.leaked() == 0, "a packet tried to leave the root network namespace"


def sparkd(*args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `sparkd ARGS...` (this checkout's) and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "sparkd", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, input=input
    )


def client(node: str, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `sparkctl-client ARGS...` inside lab node `node` (its SPARKD_SOCKET set by `lab exec`)."""
    return sparkd("lab", "exec", node, "--", "sparkctl-client", *args, timeout=timeout, input=input)


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    if lab_mod.STATE.exists():
        pytest.fail(f"a lab is already up ({lab_mod.STATE}); run `sparkd lab down` before the tests")
    try:
        lab_mod.up(2, bare=False, log=print)
        yield
    finally:
        lab_mod.down(log=print)
