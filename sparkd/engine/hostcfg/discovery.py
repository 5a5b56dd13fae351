"""What the cabled port is made of: each twin's RoCE port, PCIe link and RoCE v2 GID index (pure).

`discover` joins the twins (`sparkd.engine.twins.select_twins`), netlink link state and the
sysfs readings (GID table, PCIe link) into a `Discovery`, with a warning for each fact a
person should act on; `render_discovery` prints it for `host plan`. The RoCE v2 GID index
is resolved per HCA from gid_attrs/types + gids: it was 3 on one Spark and 4 on the other
of a pair, and drifts when netplan re-applies (recorded-outputs.md 1.1), so never assume 3.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Protocol

from sparkd.model.discovery import ROCE_V2, Discovery, Gid, TwinDiscovery, pcie_gbps
from sparkd.model.inventory import LinkState, RdmaPort, Twins

#: The PCIe link each twin should train at (Gen5 x4: about 126 Gb/s usable, recorded-outputs.md 1.5).
PCIE_GTS, PCIE_WIDTH = 32.0, 4
#: The RoCE rate of an ACTIVE Spark port on a direct cable (or a switch port fixed at 200G).
PORT_GBPS = 200


class GidSysfs(Protocol):
    """The sysfs readings discovery needs (`sparkd.host.sysfs.SysrootSysfs` has them)."""

    def gids(self, rdma_device: str, port: int = 1) -> list[Gid]: ...

    def pci_link(self, rdma_device: str) -> tuple[str, int] | None: ...


def roce_v2_gid_index(gids: Sequence[Gid], netdev: str, address: ipaddress.IPv4Address) -> int | None:
    """The lowest index of a RoCE v2 GID of `address` on `netdev`, or None when the table has none."""
    found = [g.index for g in gids if g.type == ROCE_V2 and g.netdev == netdev and g.ipv4 == address]
    return min(found, default=None)


def discover(
    sysfs: GidSysfs,
    links: Mapping[str, LinkState],
    twins: Twins | None,
    addresses: Mapping[str, ipaddress.IPv4Interface],
) -> Discovery:
    """The discovery of the cabled cage's `twins` (None: no cage is cabled). `addresses` maps each
    twin's netdev to the interconnect address it carries or will carry (`engine.host.desired_addresses`);
    `links` says whether it is there already (a missing GID then means something else). Reads only the
    GID tables and PCIe links through `sysfs`."""
    if twins is None:
        return Discovery(None, (), ("no ConnectX-7 port is cabled; plug the QSFP cable into cage p0 or p1",))
    found: list[TwinDiscovery] = []
    warnings: list[str] = []
    for port in twins.all():
        twin = _twin(sysfs, port, addresses.get(port.netdev))
        found.append(twin)
        link = links.get(port.netdev)
        carried = link is not None and twin.address is not None and twin.address in link.addresses
        warnings += _warnings(twin, carried)
    return Discovery(twins.a.function, tuple(found), tuple(warnings))


def _twin(sysfs: GidSysfs, port: RdmaPort, address: ipaddress.IPv4Interface | None) -> TwinDiscovery:
    gids = tuple(sysfs.gids(port.rdma_device))
    pci = sysfs.pci_link(port.rdma_device)
    index = None if address is None else roce_v2_gid_index(gids, port.netdev, address.ip)
    return TwinDiscovery(
        netdev=port.netdev,
        rdma_device=port.rdma_device,
        pci_address=port.pci_address,
        port_state=port.state,
        rate_gbps=port.rate_gbps,
        pcie_speed=None if pci is None else pci[0],
        pcie_width=None if pci is None else pci[1],
        address=address,
        roce_v2_gid_index=index,
        gids=gids,
    )


def _warnings(t: TwinDiscovery, carried: bool) -> list[str]:
    """What to fix on one twin, one short sentence each."""
    out = []
    gts = t.pcie_gts
    if gts is not None and t.pcie_width is not None and (gts < PCIE_GTS or t.pcie_width < PCIE_WIDTH):
        out.append(
            f"{t.netdev}: PCIe link {t.pcie_speed} x{t.pcie_width} is below {PCIE_GTS:.1f} GT/s x{PCIE_WIDTH} "
            f"(about {pcie_gbps(gts, t.pcie_width):.0f} of {pcie_gbps(PCIE_GTS, PCIE_WIDTH):.0f} Gb/s): "
            "update the BIOS (GX10 units before 2026-04 train the second controller at x2) and reboot"
        )
    if t.port_state == "ACTIVE" and t.rate_gbps < PORT_GBPS:
        out.append(
            f"{t.netdev}: RoCE port {t.rdma_device} is ACTIVE at {t.rate_gbps} Gb/s, below {PORT_GBPS}: "
            f"use a 200G QSFP cable, or fix the switch port at 200G (`ethtool -s {t.netdev} speed 200000`)"
        )
    if t.address is not None and t.roce_v2_gid_index is None:
        if carried:
            out.append(
                f"{t.netdev} carries {t.address.ip} but {t.rdma_device} has no RoCE v2 GID for it: check that "
                f"the port is ACTIVE (`rdma link`) and the address is on {t.netdev} itself, not a VLAN on it"
            )
        else:
            out.append(
                f"{t.netdev}: no RoCE v2 GID for {t.address.ip} on {t.rdma_device} yet (the address is not on "
                "the link): run `sparkctl-client host apply`, then plan again"
            )
    return out


def render_discovery(d: Discovery) -> list[str]:
    """Lines for people: the cabled cage, one line per twin (its RoCE port, PCIe link and RoCE v2 GID,
    like `show_gids`), then the warnings."""
    if d.cabled_function is None:
        lines = ["cabled cage: none"]
    else:
        lines = [f"cabled cage: p{d.cabled_function} (PCI function {d.cabled_function})"]
    for name, t in zip("AB", d.twins, strict=False):
        pcie = "PCIe unknown" if t.pcie_speed is None else f"PCIe {t.pcie_speed} x{t.pcie_width}"
        if t.address is None:
            gid = f"{len(t.gids)} GIDs"
        elif t.roce_v2_gid_index is None:
            gid = f"RoCE v2 GID for {t.address.ip}: none"
        else:
            gid = f"RoCE v2 GID index {t.roce_v2_gid_index} ({t.address.ip})"
        lines.append(
            f"twin {name} {t.netdev} ({t.rdma_device}, {t.pci_address}): {t.port_state} {t.rate_gbps} Gb/s, "
            f"{pcie}, {gid}"
        )
    lines += [f"warning: {w}" for w in d.warnings]
    return lines
