"""Discovery on the cable before any address exists: IPv6 link-local multicast on the twins only.

A fresh pair of Sparks has no IPv4 address on the interconnect yet, but as soon as a twin is up the
kernel gives it an `fe80::` link-local address (after duplicate address detection, ~2 s). Every
`interval_s` each node multicasts a small JSON announcement (node ID, name, role, whether a pairing
token is live, its self-signed certificate) to `GROUP` on UDP `PORT`, out of each interconnect netdev,
and listens for the others'. What it hears is a `Sighting`: who claims to be where.

Discovery never grants trust. Anyone on the cable can claim any node ID and any certificate; the
pairing code verifies the certificate against the node ID the operator typed. So the table keeps one
sighting per (node ID, netdev, sender address), and a forged claim cannot hide the real one. The
table is bounded, every field of a datagram is validated strictly (this is untrusted input to a
root daemon), and what fails to decode is counted and ignored.

Traffic cannot leave through any other interface (management, loopback), by construction:
- the only sockets are one per netdev named by `netdevs()` (the twins observed now), each with
  SO_BINDTODEVICE set (and read back) before it is bound or sends; there is no catch-all socket;
- each sends only to `(GROUP, port, 0, its own ifindex)`, with IPV6_MULTICAST_IF set to that ifindex;
- the group is link-local scoped (ff02::/16) and the hop limit is 1, so no router forwards it;
- each socket is bound to the group address itself, so unicast to the port is not even received.
Sockets are reconciled with `netdevs()` every tick: a twin that disappears, changes ifindex or fails
is closed and reopened next tick; an error on one twin never touches the others. Multicast loop is
off (a node does not hear itself); its own node ID is filtered out anyway (a switch may reflect it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import re
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from sparkd.peer.announcement import MAX_DATAGRAM, Announcement, decode, encode

log = structlog.get_logger(__name__)

#: UDP port of discovery (the peer gRPC port is 7471/tcp).
PORT = 7472
#: Our own link-local scoped group: ff02:: (link-local scope) + "spkd" in ASCII (73 70 6b 64).
#: Not assigned by IANA to anyone; link-local scope keeps it on the cable whatever it is.
GROUP = "ff02::7370:6b64"
HOP_LIMIT = 1
#: Bound on the sighting table (peers on one switch fabric, plus room for noise).
MAX_SIGHTINGS = 64
#: At most this many datagrams are read per readable event (then the loop runs others).
MAX_READS = 64
WARN_EVERY_S = 10.0
IPV6_MULTICAST_ALL = getattr(socket, "IPV6_MULTICAST_ALL", 29)  # Linux; not exported by every Python

_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,14}")  # IFNAMSIZ 16 with the NUL
#: Send errors that say "not yet" (DAD still running, link down): retried next tick, logged at debug.
TRANSIENT = {errno.EADDRNOTAVAIL, errno.ENETDOWN, errno.ENETUNREACH, errno.EAGAIN, errno.ENOBUFS}


@dataclass(frozen=True)
class Sighting:
    """An announcement heard on `netdev` from the link-local `address` (no scope suffix)."""

    announcement: Announcement
    address: str  # fe80::/10, from recvfrom
    netdev: str
    last_seen: float  # time.monotonic()

    @property
    def scoped_address(self) -> str:
        """The address with its zone, as a dial target: `fe80::1%enp1s0f1np1`."""
        return f"{self.address}%{self.netdev}"


class _RateLimit:
    """Lets one event through per WARN_EVERY_S, counting the ones it held back."""

    next_at, held = 0.0, 0

    def allow(self) -> int | None:
        """None when held back; otherwise how many were held back since the last one let through."""
        now = time.monotonic()
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held, self.next_at = self.held, 0, now + WARN_EVERY_S
        return held


@dataclass
class _Endpoint:
    """One twin's socket."""

    netdev: str
    ifindex: int
    sock: socket.socket
    broken: bool = False


