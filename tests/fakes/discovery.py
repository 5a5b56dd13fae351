"""Discovery without multicast: the sightings a test says the cable would carry.

Stands in for `sparkd.peer.discovery.Discovery` (UDP on the twins, which needs network
namespaces) in tests that run whole daemons on loopback; the pairing that follows a
sighting is the real one. tests/integration/test_discovery_netns.py tests the real thing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sparkd.peer.announcement import Announcement
from sparkd.peer.discovery import Sighting


class FakeDiscovery:
    def __init__(self) -> None:
        # (announcement of the node, the address it is heard from, the netdev it arrives on)
        self.heard: list[tuple[Callable[[], Announcement], str, str]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def sightings(self) -> list[Sighting]:
        return [Sighting(a(), address, netdev, time.monotonic()) for a, address, netdev in self.heard]

    def find(self, node_id: str) -> Sighting | None:
        return next((s for s in self.sightings() if s.announcement.node_id == node_id), None)

    async def wait_for(self, node_id: str, timeout: float) -> Sighting | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(node_id)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        return None
