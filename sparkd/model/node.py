"""A node's identity and inventory, as reported by GetNode."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sparkd.model.inventory import GpuInfo, MemoryInfo


@dataclass(frozen=True)
class PortInfo:
    """One CX-7 netdev: sysfs facts joined with netlink state."""

    netdev: str
    rdma_device: str
    pci_address: str
    twin: str  # "A", "B" or "" (not a twin of the cabled port)
    cabled: bool
    carrier: bool
    operstate: str
    mtu: int
    addresses: tuple[ipaddress.IPv4Interface, ...]
    rate_gbps: int
    rdma_state: str


@dataclass(frozen=True)
class NodeInfo:
    """Identity and inventory of this node."""

    node_id: str
    name: str
    role: str
    index: int
    sparkd_version: str
    kernel: str
    memory: MemoryInfo
    ports: tuple[PortInfo, ...]
    gpus: tuple[GpuInfo, ...]
    gpu_unavailable_reason: str
    key_fingerprint: str