def _open_socket(netdev: str, ifindex: int, port: int) -> socket.socket:
    """A UDP socket that can only talk on `netdev`: bound to the device, then to the group on it."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, netdev.encode())
        bound = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0").decode()
        if bound != netdev or socket.if_nametoindex(netdev) != ifindex:
            raise OSError(errno.ENODEV, f"{netdev} changed while its socket was opened")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)  # only groups this socket joined
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.bind((GROUP, port, 0, ifindex))
        mreq = socket.inet_pton(socket.AF_INET6, GROUP) + struct.pack("@I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    except BaseException:
        sock.close()
        raise
    return sock


class Discovery:
    """Announces this node on every interconnect twin and keeps the table of what it hears."""

    def __init__(
        self,
        netdevs: Callable[[], Awaitable[list[str]]],
        announcement: Callable[[], Announcement | None],
        interval_s: float = 1.0,
        port: int = PORT,
        expire_s: float = 5.0,
    ) -> None:
        self._netdevs, self._announcement = netdevs, announcement
        self.interval_s, self.port, self.expire_s = interval_s, port, expire_s
        self._endpoints: dict[str, _Endpoint] = {}
        self._table: dict[tuple[str, str, str], Sighting] = {}  # (node_id, netdev, address)
        self._new = asyncio.Event()  # replaced after each set: waiters see "something new since I looked"
        self._task: asyncio.Task[None] | None = None
        self._own_id = ""
        self._datagram = b""  # the latest encoded own announcement
        self._limits: defaultdict[str, _RateLimit] = defaultdict(_RateLimit)  # by warning and netdev
        self.malformed = 0  # datagrams that failed to decode
        self.ignored = 0  # well-formed ones ignored: own node ID, not link-local, table full

    async def start(self) -> None:
        """Starts the tick loop (the first tick runs at once). Idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="discovery")

    async def stop(self) -> None:
        """Stops announcing and closes every socket. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for netdev in list(self._endpoints):
            self._close(netdev)

    def netdevs(self) -> list[str]:
        """The netdevs that have a socket now."""
        return sorted(self._endpoints)

    def sightings(self) -> list[Sighting]:
        """Unexpired sightings of other nodes, freshest first."""
        horizon = time.monotonic() - self.expire_s
        live = [s for s in self._table.values() if s.last_seen >= horizon and s.announcement.node_id != self._own_id]
        return sorted(live, key=lambda s: -s.last_seen)

    def find(self, node_id: str) -> Sighting | None:
        """The freshest unexpired sighting of `node_id` (a node on two twins is seen on both)."""
        return next((s for s in self.sightings() if s.announcement.node_id == node_id), None)

    async def wait_for(self, node_id: str, timeout: float) -> Sighting | None:
        """Waits until `node_id` is seen (returns at once if it is); None after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := self.find(node_id)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)
        return found

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # a bug must not stop discovery for good: log it, try again next tick
                log.exception("discovery.tick_failed")
            await asyncio.sleep(self.interval_s)

    async def _tick(self) -> None:
        try:
            wanted = {n for n in await self._netdevs() if isinstance(n, str)}
        except Exception as e:
            log.warning("discovery.netdevs_failed", error=str(e))
            wanted = set()  # when unsure, talk on no interface
        for netdev in set(self._endpoints) - wanted:
            log.info("discovery.netdev_removed", ifname=netdev)
            self._close(netdev)
        for netdev in sorted(wanted):
            self._reconcile(netdev)
        self._datagram = self._encode_own()
        if self._datagram:
            for ep in list(self._endpoints.values()):
                self._send(ep)
        horizon = time.monotonic() - self.expire_s
        for key in [k for k, s in self._table.items() if s.last_seen < horizon]:
            gone = self._table.pop(key)
            log.info("discovery.peer_expired", node_id=key[0], ifname=key[1], address=gone.address)

    def _encode_own(self) -> bytes:
        try:
            own = self._announcement()
            if own is None:
                return b""
            self._own_id = own.node_id
            return encode(own)
        except Exception as e:  # our own announcement is broken: a bug; say so, but keep listening
            self._warn("own", "discovery.own_announcement_invalid", error=str(e))
            return b""

    def _reconcile(self, netdev: str) -> None:
        """Makes sure `netdev` has a working socket (the one place that opens sockets)."""
        ep = self._endpoints.get(netdev)
        if netdev == "lo" or _IFNAME.fullmatch(netdev) is None:
            self._warn(f"refused {netdev}", "discovery.netdev_refused", ifname=netdev, reason="loopback or bad name")
            return
        try:
            ifindex = socket.if_nametoindex(netdev)
        except OSError:
            ifindex = 0
        if ep is not None and (ep.broken or ep.ifindex != ifindex):
            log.info("discovery.netdev_reopening" if ifindex else "discovery.netdev_gone", ifname=netdev)
            self._close(netdev)
            ep = None
        if ep is not None or not ifindex:
            return
        try:
            sock = _open_socket(netdev, ifindex, self.port)
        except OSError as e:
            self._warn(f"open {netdev}", "discovery.socket_failed", ifname=netdev, error=str(e))
            return
        ep = self._endpoints[netdev] = _Endpoint(netdev, ifindex, sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, ep)
        log.info("discovery.netdev_added", ifname=netdev, ifindex=ifindex)

    def _warn(self, key: str, event: str, **fields: Any) -> None:
        """A warning at most once per WARN_EVERY_S per key, saying how many were held back since."""
        if (held := self._limits[key].allow()) is not None:
            log.warning(event, held=held, **fields)

    def _close(self, netdev: str) -> None:
        ep = self._endpoints.pop(netdev, None)
        if ep is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(ep.sock.fileno())
            ep.sock.close()

    def _send(self, ep: _Endpoint) -> None:
        try:
            ep.sock.sendto(self._datagram, (GROUP, self.port, 0, ep.ifindex))
        except OSError as e:
            if e.errno in TRANSIENT:
                log.debug("discovery.send_deferred", ifname=ep.netdev, error=str(e))
                return
            ep.broken = True  # ENODEV and the like: reopened next tick
            self._warn(f"send {ep.netdev}", "discovery.send_failed", ifname=ep.netdev, error=str(e))

    def _readable(self, ep: _Endpoint) -> None:
        for _ in range(MAX_READS):
            try:
                data, sender = ep.sock.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                ep.broken = True
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(ep.sock.fileno())
                self._warn(f"receive {ep.netdev}", "discovery.receive_failed", ifname=ep.netdev, error=str(e))
                return
            self._received(ep, data, sender)

    def _received(self, ep: _Endpoint, data: bytes, sender: tuple[Any, ...]) -> None:
        try:
            source = ipaddress.IPv6Address(str(sender[0]).split("%", 1)[0])
        except ValueError:
            source = None
        if source is None or not source.is_link_local or sender[3] != ep.ifindex:
            self.ignored += 1
            return
        try:
            a = decode(data)
        except ValueError as e:
            self.malformed += 1
            self._warn("malformed", "discovery.malformed", ifname=ep.netdev, source=str(source), error=str(e))
            return
        if a.node_id == self._own_id:
            self.ignored += 1
            return
        key = (a.node_id, ep.netdev, str(source))
        old = self._table.get(key)
        if old is None and len(self._table) >= MAX_SIGHTINGS:
            # Full (a flood of claims?): the stalest entry makes room, so a live node is never shut out for long.
            self.ignored += 1
            self._warn("full", "discovery.table_full", ifname=ep.netdev, limit=MAX_SIGHTINGS)
            del self._table[min(self._table, key=lambda k: self._table[k].last_seen)]
        self._table[key] = Sighting(a, str(source), ep.netdev, time.monotonic())
        if old is None or old.announcement != a:
            # Rate-limited: a claim costs the sender one datagram, and it must not cost the journal a line each.
            if (held := self._limits["seen"].allow()) is not None:
                log.info(
                    "discovery.peer_seen",
                    held=held,
                    node_id=a.node_id,
                    name=a.name,
                    ifname=ep.netdev,
                    address=str(source),
                )
            self._new.set()
            self._new = asyncio.Event()
            if old is None and self._datagram:
                self._send(ep)  # answer a newcomer now, rather than up to a tick later
