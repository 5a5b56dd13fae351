"""Lab network: a namespace per node, two veth twins per node, and a management LAN.

Two nodes are cabled directly (like two Sparks with one QSFP cable): twin A to twin A,
twin B to twin B. Three or more go through a switch: a `sparklab-sw` namespace holding
one bridge per twin, whose ports take jumbo frames (as a real switch for Sparks does).
`create` brings every twin up, so it has carrier and an IPv6 link-local address (after
~2 s of DAD), but gives it no IPv4 address and leaves its MTU at 1500: configuring the
link is sparkd's job (`host apply`).

Each node also has its 10GbE management port, `mgmt0`: a veth to the bridge `brM` in the
`sparklab-mgmt` namespace (no uplink anywhere), addressed 10.77.0.<node number>/24, with
the node's IPv4 default route via the bridge (10.77.0.254). So a node has a real route
that is not the interconnect, as a Spark on a LAN has, and tests can show that sparkd's
traffic stays off it. Deleting a namespace deletes the veth ends inside it, so teardown
is just that.
"""

from __future__ import annotations

import socket
import subprocess

from pyroute2 import IPRoute, NetNS, netns

from sparkd.lab.fixtures import TWIN_A, TWIN_B

SWITCH_NS = "sparklab-sw"
MGMT_NS = "sparklab-mgmt"
MGMT_IF = "mgmt0"
MGMT_BRIDGE = "brM"
MGMT_PREFIX = "10.77.0"
MGMT_GATEWAY = f"{MGMT_PREFIX}.254"
#: The MTU of the switch's ports (the twins' own MTU is sparkd's to set).
SWITCH_MTU = 9000
IFA_F_TENTATIVE = 0x40


def node_names(n: int) -> list[str]:
    return [f"spark{i}" for i in range(1, n + 1)]


def namespaces(n: int) -> list[str]:
    """Every namespace an n-node lab consists of: the nodes, the switch (3+ nodes), the management LAN."""
    return [*node_names(n), *([SWITCH_NS] if n > 2 else []), MGMT_NS]


def mgmt_address(number: int) -> str:
    """The management address of node `number` (spark1 is 1)."""
    return f"{MGMT_PREFIX}.{number}"


def _veth(ns1: str, name1: str, ns2: str, name2: str, tmp: str) -> None:
    """A veth pair with one end `name1` in `ns1` and the other `name2` in `ns2`, both down."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=tmp, kind="veth", peer={"ifname": name2, "net_ns_fd": ns2})
        ipr.link("set", index=ipr.link_lookup(ifname=tmp)[0], net_ns_fd=ns1)
    with NetNS(ns1) as n:
        n.link("set", index=n.link_lookup(ifname=tmp)[0], ifname=name1)


def _set_up(ns: str, *ifnames: str) -> None:
    with NetNS(ns) as n:
        for ifname in ifnames:
            n.link("set", index=n.link_lookup(ifname=ifname)[0], state="up")


def _namespace(name: str) -> None:
    netns.create(name)
    _set_up(name, "lo")


def _bridge(ns: str, name: str, address: str | None = None) -> None:
    with NetNS(ns) as n:
        n.link("add", ifname=name, kind="bridge")
        index = n.link_lookup(ifname=name)[0]
        if address is not None:
            n.addr("add", index=index, address=address, prefixlen=24)
        n.link("set", index=index, state="up")


def _port(ns: str, port: str, bridge: str, mtu: int | None = None) -> None:
    """Enslaves `port` to `bridge` (both in `ns`) and brings it up."""
    with NetNS(ns) as n:
        index = n.link_lookup(ifname=port)[0]
        if mtu is not None:
            n.link("set", index=index, mtu=mtu)
        n.link("set", index=index, master=n.link_lookup(ifname=bridge)[0])
        n.link("set", index=index, state="up")


def create_pair(a: str, b: str, up: bool = False) -> None:
    """Two namespaces cabled directly, twin to twin (one QSFP cable between two Sparks).

    The twins stay down unless `up` (tests/integration starts from down twins; the lab brings them up).
    """
    for name in (a, b):
        _namespace(name)
    _veth(a, TWIN_A, b, TWIN_A, f"{a[:10]}-ta")
    _veth(a, TWIN_B, b, TWIN_B, f"{a[:10]}-tb")
    if up:
        for name in (a, b):
            _set_up(name, TWIN_A, TWIN_B)


def _switch(nodes: list[str]) -> None:
    """Cables every node's twins to one bridge per twin subnet in the switch namespace."""
    _namespace(SWITCH_NS)
    for bridge in ("brA", "brB"):
        _bridge(SWITCH_NS, bridge)
    for i, node in enumerate(nodes, start=1):
        for twin, bridge, port in ((TWIN_A, "brA", f"a{i}"), (TWIN_B, "brB", f"b{i}")):
            _veth(node, twin, SWITCH_NS, port, f"sparklab-t{i}")
            _port(SWITCH_NS, port, bridge, SWITCH_MTU)
        _set_up(node, TWIN_A, TWIN_B)


