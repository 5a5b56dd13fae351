"""Which ConnectX-7 port is cabled, and which netdevs are its twins (a pure decision).

A Spark's CX-7 shows each QSFP cage as two PCI functions on two PCIe domains (0000 and
0002): four netdevs, e.g. enp1s0f0np0/enp1s0f1np1 and enP2p1s0f0np0/enP2p1s0f1np1. The
cabled cage is the PCI function whose RoCE port is ACTIVE or whose netdev has carrier;
it can differ per node, so each node detects its own. Twin A is the lower PCIe domain.
"""

from __future__ import annotations

from collections.abc import Mapping

from sparkd.errors import PreconditionFailed
from sparkd.model.inventory import LinkState, RdmaPort, Twins


def cabled_functions(ports: list[RdmaPort], links: Mapping[str, LinkState]) -> list[int]:
    """PCI functions (cages) with a live link, in order."""
    live = {p.function for p in ports if p.netdev in links and (p.state == "ACTIVE" or links[p.netdev].carrier)}
    return sorted(live)


def select_twins(ports: list[RdmaPort], links: Mapping[str, LinkState], mode: str = "dual") -> Twins:
    """The twins of the cabled cage. Raises PreconditionFailed when no cage is cabled."""
    present = [p for p in ports if p.netdev in links]
    cabled = cabled_functions(present, links)
    if not cabled:
        names = ", ".join(p.netdev for p in present) or "none found"
        raise PreconditionFailed(
            f"no cabled ConnectX-7 port (RoCE ports seen: {names}); check the QSFP cable and "
            "`sparkctl-client node show`"
        )
    function = cabled[0]
    twins = sorted((p for p in present if p.function == function), key=lambda p: p.pci_domain)
    b = twins[1] if len(twins) > 1 and mode == "dual" else None
    return Twins(a=twins[0], b=b)
