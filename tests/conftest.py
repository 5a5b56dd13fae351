"""Shared test fixtures: markers by path, root/netns detection and the root-namespace leak guard.

Every test under tests/integration is marked `netns`, every test under tests/e2e `lab` and `netns`, and
every test under tests/packaging `deb` (it builds the packages, downloading wheels from PyPI),
by path (so `pytest -m "not netns and not lab"` runs neither). A test so marked is skipped at setup
when this machine has no root or no `ip netns`; that is probed once, and only when such a test runs:
a run that deselects them creates no namespace and needs no root.

The leak guard is an nftables table in the machine's root network namespace that
counts AND drops every packet the root namespace would send to the lab subnets or to
sparkd's ports (peer 7471, API 8000, rendezvous 29501) on a non-loopback interface. The
lab and the tests run everything inside namespaces, so the count must stay zero; the
drop makes a leak impossible even if a bug tries. `tests/e2e/test_leak_guard.py` proves
the guard itself counts.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

GUARD_TABLE = "sparkd_test_guard"
GUARD_RULES = f"""
table inet {GUARD_TABLE} {{
  chain output {{
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    ip daddr {{ 192.168.100.0/24, 192.168.101.0/24 }} counter drop
    tcp dport {{ 7471, 8000, 29501 }} counter drop
  }}
}}
"""


TESTS = Path(__file__).parent
#: The markers every test under tests/DIR gets, by DIR.
MARKERS_BY_DIR = {"integration": ("netns",), "e2e": ("lab", "netns"), "packaging": ("deb",)}
#: Tests with any of these markers need root and network namespaces.
NEEDS_NETNS = ("netns", "lab")


@functools.cache
def have_netns() -> bool:
    """Whether this process can create network namespaces (root and `ip netns`). Probed once, on first call."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"sparkd-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return ok


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marks the tests under tests/integration, tests/e2e and tests/packaging by path (before `-m` selects)."""
    try:
        top = item.path.relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return
    for marker in MARKERS_BY_DIR.get(top, ()):
        if item.get_closest_marker(marker) is None:
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skips a test that needs network namespaces, before its fixtures, where this machine has none."""
    if any(item.get_closest_marker(m) is not None for m in NEEDS_NETNS) and not have_netns():
        pytest.skip("needs root and network namespaces (`ip netns`)")


class LeakGuard:
    """Reads the guard's counters. `deliberate` counts the packets the guard's self-test sent."""

    def __init__(self) -> None:
        self.deliberate = 0

    def leaked(self) -> int:
        """Packets that tried to leave the root namespace, apart from the self-test's."""
        return self.packets() - self.deliberate

    def packets(self) -> int:
        out = subprocess.run(
            ["nft", "-j", "list", "table", "inet", GUARD_TABLE], capture_output=True, text=True, check=True
        ).stdout
        total = 0
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total


@pytest.fixture(scope="session")
def leak_guard() -> Iterator[LeakGuard]:
    if not have_netns() or shutil.which("nft") is None:
        pytest.skip("needs root and nftables")
    subprocess.run(["nft", "delete", "table", "inet", GUARD_TABLE], capture_output=True, check=False)
    subprocess.run(["nft", "-f", "-"], input=GUARD_RULES, text=True, check=True)
    try:
        yield LeakGuard()
    finally:
        subprocess.run(["nft", "delete", "table", "inet", GUARD_TABLE], capture_output=True, check=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/expected from the output")
