"""The leak guard counts (and drops) what would leave the root namespace: proof that its zero means something.

The datagram below is dropped in the root namespace's output hook, before any interface:
nothing leaves the machine.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import LeakGuard


def test_guard_counts_and_drops_a_root_namespace_packet(leak_guard: LeakGuard) -> None:
    before = leak_guard.packets()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(PermissionError):
        s.sendto(b"x", ("192.168.100.254", 9))
    leak_guard.deliberate += 1
    assert leak_guard.packets() == before + 1
