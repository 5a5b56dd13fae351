"""The twins' links: MTU, administrative state and IPv4 addresses, through netlink (pyroute2).

An item is what one twin carries now. The target keeps every address outside the
interconnect subnets (an operator's own), drops interconnect addresses that are not this
node's (stale ones, unless an existing setup's addresses are adopted), and adds the
node's own. Link state always comes from netlink, never /sys/class/net (DESIGN.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from sparkd.config_host import NETDEV_RE as NETDEV
from sparkd.engine.hostcfg.component import Change, Record
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import Netlink
from sparkd.model.host import ActionKind, DesiredHost, HostAction


@dataclass(frozen=True)
class LinkItem:
    """One netdev's configuration: MTU, administratively up, and its IPv4 addresses (sorted)."""

    mtu: int
    up: bool
    addresses: tuple[ipaddress.IPv4Interface, ...]


@dataclass(frozen=True)
class SetMtu:
    netdev: str
    current: int
    desired: int

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.SET_MTU,
            self.netdev,
            str(self.current),
            str(self.desired),
            f"set MTU of {self.netdev} from {self.current} to {self.desired}",
            "links",
        )


@dataclass(frozen=True)
class AddAddress:
    netdev: str
    address: ipaddress.IPv4Interface

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.ADD_ADDRESS,
            self.netdev,
            "",
            str(self.address),
            f"add address {self.address} to {self.netdev}",
            "links",
        )


@dataclass(frozen=True)
class RemoveAddress:
    netdev: str
    address: ipaddress.IPv4Interface

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.REMOVE_ADDRESS,
            self.netdev,
            str(self.address),
            "",
            f"remove address {self.address} from {self.netdev}",
            "links",
        )


@dataclass(frozen=True)
class SetState:
    netdev: str
    up: bool

    def show(self) -> HostAction:
        state = "up" if self.up else "down"
        return HostAction(
            ActionKind.SET_LINK_UP if self.up else ActionKind.SET_LINK_DOWN,
            self.netdev,
            "down" if self.up else "up",
            state,
            f"set {self.netdev} {state}",
            "links",
        )


class LinksComponent:
    """Addresses, MTU and state of the twins (implements `component.Component`)."""

    name = "links"

    def __init__(self, netlink: Netlink) -> None:
        self.netlink = netlink

    def accepts(self, key: str) -> bool:
        return NETDEV.fullmatch(key) is not None

    def keys(self, desired: DesiredHost) -> list[str]:
        return list(desired.netdevs())

    async def observe(self, keys: list[str]) -> Mapping[str, LinkItem | None]:
        links = await self.netlink.links()
        result: dict[str, LinkItem | None] = {}
        for key in keys:
            link = links.get(key)
            result[key] = None if link is None else LinkItem(link.mtu, link.admin_up, tuple(sorted(link.addresses)))
        return result

    def target(self, desired: DesiredHost, key: str, have: LinkItem | None) -> LinkItem | None:
        if have is None:
            return None  # the netdev is gone: nothing to configure (planning refuses a missing twin first)
        own = [t.address for t in desired.twins if t.netdev == key]
        adopted = [a for netdev, a in desired.adopted if netdev == key]
        keep = [
            a
            for a in have.addresses
            if a in own or a in adopted or not any(a.ip in subnet for subnet in desired.subnets)
        ]
        addresses = tuple(sorted(set(keep) | set(own) | set(adopted)))
        return LinkItem(desired.mtu, True, addresses)

    def diff(self, key: str, want: LinkItem | None, have: LinkItem | None) -> list[Change]:
        if want is None or have is None:
            return []  # a netdev that is not there cannot be changed, nor brought back
        changes: list[Change] = []
        if want.mtu != have.mtu:
            changes.append(SetMtu(key, have.mtu, want.mtu))
        changes += [RemoveAddress(key, a) for a in have.addresses if a not in want.addresses]
        changes += [AddAddress(key, a) for a in want.addresses if a not in have.addresses]
        if want.up != have.up:
            changes.append(SetState(key, want.up))
        return changes

    async def apply(self, change: Change) -> None:
        match change:
            case SetMtu():
                await self.netlink.set_mtu(change.netdev, change.desired)
            case AddAddress():
                await self.netlink.add_address(change.netdev, change.address)
            case RemoveAddress():
                await self.netlink.remove_address(change.netdev, change.address)
            case SetState():
                await self.netlink.set_up(change.netdev, change.up)
            case _:
                raise HostOperationFailed(f"not a link change: {change!r}")

    def dump(self, item: LinkItem | None) -> Record:
        if item is None:
            return None
        return {"mtu": item.mtu, "up": item.up, "addresses": [str(a) for a in item.addresses]}

    def load(self, record: Record) -> LinkItem | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"mtu", "up", "addresses"}:
            raise ValueError("a link record has exactly mtu, up and addresses")
        mtu, up, addresses = record["mtu"], record["up"], record["addresses"]
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
            raise ValueError(f"a link record's mtu must be an integer from 68 to 65535, got {mtu!r}")
        if not isinstance(up, bool) or not isinstance(addresses, list) or len(addresses) > 64:
            raise ValueError("a link record's up is a boolean and its addresses a list of at most 64")
        parsed = tuple(sorted(ipaddress.IPv4Interface(a) for a in addresses if isinstance(a, str)))
        if len(parsed) != len(addresses):
            raise ValueError("a link record's addresses are strings like 192.168.100.1/24")
        return LinkItem(mtu, up, parsed)
