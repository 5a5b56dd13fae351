"""What a node is made of: ConnectX-7 ports (from sysfs) and link state (from netlink)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RdmaPort:
    """One RoCE device and its netdev, from /sys/class/infiniband (under the sysroot)."""

    rdma_device: str  # "rocep1s0f1"
    netdev: str  # "enp1s0f1np1"
    pci_address: str  # "0000:01:00.1"
    rate_gbps: int  # from ports/1/rate, "200 Gb/sec (4X HDR)" -> 200
    state: str  # from ports/1/state, "4: ACTIVE" -> "ACTIVE"

    @property
    def pci_domain(self) -> str:
        return self.pci_address.split(":", 1)[0]

    @property
    def function(self) -> int:
        """PCI function number: the QSFP cage (p0/p1) this netdev belongs to."""
        return int(self.pci_address.rsplit(".", 1)[1])


@dataclass(frozen=True)
class LinkState:
    """A netdev as netlink reports it."""

    ifname: str
    index: int
    admin_up: bool
    carrier: bool
    operstate: str
    mtu: int
    addresses: tuple[ipaddress.IPv4Interface, ...] = field(default=())
    link_local: tuple[str, ...] = field(default=())  # IPv6 fe80:: addresses past DAD, without the scope


@dataclass(frozen=True)
class Twins:
    """The two netdev/RoCE pairs of the cabled port. `b` is None in single-twin mode or when absent."""

    a: RdmaPort
    b: RdmaPort | None

    def all(self) -> tuple[RdmaPort, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)


@dataclass(frozen=True)
class MemoryInfo:
    """MemTotal and MemAvailable from /proc/meminfo, in bytes."""

    total_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class GpuInfo:
    """One GPU, as NVML reports it."""

    index: int
    name: str
    uuid: str
    driver_version: str
    cuda_version: str
