"""Two namespaces cabled like two Sparks (veth twins), with recorded-layout sysroots.

Every test here runs the real adapters (pyroute2 netlink) against real kernel state,
inside namespaces this fixture creates and always removes. The leak guard is active.
tests/conftest.py marks every test here `netns` (by path) and skips it without root and `ip netns`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparkd.lab import fixtures, topology
from tests.conftest import LeakGuard


@dataclass(frozen=True)
class Pair:
    a: str  # namespace of node 0 (head)
    b: str  # namespace of node 1 (worker)
    root_a: Path
    root_b: Path


@pytest.fixture(autouse=True)
def _guard(leak_guard: LeakGuard) -> None:
    """Keeps the root-namespace leak guard on for every test here."""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    a, b = f"sdt{os.getpid() % 100000}a", f"sdt{os.getpid() % 100000}b"
    topology.destroy([a, b])
    topology.create_pair(a, b)
    roots = (tmp_path / "a", tmp_path / "b")
    for i, root in enumerate(roots):
        fixtures.write_node_fixtures(root, i)
    try:
        yield Pair(a, b, *roots)
    finally:
        topology.destroy([a, b])
