"""Netlink adapter (pyroute2 AsyncIPRoute): link state, MTU, addresses, routes.

Every call opens its own AsyncIPRoute bound to the namespace given at construction
(None: the caller's own namespace, which is how the daemon runs: inside its node's
namespace in the lab, in the root namespace on a Spark). Idempotence is the caller's
job: the host planner only asks for changes that are needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sparkd.errors import HostOperationFailed
from sparkd.model.inventory import LinkState


async def _collect(result: Any) -> list[Any]:
    """pyroute2 0.9 returns either a list or an async iterator; make it a list."""
    if hasattr(result, "__aiter__"):
        return [m async for m in result]
    return list(result)


class Pyroute2Netlink:
    """rtnetlink operations in one network namespace (implements `protocols.Netlink`)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    @asynccontextmanager
    async def _ipr(self) -> AsyncIterator[Any]:
        ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        async with ipr:
            yield ipr

    async def links(self) -> dict[str, LinkState]:
        """Every netdev with its state and IPv4 addresses, by name."""
        async with self._ipr() as ipr:
            links = await _collect(await ipr.link("dump"))
            addrs = await _collect(await ipr.addr("dump", family=socket.AF_INET))
            addrs6 = await _collect(await ipr.addr("dump", family=socket.AF_INET6))
        by_index: dict[int, list[ipaddress.IPv4Interface]] = {}
        for a in addrs:
            by_index.setdefault(a["index"], []).append(ipaddress.IPv4Interface(f"{a.get('address')}/{a['prefixlen']}"))
        link_local: dict[int, list[str]] = {}
        for a in addrs6:
            address = str(a.get("address") or "")
            tentative = int(a.get("flags") or 0) & 0x40  # IFA_F_TENTATIVE: DAD is still running
            if address.startswith("fe80:") and not tentative:
                link_local.setdefault(a["index"], []).append(address)
        result = {}
        for link in links:
            name = link.get("ifname")
            result[name] = LinkState(
                ifname=name,
                index=link["index"],
                admin_up=bool(link["flags"] & 1),
                carrier=bool(link.get("carrier")),
                operstate=str(link.get("operstate") or "UNKNOWN"),
                mtu=int(link.get("mtu") or 0),
                addresses=tuple(sorted(by_index.get(link["index"], []))),
                link_local=tuple(sorted(link_local.get(link["index"], []))),
            )
        return result

    def watch_links(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback` (on the running event loop) whenever the kernel reports a link or address change
        (carrier, state, a netdev added or removed, an address added or past DAD); returns the function that
        stops watching. The messages are only a signal: the state loop reads the links afresh."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        sock.bind((0, 0x1 | 0x10 | 0x100))  # RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                while sock.recv(65536):
                    pass
            except BlockingIOError:
                pass
            except OSError:  # ENOBUFS: messages were lost; a change happened all the same
                pass
            callback()

        loop.add_reader(sock.fileno(), readable)

        def stop() -> None:
            loop.remove_reader(sock.fileno())
            sock.close()

        return stop

    async def _index(self, ipr: Any, ifname: str) -> int:
        found = await ipr.link_lookup(ifname=ifname)
        if not found:
            raise HostOperationFailed(f"netdev {ifname} does not exist", ifname=ifname)
        return int(found[0])

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        await self._do(ifname, "set MTU", lambda ipr, i: ipr.link("set", index=i, mtu=mtu))

    async def set_up(self, ifname: str, up: bool = True) -> None:
        await self._do(ifname, "set state", lambda ipr, i: ipr.link("set", index=i, state="up" if up else "down"))

    async def add_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None:
        await self._do(
            ifname,
            "add address",
            lambda ipr, i: ipr.addr("add", index=i, address=str(address.ip), prefixlen=address.network.prefixlen),
        )

    async def remove_address(self, ifname: str, address: ipaddress.IPv4Interface) -> None:
        await self._do(
            ifname,
            "remove address",
            lambda ipr, i: ipr.addr("del", index=i, address=str(address.ip), prefixlen=address.network.prefixlen),
        )

    async def _do(self, ifname: str, what: str, op: Any) -> None:
        async with self._ipr() as ipr:
            index = await self._index(ipr, ifname)
            try:
                await op(ipr, index)
            except NetlinkError as e:
                raise HostOperationFailed(f"netlink: {what} on {ifname} failed: {e}", ifname=ifname) from e

    async def route_interface(self, address: str) -> str | None:
        """The name of the interface the kernel would send traffic to `address` out of, or None."""
        async with self._ipr() as ipr:
            try:
                routes = await _collect(await ipr.route("get", dst=address))
            except NetlinkError:
                return None  # no route at all (e.g. ENETUNREACH)
            if not routes:
                return None
            oif = routes[0].get("oif")
            if oif is None:
                return None
            links = await _collect(await ipr.link("get", index=oif))
            return str(links[0].get("ifname")) if links else None
