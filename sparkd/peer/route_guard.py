"""Refuses to dial a peer unless the kernel routes it out of an interconnect netdev."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from sparkd.errors import RouteNotOnInterconnect
from sparkd.host.protocols import Netlink


class RouteGuard:
    """Asks the kernel (netlink RTM_GETROUTE) which interface traffic to an address would use."""

    def __init__(self, netlink: Netlink, interconnect: Callable[[], Awaitable[Collection[str]]]) -> None:
        self.netlink = netlink
        self.interconnect = interconnect  # the twin netdevs, observed now

    async def check(self, address: str) -> str:
        """Returns the outgoing netdev; raises RouteNotOnInterconnect if it is not a twin."""
        allowed = await self.interconnect()
        ifname = await self.netlink.route_interface(address)
        if ifname is None or ifname not in allowed:
            raise RouteNotOnInterconnect(
                f"refusing to dial {address}: the kernel routes it via {ifname or 'no interface'}, not the "
                f"interconnect ({', '.join(sorted(allowed)) or 'no twin configured'}); "
                "run `sparkctl-client host apply` and check the cable",
                address=address,
                ifname=ifname or "",
            )
        return ifname
