"""The desired host state of one node: derived from the cluster and discovery, overridden by `[host]`.

`derive` is pure: it takes what was observed (links, RoCE ports, existing setups) and the
config, and either returns a `DesiredHost` or raises InvalidSpec naming every bad field
(an unknown twin netdev, twins on one subnet, a subnet that overlaps the management
network). `read_overrides` parses a desired-state file (`host plan|apply -f FILE`) with the
config's own readers, so a file and the daemon config are validated the same way.
`to_record`/`from_record` are the JSON form kept on disk (the committed state, the journal).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparkd.config import Config, read_interconnect
from sparkd.config_host import NETDEV_RE, read_host
from sparkd.config_read import Reader
from sparkd.engine.hostcfg.files import TAKEOVER_DIRS
from sparkd.engine.twins import select_twins
from sparkd.errors import ConfigError, FieldViolation, InvalidSpec, PreconditionFailed
from sparkd.model.foreign import ForeignSetup
from sparkd.model.host import DesiredHost, FirewallOpening, QosSettings, TwinPlan
from sparkd.model.inventory import LinkState, RdmaPort, Twins
from sparkd.render.nccl import host_nccl_env

HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: The largest desired-state file `host plan|apply -f` takes.
MAX_OVERRIDES = 64 * 1024


@dataclass(frozen=True)
class Observed:
    """What the derivation needs to know of the node."""

    links: Mapping[str, LinkState]
    ports: Sequence[RdmaPort]
    foreign: Sequence[ForeignSetup] = ()
    foreign_contents: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    # Addresses adopted from an existing setup by an earlier apply (the committed state): kept while adopting.
    adopted: Sequence[tuple[str, ipaddress.IPv4Interface]] = ()


def read_overrides(text: str, config: Config) -> Config:
    """`config` with the `[interconnect]` and `[host]` tables of a desired-state file instead of its own.
    Raises InvalidSpec naming the field (as `desired.host.mtu`, say)."""
    if len(text.encode()) > MAX_OVERRIDES:
        raise InvalidSpec.one("desired_state", f"must be at most {MAX_OVERRIDES} bytes")
    try:
        doc = tomllib.loads(text)
        root = Reader("desired state", "", doc)
        interconnect = read_interconnect(root, config.node.index)
        host = read_host(root)
        root.finish()
    except tomllib.TOMLDecodeError as e:
        raise InvalidSpec.one("desired_state", f"is not valid TOML: {e}") from e
    except ConfigError as e:
        description = str(e).split(": ", 2)[-1]
        raise InvalidSpec.one(f"desired_state.{e.field}", description) from e
    return dataclasses.replace(config, interconnect=interconnect, host=host)


def _twins(config: Config, observed: Observed, bad: list[FieldViolation]) -> Twins | None:
    h = config.host
    by_netdev = {p.netdev: p for p in observed.ports}
    if not h.twin_a:
        return select_twins(list(observed.ports), observed.links, config.interconnect.mode)
    chosen: list[RdmaPort] = []
    for key, netdev in (("host.twin_a", h.twin_a), ("host.twin_b", h.twin_b)):
        if not netdev or (key == "host.twin_b" and config.interconnect.mode == "single"):
            continue
        if netdev not in observed.links:
            names = ", ".join(sorted(observed.links)) or "none"
            bad.append(FieldViolation(key, f"there is no netdev {netdev!r} on this node (it has: {names})"))
            continue
        chosen.append(by_netdev.get(netdev, RdmaPort("", netdev, "", 0, "")))
    if not chosen or len(chosen) < (1 if not h.twin_b or config.interconnect.mode == "single" else 2):
        return None
    return Twins(a=chosen[0], b=chosen[1] if len(chosen) > 1 else None)


def derive(config: Config, observed: Observed, index: int, cluster: Sequence[tuple[str, int]]) -> DesiredHost:
    """The desired state of the node of `index`; `cluster` is every node's (name, index), this one included."""
    bad: list[FieldViolation] = []
    ic, h = config.interconnect, config.host
    twins = _twins(config, observed, bad)
    if twins is None:
        raise InvalidSpec(bad)
    fields = (("host.address_a", "interconnect.subnet_a"), ("host.address_b", "interconnect.subnet_b"))
    plans: list[tuple[TwinPlan, str]] = []
    for port, (address_key, subnet_key), override, subnet in zip(
        twins.all(), fields, (h.address_a, h.address_b), (ic.subnet_a, ic.subnet_b), strict=False
    ):
        address = override or ic.address(subnet, index)
        plans.append((TwinPlan(port.netdev, port.rdma_device, address), address_key if override else subnet_key))
    if len(plans) == 2 and plans[0][0].address.network.overlaps(plans[1][0].address.network):
        field = plans[1][1]
        bad.append(
            FieldViolation(
                field,
                f"puts both twins on {plans[1][0].address.network}: twins on one subnet make routing ambiguous "
                "and NCCL fail; give twin B a subnet of its own (192.168.101.0/24)",
            )
        )
    netdevs = {p.netdev for p, _ in plans}
    for name, link in sorted(observed.links.items()):
        if name in netdevs or name == "lo":
            continue
        for address in link.addresses:
            for plan, field in plans:
                if address.network.overlaps(plan.address.network):
                    bad.append(
                        FieldViolation(
                            field,
                            f"{plan.address.network} overlaps {address.network} on {name} (the management or another "
                            "network): choose a subnet of its own for the interconnect",
                        )
                    )
    if bad:
        raise InvalidSpec(bad)
    qos = QosSettings(h.qos, h.qos_priority, h.qos_trust, h.qos_tos)
    nccl_twins = Twins(
        a=dataclasses.replace(twins.a, rdma_device=twins.a.rdma_device or twins.a.netdev),
        b=twins.b,
    )
    nccl = tuple(host_nccl_env(nccl_twins, qos).items())
    subnet_of = {i: ic.address(ic.subnet_a, i) for _, i in cluster}
    hosts = tuple(
        (str(subnet_of[i].ip), name) for name, i in sorted(cluster, key=lambda c: c[1]) if h.hosts and hosts_name(name)
    )
    firewall = (
        (FirewallOpening(config.peer.port, "peer API"), FirewallOpening(config.peer.pairing_port, "pairing"))
        if h.firewall
        else ()
    )
    takeover, adopted = _existing(h.existing, observed, netdevs)
    return DesiredHost(
        twins=tuple(p for p, _ in plans),
        mtu=ic.mtu,
        persist=h.persist,
        qos=qos,
        peermem=h.peermem,
        nccl=nccl,
        hosts=hosts,
        firewall=firewall,
        hostname=h.hostname,
        existing=h.existing,
        adopted=adopted,
        subnets=tuple(sorted({p.address.network for p, _ in plans} | {ic.subnet_a, ic.subnet_b})),
        takeover=takeover,
    )