#: The management LAN has no DNS server: a lookup that leaves a node (for its resolv.conf's server, which is
#: this machine's) is turned to the gateway, which refuses it at once (ICMP port unreachable, TCP reset),
#: rather than waiting out the resolver's timeouts: torch's c10d names each peer socket by reverse lookup
#: (10 s each), which a Spark's DNS or /etc/hosts answers.
NO_DNS = f"""table ip sparklab_dns {{
 chain pre {{
  type nat hook prerouting priority dstnat;
  udp dport 53 dnat to {MGMT_GATEWAY}
  tcp dport 53 dnat to {MGMT_GATEWAY}
 }}
}}
"""


def _management(nodes: list[str]) -> None:
    """The management LAN: each node's mgmt0 on one bridge, the node's default route via the bridge."""
    _namespace(MGMT_NS)
    _bridge(MGMT_NS, MGMT_BRIDGE, MGMT_GATEWAY)
    subprocess.run(["ip", "netns", "exec", MGMT_NS, "nft", "-f", "-"], input=NO_DNS, text=True, check=True)
    for i, node in enumerate(nodes, start=1):
        _veth(node, MGMT_IF, MGMT_NS, f"m{i}", f"sparklab-m{i}")
        _port(MGMT_NS, f"m{i}", MGMT_BRIDGE)
        with NetNS(node) as n:
            index = n.link_lookup(ifname=MGMT_IF)[0]
            n.addr("add", index=index, address=mgmt_address(i), prefixlen=24)
            n.link("set", index=index, state="up")
            n.route("add", dst="0.0.0.0/0", gateway=MGMT_GATEWAY, oif=index)


def create(nodes: list[str]) -> None:
    """Creates the namespaces, the cabling (twins up, unaddressed) and the management LAN."""
    if len(nodes) == 2:
        create_pair(nodes[0], nodes[1], up=True)
    else:
        for name in nodes:
            _namespace(name)
        _switch(nodes)
    _management(nodes)


def link_local_ready(node: str) -> bool:
    """Whether both twins of `node` have an IPv6 link-local address that passed DAD."""
    with NetNS(node) as n:
        ready = set()
        for twin in (TWIN_A, TWIN_B):
            found = n.link_lookup(ifname=twin)
            if not found:
                return False
            for a in n.addr("dump", family=socket.AF_INET6, index=found[0]):
                flags = a.get("IFA_FLAGS", a["flags"])
                if str(a.get("IFA_ADDRESS", "")).startswith("fe80:") and not flags & IFA_F_TENTATIVE:
                    ready.add(twin)
    return len(ready) == 2


def existing() -> list[str]:
    """Lab namespaces present now."""
    return [n for n in netns.listnetns() if n in (SWITCH_NS, MGMT_NS) or (n.startswith("spark") and n[5:].isdigit())]


def destroy(names: list[str]) -> None:
    """Removes the namespaces (and with them every veth end and bridge)."""
    present = set(netns.listnetns())
    for name in names:
        if name in present:
            netns.remove(name)
