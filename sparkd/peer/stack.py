"""The peer layer of one daemon, wired: discovery, pairing, the worker's session, both listeners.

`PeerStack.changed()` is the one thing to call after anything that changes whom this
node trusts or where it listens (pairing, a reset, a host apply): it brings the peer
table, the session and both listeners up to date. A housekeeping task does the same
every second, so an address that appears (DAD finished, a link came back) or a token
that expires is acted on without anyone asking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from sparkd import __version__
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.host.protocols import Host
from sparkd.identity import cert_node_id_in_subprocess
from sparkd.peer import tls
from sparkd.peer.announcement import Announcement
from sparkd.peer.discovery import Discovery, Sighting
from sparkd.peer.hostcluster import WorkerHost
from sparkd.peer.manager import PeerManager
from sparkd.peer.pairing import Joiner, PairingOffice
from sparkd.peer.server import (
    Listener,
    LocalParts,
    PairingServicer,
    PeerServicer,
    Wanted,
    build_pairing_server,
    build_peer_server,
)
from sparkd.peer.session import WorkerSession

log = structlog.get_logger(__name__)


class Discoverer(Protocol):
    """`sparkd.peer.discovery.Discovery`, as the stack uses it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def sightings(self) -> list[Sighting]: ...

    async def wait_for(self, node_id: str, timeout: float) -> Sighting | None: ...


HOUSEKEEPING_S = 1.0


class PeerStack:
    """Everything of the peer layer (see the module docstring)."""

    def __init__(
        self,
        manager: PeerManager,
        host: Host,
        parts: LocalParts,
        twins: Callable[[], Awaitable[list[str]]],
        discovery: Discoverer | None = None,
        host_config: HostConfigurator | None = None,
    ) -> None:
        """`manager` is built first (the deployment engine needs it as its `Cluster`), `parts` after it."""
        config, identity, membership, bus = manager.config, manager.identity, manager.membership, manager.bus
        self.config, self.identity, self.keys, self.membership = config, identity, manager.keys, membership
        self.snapshot, self.twins = manager.snapshot, twins
        self.guard = manager.guard
        self.manager = manager
        self.session = WorkerSession(self.manager, membership)

        async def cert_id(pem: str) -> tuple[str, str]:
            return await cert_node_id_in_subprocess(host.runner, pem)

        self.office = PairingOffice(config.node.name, membership, identity, bus, cert_id, self._changed_soon)
        self.discovery: Discoverer = discovery or Discovery(twins, self.announcement, port=config.peer.discovery_port)
        self.joiner = Joiner(config, membership, identity, bus, cert_id, self.discovery, self.guard, twins)
        self.peer_servicer = peer_servicer = PeerServicer(
            self.manager, self.session, parts, WorkerHost(host_config, host.runner) if host_config else None
        )
        pairing_servicer = PairingServicer(self.office)
        self.peer_listener = Listener(
            "peer", lambda: config.peer.port, lambda: build_peer_server(peer_servicer, membership), self._peer_wanted
        )
        self.pairing_listener = Listener(
            "pairing",
            lambda: config.peer.pairing_port,
            lambda: build_pairing_server(pairing_servicer),
            self._pairing_wanted,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()

    def announcement(self) -> Announcement:
        return Announcement(
            node_id=self.identity.node_id,
            name=self.config.node.name,
            role=self.membership.role,
            pairing_open=self.office.offer() is not None,
            cert_pem=self.identity.cert_pem,
            sparkd_version=__version__[:32],
        )

    # --- where to listen ----------------------------------------------------------------------

    async def _interconnect_ipv4(self) -> list[str]:
        """This node's addresses in the interconnect subnets, present on a twin now (from the snapshot)."""
        ic, links = self.config.interconnect, self.snapshot.links
        found = []
        for netdev in await self.twins():
            link = links.get(netdev)
            for address in link.addresses if link else ():
                if address.ip in ic.subnet_a or address.ip in ic.subnet_b:
                    found.append(str(address.ip))
        return found

    async def _peer_wanted(self) -> Wanted:
        peers = self.membership.peers()
        if not peers:
            return [], None, None
        version = tuple(sorted(m.cert_pem for m in peers))  # the certificates themselves: a re-issued one counts
        certs = [m.cert_pem for m in peers]
        return await self._interconnect_ipv4(), version, lambda: tls.peer_server_credentials(self.keys, certs)

    async def _pairing_wanted(self) -> Wanted:
        if self.office.offer() is None:
            return [], None, None
        links = self.snapshot.links
        addresses = await self._interconnect_ipv4()
        for netdev in await self.twins():
            link = links.get(netdev)
            addresses += [f"{ll}%{netdev}" for ll in (link.link_local if link else ())]
        return addresses, "open", lambda: tls.pairing_server_credentials(self.keys)

    # --- changes ------------------------------------------------------------------------------

    async def changed(self) -> None:
        self.manager.sync()
        self.session.sync()
        self.session.wake()
        await self.ensure()

    def _changed_soon(self) -> None:
        """From synchronous code (a token opened, used or expired): run `changed()` on the loop."""
        with contextlib.suppress(RuntimeError):  # no running loop: start() will catch up
            task = asyncio.get_running_loop().create_task(self.changed())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def ensure(self) -> None:
        await self.peer_listener.ensure()
        await self.pairing_listener.ensure()

    def link_changed(self) -> None:
        """Netlink reported a link change: redial the head at once if the session is down."""
        self.session.wake()

    async def _housekeeping(self) -> None:
        while True:
            try:
                self.office.offer()  # closes an expired token
                await self.ensure()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("peer.housekeeping_error")
            await asyncio.sleep(HOUSEKEEPING_S)

    async def start(self) -> None:
        await self.ensure()
        await self.discovery.start()
        self._tasks = [
            asyncio.create_task(self.session.run()),
            asyncio.create_task(self.manager.monitor()),
            asyncio.create_task(self._housekeeping()),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._pending, return_exceptions=True)
        self._tasks = []
        await self.discovery.stop()
        await self.peer_listener.stop()
        await self.pairing_listener.stop()
        await self.manager.close()