def _existing(
    choice: str, observed: Observed, netdevs: set[str]
) -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, ipaddress.IPv4Interface], ...]]:
    """The files of existing setups to take over, and (when adopting) the addresses they gave the twins."""
    takeover: list[tuple[str, bytes]] = []
    adopted = [(n, a) for n, a in observed.adopted if n in netdevs] if choice == "adopt" else []
    for setup in observed.foreign:
        if not set(setup.netdevs) & netdevs:
            continue
        if setup.other_interfaces or setup.problems:
            why = "; ".join(setup.problems) or f"it also configures {', '.join(setup.other_interfaces)}"
            raise PreconditionFailed(
                f"{setup.path} configures the interconnect, but sparkd cannot take it over whole: {why}. Move the "
                "twins' part into a file of its own (or remove it), then plan again",
                path=setup.path,
            )
        takeover.append((setup.path, observed.foreign_contents[setup.path]))
        if choice == "adopt":
            adopted += [(n, a) for n, a in setup.addresses if n in netdevs]
    return tuple(takeover), tuple(sorted(set(adopted)))


def hosts_name(name: str) -> bool:
    """Whether a node's name goes into the /etc/hosts block: one RFC 1123 label (never a dotted name, which
    could shadow a real domain, nor `_`, which resolvers refuse)."""
    return HOST_LABEL.fullmatch(name) is not None


