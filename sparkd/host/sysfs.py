"""Reads the ConnectX-7 RDMA layout from /sys/class/infiniband under the sysroot.

Only static facts come from here (which netdev belongs to which RoCE device, PCI
address, RoCE port rate and state). Link state (carrier, MTU, addresses) always comes
from netlink: /sys/class/net is wrong inside a network namespace joined with setns.
Formats: shared/reference/recorded-outputs.md sections 1.1, 1.2 and 1.6.
"""

from __future__ import annotations

import os

from sparkd.host.sysroot import Sysroot
from sparkd.model.inventory import RdmaPort


def parse_state(text: str) -> str:
    """ "4: ACTIVE\\n" -> "ACTIVE"."""
    return text.strip().partition(": ")[2] or text.strip()


def parse_rate_gbps(text: str) -> int:
    """ "200 Gb/sec (4X HDR)\\n" -> 200; "2.5 Gb/sec (1X SDR)" -> 2."""
    first = text.strip().split(" ", 1)[0]
    try:
        return int(float(first))
    except ValueError:
        return 0


class SysrootSysfs:
    """RDMA sysfs reader (implements `protocols.Sysfs`)."""

    def __init__(self, sysroot: Sysroot) -> None:
        self.sysroot = sysroot

    def rdma_ports(self) -> list[RdmaPort]:
        """Every RoCE device that has a netdev, sorted by PCI address."""
        base = self.sysroot.path("/sys/class/infiniband")
        try:
            devices = sorted(os.listdir(base))
        except FileNotFoundError:
            return []
        ports = []
        for dev in devices:
            device_dir = base / dev / "device"
            try:
                pci = os.path.basename(os.readlink(device_dir))
                netdevs = sorted(os.listdir(device_dir / "net"))
            except OSError:
                continue
            if not netdevs:
                continue
            port_dir = base / dev / "ports" / "1"
            state = _read(port_dir / "state")
            rate = _read(port_dir / "rate")
            ports.append(RdmaPort(dev, netdevs[0], pci, parse_rate_gbps(rate), parse_state(state)))
        return sorted(ports, key=lambda p: p.pci_address)


def _read(path: os.PathLike[str]) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
