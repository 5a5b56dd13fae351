"""The host configuration's model: the desired state of one node, and the actions of a host plan.

`DesiredHost` is what `host plan|apply` brings the node to: interconnect addresses and MTU per
twin, persistence, RoCE QoS, GPUDirect, NCCL settings, /etc/hosts entries, firewall openings and
an optional hostname. It is derived from the cluster (the node's index gives the addresses) and
discovery (which twins are cabled), and the config's `[host]` table overrides every field
(`sparkd.engine.hostcfg.desired`). Actions are what a plan shows; each component of the host
configuration has its own typed changes that produce them (`sparkd.engine.hostcfg`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum


class ActionKind(Enum):
    """Mirrors sparkd.v1.HostActionKind (name after the prefix)."""

    SET_MTU = "SET_MTU"
    ADD_ADDRESS = "ADD_ADDRESS"
    REMOVE_ADDRESS = "REMOVE_ADDRESS"
    SET_LINK_UP = "SET_LINK_UP"
    WRITE_FILE = "WRITE_FILE"
    REMOVE_FILE = "REMOVE_FILE"
    SET_QOS = "SET_QOS"
    LOAD_MODULE = "LOAD_MODULE"
    OPEN_PORT = "OPEN_PORT"
    SET_HOSTNAME = "SET_HOSTNAME"
    SET_LINK_DOWN = "SET_LINK_DOWN"
    CLOSE_PORT = "CLOSE_PORT"


@dataclass(frozen=True)
class HostAction:
    """One change to the host, as a plan shows it. `current`/`desired` are printable values."""

    kind: ActionKind
    target: str
    current: str
    desired: str
    description: str
    component: str = ""


@dataclass(frozen=True)
class TwinPlan:
    """One twin of the cabled port and the address it carries."""

    netdev: str
    rdma_device: str
    address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class QosSettings:
    """RoCE QoS, complete (DESIGN.md): trust DSCP, PFC on `priority`, the RDMA CM's ToS and NCCL_IB_TC.

    ToS 106 is DSCP 26 with ECN capable: DSCP 26 maps to priority 3 under the default DSCP-to-priority
    table (priority = DSCP >> 3), so RoCE traffic marked by the RDMA CM and by NCCL lands on the
    lossless priority that PFC protects."""

    enabled: bool = True
    priority: int = 3
    trust: str = "dscp"  # "dscp" | "pcp"
    tos: int = 106

    def pfc(self) -> tuple[bool, ...]:
        """PFC per priority 0..7: on for `priority` only (all off when QoS is off)."""
        return tuple(self.enabled and p == self.priority for p in range(8))


@dataclass(frozen=True)
class FirewallOpening:
    """A TCP port opened on the interconnect netdevs (when a firewall is active)."""

    port: int
    what: str


@dataclass(frozen=True)
class DesiredHost:
    """The whole desired host configuration of one node."""

    twins: tuple[TwinPlan, ...]
    mtu: int = 9000
    # Persist the interconnect for reboot: sparkd re-applies it at every start, and NetworkManager is told
    # to leave the twins alone (a conf.d file), so that nothing else owns them.
    persist: bool = True
    qos: QosSettings = field(default_factory=QosSettings)
    peermem: bool = False  # load nvidia-peermem (and persist it in modules-load.d): only when configured
    nccl: tuple[tuple[str, str], ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()  # (address, name) of every node, in the managed /etc/hosts block
    firewall: tuple[FirewallOpening, ...] = ()
    hostname: str = ""  # "" leaves the hostname alone
    existing: str = "take-over"  # what to do with an existing netplan/NetworkManager setup: "take-over" | "adopt"
    # Addresses of an existing setup that `existing = "adopt"` keeps, per netdev.
    adopted: tuple[tuple[str, ipaddress.IPv4Interface], ...] = ()
    # The interconnect subnets: addresses in them that the node should not have are stale.
    subnets: tuple[ipaddress.IPv4Network, ...] = ()
    # Files of an existing setup that sparkd takes over: each is disabled (removed) and kept, byte for
    # byte, as a backup under /var/lib/sparkd/host/backup (`host restore` brings it back).
    takeover: tuple[tuple[str, bytes], ...] = ()

    def netdevs(self) -> tuple[str, ...]:
        return tuple(t.netdev for t in self.twins)
