"""The config's `[host]` table: overrides of the derived host configuration (`sparkd.engine.hostcfg`).

Every field of the desired host state has a default derived from the cluster and from discovery;
the table overrides each. `host plan|apply -f FILE` reads the same table (and `[interconnect]`)
from a file, for one run, through the same reader: both are validated the same way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from sparkd.config_read import Reader

NETDEV_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}")  # IFNAMSIZ - 1; no '/', no whitespace
HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class HostConfig:
    """Overrides of the desired host state; "" (or the defaults) derive each field."""

    twin_a: str = ""  # netdev of twin A (default: discovered, the cabled cage's domain-0000 function)
    twin_b: str = ""
    address_a: ipaddress.IPv4Interface | None = None  # default: subnet_a + node index + 1
    address_b: ipaddress.IPv4Interface | None = None
    persist: bool = True
    existing: str = "take-over"  # an existing netplan/NetworkManager setup: "take-over" | "adopt"
    drift: str = "report"  # "report" | "repair"
    hosts: bool = True  # the managed /etc/hosts block
    firewall: bool = True  # open the ports in use on the interconnect when ufw is active
    peermem: bool = False
    hostname: str = ""
    qos: bool = True  # RoCE QoS: trust qos_trust, PFC on qos_priority, RDMA CM ToS and NCCL_IB_TC qos_tos
    qos_priority: int = 3
    qos_trust: str = "dscp"
    qos_tos: int = 106


def _interface(r: Reader, key: str) -> ipaddress.IPv4Interface | None:
    text: str = r.get(key, str, "")
    if not text:
        return None
    try:
        value = ipaddress.IPv4Interface(text)
    except ValueError as e:
        raise r.error(key, f"must be an IPv4 address with its prefix, like 192.168.100.1/24 ({e})") from e
    if value.network.prefixlen > 30 or value.ip in (value.network.network_address, value.network.broadcast_address):
        raise r.error(key, f"must be a host address of a /30 or larger subnet, got {text!r}")
    return value


def read_host(root: Reader) -> HostConfig:
    """The `[host]` table of `root`. Raises ConfigError naming the field."""
    h = root.sub("host")
    priority: int = h.get("qos_priority", int, 3)
    if not 0 <= priority <= 7:
        raise h.error("qos_priority", f"must be a priority from 0 to 7 (3 for RoCE), got {priority}")
    tos: int = h.get("qos_tos", int, 106)
    if not 0 <= tos <= 255:
        raise h.error("qos_tos", f"must be a ToS byte from 0 to 255 (106: DSCP 26, ECN capable), got {tos}")
    twins = []
    for key in ("twin_a", "twin_b"):
        name: str = h.get(key, str, "")
        if name and NETDEV_RE.fullmatch(name) is None:
            raise h.error(key, f"must be a netdev name like enp1s0f1np1 (at most 15 characters), got {name!r}")
        twins.append(name)
    hostname: str = h.get("hostname", str, "")
    if hostname and HOSTNAME_RE.fullmatch(hostname) is None:
        raise h.error("hostname", f"must be a host name of 1 to 63 letters, digits or '-', got {hostname!r}")
    config = HostConfig(
        twin_a=twins[0],
        twin_b=twins[1],
        address_a=_interface(h, "address_a"),
        address_b=_interface(h, "address_b"),
        persist=h.get("persist", bool, True),
        existing=h.choice("existing", ("take-over", "adopt"), "take-over"),
        drift=h.choice("drift", ("report", "repair"), "report"),
        hosts=h.get("hosts", bool, True),
        firewall=h.get("firewall", bool, True),
        peermem=h.get("peermem", bool, False),
        hostname=hostname,
        qos=h.get("qos", bool, True),
        qos_priority=priority,
        qos_trust=h.choice("qos_trust", ("dscp", "pcp"), "dscp"),
        qos_tos=tos,
    )
    if config.qos and config.qos_trust == "dscp" and tos >> 5 != priority:
        raise h.error(
            "qos_tos",
            f"is DSCP {tos >> 2}, which the DSCP-to-priority map puts on priority {tos >> 5}, not qos_priority "
            f"{priority}: use qos_tos = {(priority << 5) | (2 << 2) | 2} (DSCP {(priority << 3) | 2}, ECN capable)",
        )
    a, b = config.address_a, config.address_b
    if a is not None and b is not None and a.network.overlaps(b.network):
        raise h.error(
            "address_b",
            f"must be on another subnet than host.address_a ({a.network}): twins on one "
            "subnet make routing ambiguous and NCCL fail",
        )
    if config.twin_a and config.twin_a == config.twin_b:
        raise h.error("twin_b", "must differ from host.twin_a")
    h.finish()
    return config