# --- the JSON form ------------------------------------------------------------------------------


def to_record(d: DesiredHost) -> dict[str, Any]:
    return {
        "twins": [[t.netdev, t.rdma_device, str(t.address)] for t in d.twins],
        "mtu": d.mtu,
        "persist": d.persist,
        "qos": [d.qos.enabled, d.qos.priority, d.qos.trust, d.qos.tos],
        "peermem": d.peermem,
        "nccl": [list(kv) for kv in d.nccl],
        "hosts": [list(kv) for kv in d.hosts],
        "firewall": [[f.port, f.what] for f in d.firewall],
        "hostname": d.hostname,
        "existing": d.existing,
        "adopted": [[n, str(a)] for n, a in d.adopted],
        "subnets": [str(s) for s in d.subnets],
        "takeover": [[p, base64.b64encode(c).decode()] for p, c in d.takeover],
    }


def from_record(r: Any) -> DesiredHost:
    """The DesiredHost `to_record` wrote; ValueError (or TypeError) on anything else."""
    if not isinstance(r, dict):
        raise ValueError("a desired-state record is an object")
    twins = tuple(TwinPlan(str(n), str(d), ipaddress.IPv4Interface(a)) for n, d, a in r["twins"])
    enabled, priority, trust, tos = r["qos"]
    desired = DesiredHost(
        twins=twins,
        mtu=int(r["mtu"]),
        persist=bool(r["persist"]),
        qos=QosSettings(bool(enabled), int(priority), str(trust), int(tos)),
        peermem=bool(r["peermem"]),
        nccl=tuple((str(k), str(v)) for k, v in r["nccl"]),
        hosts=tuple((str(a), str(n)) for a, n in r["hosts"]),
        firewall=tuple(FirewallOpening(int(p), str(w)) for p, w in r["firewall"]),
        hostname=str(r["hostname"]),
        existing=str(r["existing"]),
        adopted=tuple((str(n), ipaddress.IPv4Interface(a)) for n, a in r["adopted"]),
        subnets=tuple(ipaddress.IPv4Network(s) for s in r["subnets"]),
        takeover=tuple((str(p), base64.b64decode(c, validate=True)) for p, c in r["takeover"]),
    )
    if not 1280 <= desired.mtu <= 9216 or not 1 <= len(twins) <= 2:
        raise ValueError("a desired-state record has 1 or 2 twins and an MTU from 1280 to 9216")
    for path, _ in desired.takeover:
        if not any(
            path.startswith(d + "/") and "/" not in path[len(d) + 1 :] and ".." not in path for d in TAKEOVER_DIRS
        ):
            raise ValueError(
                f"a desired-state record takes over {path[:80]!r}, which is no netplan or NetworkManager file"
            )
    if not all(NETDEV_RE.fullmatch(t.netdev) for t in twins):
        raise ValueError("a desired-state record's twins are netdev names")
    if not all(k.startswith("NCCL_") for k, _ in desired.nccl):
        raise ValueError("a desired-state record's NCCL settings are NCCL_ variables")
    q = desired.qos
    if not (0 <= q.priority <= 7 and 0 <= q.tos <= 255 and q.trust in ("dscp", "pcp")):
        raise ValueError("a desired-state record's QoS is out of range")
    if not all(8 <= s.prefixlen <= 30 for s in desired.subnets):
        raise ValueError("a desired-state record's subnets are /8 to /30")
    return desired
