"""Reads the ConnectX-7 RDMA layout from /sys/class/infiniband under the sysroot.

Only static facts come from here (which netdev belongs to which RoCE device, PCI
address, RoCE port rate and state). Link state (carrier, MTU, addresses) always comes
from netlink: /sys/class/net is wrong inside a network namespace joined with setns.
GID tables and the PCIe link are read with `Sysroot.read_resolved`: symlinks (the
`device` link, /sys/class/infiniband/<dev> itself on a real host) are followed only while
they stay inside the sysroot, and each read is bounded.
Formats: shared/reference/recorded-outputs.md sections 1.1, 1.2, 1.5 and 1.6.
"""

from __future__ import annotations

import os
import re

from sparkd.errors import HostOperationFailed, shown
from sparkd.host.sysroot import Sysroot
from sparkd.model.discovery import GID_TYPES, Gid
from sparkd.model.inventory import RdmaPort

#: GID slots read per port at most (mlx5 RoCE tables have 255).
MAX_GID_SLOTS = 256
#: Bytes read per sysfs attribute at most; a longer answer is ignored.
ATTR_LIMIT = 128
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
_GID = re.compile(r"[0-9a-f]{4}(?::[0-9a-f]{4}){7}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NETDEV = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_SPEED = re.compile(r"[A-Za-z0-9 ./]{1,32}")


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

    def gids(self, rdma_device: str, port: int = 1) -> list[Gid]:
        """The used slots of the port's GID table, by index. Zero GIDs (empty slots) and slots whose
        files are unreadable or malformed are skipped; at most `MAX_GID_SLOTS` slots are read, and the
        table ends at the first slot that does not exist. HostOperationFailed for a bad device name."""
        base = f"{_device_dir(rdma_device)}/ports/{_port(port)}"
        found = []
        for n in range(MAX_GID_SLOTS):
            try:
                text = self._attr(f"{base}/gids/{n}")
                if text is None:
                    break
                gid = text.lower()
                if gid == ZERO_GID or not _GID.fullmatch(gid):
                    continue
                kind = self._attr(f"{base}/gid_attrs/types/{n}")
            except (OSError, ValueError):
                continue  # unreadable, malformed, a link out of the sysroot, or emptied since
            try:
                ndev = self._attr(f"{base}/gid_attrs/ndevs/{n}") or ""
            except (OSError, ValueError):
                ndev = ""  # the kernel fails the read for a GID without a netdev
            if kind in GID_TYPES and (not ndev or _NETDEV.fullmatch(ndev)):
                found.append(Gid(n, gid, kind, ndev))
        return found

    def pci_link(self, rdma_device: str) -> tuple[str, int] | None:
        """(current_link_speed as the kernel prints it, e.g. "32.0 GT/s PCIe"; current_link_width, e.g.
        4) of the device's PCI function, through its `device` link; None when absent, unreadable or
        malformed, or when the link leaves the sysroot. HostOperationFailed for a bad device name.
        The speed stays text ("Unknown" is a kernel answer too): `model.discovery.parse_gts` reads it."""
        device = f"{_device_dir(rdma_device)}/device"
        try:
            speed = self._attr(f"{device}/current_link_speed")
            width = self._attr(f"{device}/current_link_width")
        except (OSError, ValueError):
            return None
        if speed is None or width is None or not _SPEED.fullmatch(speed):
            return None
        if not width.isdigit() or len(width) > 2 or int(width) > 32:
            return None
        return speed, int(width)

    def _attr(self, host_path: str) -> str | None:
        """A sysfs attribute's text, stripped; None when absent. ValueError when longer than `ATTR_LIMIT`
        bytes or not ASCII; OSError when it cannot be read (or resolves outside the sysroot)."""
        data = self.sysroot.read_resolved(host_path, ATTR_LIMIT)
        if data is None:
            return None
        if len(data) > ATTR_LIMIT or not data.isascii():
            raise ValueError(f"{host_path}: not a sysfs attribute")
        return data.decode().strip()


def _device_dir(rdma_device: str) -> str:
    if not _NAME.fullmatch(rdma_device):
        raise HostOperationFailed(
            f"RDMA device name {shown(rdma_device)} is not a device name; use one listed in "
            "/sys/class/infiniband (e.g. rocep1s0f1)",
            rdmaDevice=rdma_device[:64],
        )
    return f"/sys/class/infiniband/{rdma_device}"


def _port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 255:
        raise HostOperationFailed(f"RDMA port {shown(port)} is not a port number (1..255); Spark ports are 1")
    return port


def _read(path: os.PathLike[str]) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
