"""Shared test fixtures: root/netns detection and the root-namespace leak guard.

The leak guard is an nftables table in the machine's root network namespace that
counts AND drops every packet the root namespace would send to the lab subnets or to
sparkd's ports (peer 7471, API 8000, rendezvous 29501) on a non-loopback interface. The
lab and the tests run everything inside namespaces, so the count must stay zero; the
drop makes a leak impossible even if a bug tries. `tests/e2e/test_leak_guard.py` proves
the guard itself counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

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


def have_netns() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"sparkd-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return ok


HAVE_NETNS = have_netns()
requires_netns = pytest.mark.skipif(not HAVE_NETNS, reason="needs root and network namespaces")


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
    if not HAVE_NETNS or shutil.which("nft") is None:
        pytest.skip("needs root and nftables")
    subprocess.run(["nft", "delete", "table", "inet", GUARD_TABLE], capture_output=True, check=False)
    subprocess.run(["nft", "-f", "-"], input=GUARD_RULES, text=True, check=True)
    try:
        yield LeakGuard()
    finally:
        subprocess.run(["nft", "delete", "table", "inet", GUARD_TABLE], capture_output=True, check=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/expected from the output")
