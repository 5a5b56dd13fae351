"""What discovery found on the cabled ConnectX-7 port: each twin's RoCE, PCIe and GID facts.

Built by `sparkd.engine.hostcfg.discovery.discover` from sysfs readings and netlink link
state; printed by `host plan`. Formats: shared/reference/recorded-outputs.md 1.1 (GIDs) and
1.5 (PCIe link).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: The GID types the kernel prints in gid_attrs/types/<N> (`print_gid_type`).
ROCE_V1 = "IB/RoCE v1"
ROCE_V2 = "RoCE v2"
GID_TYPES = (ROCE_V1, ROCE_V2)


@dataclass(frozen=True)
class Gid:
    """One used slot of a RoCE port's GID table."""

    index: int  # the slot: what NCCL_IB_GID_INDEX names
    gid: str  # "%pI6": 8 zero-padded groups, "0000:0000:0000:0000:0000:ffff:c0a8:640f"
    type: str  # ROCE_V1 or ROCE_V2
    netdev: str  # gid_attrs/ndevs/<N>; "" when the kernel names none

    @property
    def ipv4(self) -> ipaddress.IPv4Address | None:
        """The IPv4 address of an IPv4-mapped GID (::ffff:a.b.c.d), else None."""
        try:
            return ipaddress.IPv6Address(self.gid).ipv4_mapped
        except ValueError:
            return None

    @property
    def version(self) -> str:
        """ "v1" or "v2", as `show_gids` prints it."""
        return "v2" if self.type == ROCE_V2 else "v1"


@dataclass(frozen=True)
class TwinDiscovery:
    """One twin: its RoCE port, its PCIe link and the RoCE v2 GID of its interconnect address."""

    netdev: str
    rdma_device: str
    pci_address: str
    port_state: str  # "ACTIVE", "DOWN", ...
    rate_gbps: int
    pcie_speed: str | None  # current_link_speed as the kernel prints it ("32.0 GT/s PCIe"); None: unread
    pcie_width: int | None  # current_link_width (4); None: unread
    address: ipaddress.IPv4Interface | None  # the interconnect address this twin carries (or will)
    roce_v2_gid_index: int | None  # the RoCE v2 GID of `address` on this twin; None: not in the table
    gids: tuple[Gid, ...]

    @property
    def pcie_gts(self) -> float | None:
        """The PCIe link speed in GT/s, or None when unknown."""
        return parse_gts(self.pcie_speed or "")


@dataclass(frozen=True)
class Discovery:
    """The cabled cage (PCI function), its twins, and what a person should fix."""

    cabled_function: int | None  # None: no cage is cabled
    twins: tuple[TwinDiscovery, ...]
    warnings: tuple[str, ...]


def parse_gts(text: str) -> float | None:
    """ "32.0 GT/s PCIe" -> 32.0 (kernels up to 5.6 print "32 GT/s"); None for "Unknown" or anything else."""
    parts = text.split()
    if len(parts) < 2 or parts[1] != "GT/s" or len(parts[0]) > 8:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    return value if 0 < value <= 1000 else None


def pcie_gbps(gts: float, width: int) -> float:
    """The usable bandwidth of a PCIe link in Gb/s, as the kernel's "available PCIe bandwidth" line
    computes it: 8b/10b encoding up to 5 GT/s, 128b/130b from 8 GT/s (32 GT/s x4: 126.03)."""
    return gts * width * (0.8 if gts < 8 else 128 / 130)
