"""Lab network: a namespace per node and two veth twins per node.

Two nodes are cabled directly (like two Sparks with one QSFP cable): twin A to twin A,
twin B to twin B. Three or more go through a switch: a `sparklab-sw` namespace holding
one bridge per twin. Twins are left down and unaddressed: configuring them is sparkd's
job. Deleting a namespace deletes the veth ends inside it, so teardown is just that.
"""

from __future__ import annotations

from pyroute2 import IPRoute, NetNS, netns

from sparkd.lab.fixtures import TWIN_A, TWIN_B

SWITCH_NS = "sparklab-sw"


def node_names(n: int) -> list[str]:
    return [f"spark{i}" for i in range(1, n + 1)]


def _veth(ns1: str, name1: str, ns2: str, name2: str, tmp: str) -> None:
    """A veth pair with one end `name1` in `ns1` and the other `name2` in `ns2`."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=tmp, kind="veth", peer={"ifname": name2, "net_ns_fd": ns2})
        ipr.link("set", index=ipr.link_lookup(ifname=tmp)[0], net_ns_fd=ns1)
    with NetNS(ns1) as n:
        n.link("set", index=n.link_lookup(ifname=tmp)[0], ifname=name1)


def _namespace(name: str) -> None:
    netns.create(name)
    with NetNS(name) as n:
        n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")


def create_pair(a: str, b: str) -> None:
    """Two namespaces cabled directly, twin to twin (one QSFP cable between two Sparks)."""
    for name in (a, b):
        _namespace(name)
    _veth(a, TWIN_A, b, TWIN_A, f"{a[:10]}-ta")
    _veth(a, TWIN_B, b, TWIN_B, f"{a[:10]}-tb")


def create(nodes: list[str]) -> None:
    """Creates the namespaces and the cabling."""
    if len(nodes) == 2:
        create_pair(*nodes)
        return
    for name in [*nodes, SWITCH_NS]:
        _namespace(name)
    with NetNS(SWITCH_NS) as sw:
        for bridge in ("brA", "brB"):
            sw.link("add", ifname=bridge, kind="bridge")
            sw.link("set", index=sw.link_lookup(ifname=bridge)[0], state="up")
    for i, node in enumerate(nodes, start=1):
        for twin, bridge, port in ((TWIN_A, "brA", f"a{i}"), (TWIN_B, "brB", f"b{i}")):
            _veth(node, twin, SWITCH_NS, port, f"sparklab-t{i}")
            with NetNS(SWITCH_NS) as sw:
                idx = sw.link_lookup(ifname=port)[0]
                sw.link("set", index=idx, master=sw.link_lookup(ifname=bridge)[0])
                sw.link("set", index=idx, state="up")


def existing() -> list[str]:
    """Lab namespaces present now."""
    return [n for n in netns.listnetns() if n == SWITCH_NS or (n.startswith("spark") and n[5:].isdigit())]


def destroy(names: list[str]) -> None:
    """Removes the namespaces (and with them every veth end and bridge)."""
    present = set(netns.listnetns())
    for name in names:
        if name in present:
            netns.remove(name)
