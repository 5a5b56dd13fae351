"""An interconnect setup that sparkd did not make: a netplan file or a NetworkManager profile.

Many Sparks were first set up by hand (NVIDIA's `/etc/netplan/40-cx7.yaml`, a guide's
`60-dgx-interconnect.yaml`) or still carry NetworkManager's generic DHCP profiles on the
ConnectX ports. `sparkd.engine.hostcfg.foreign` finds them; `host plan` shows each one
(`ForeignSetup.describe`), and the host configuration then adopts its addresses or takes
it over (disables it, keeping a backup).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ForeignSetup:
    """One file that configures (or may configure) a twin, as far as sparkd could read it.

    `netdevs` are the twins it configures, in the order the caller named them; `addresses`, `mtu`,
    `dhcp` and `link_local` say how (static IPv4 only: IPv6 is ignored). `other_interfaces` are the
    interfaces (or name patterns) of the same file that are not twins: such a file cannot be disabled
    as a whole. `problems` say what sparkd could not read or cannot take over safely."""

    path: str  # the host path, e.g. "/etc/netplan/40-cx7.yaml"
    kind: str  # "netplan" | "networkmanager"
    netdevs: tuple[str, ...] = ()
    addresses: tuple[tuple[str, ipaddress.IPv4Interface], ...] = ()
    mtu: tuple[tuple[str, int], ...] = ()
    dhcp: tuple[str, ...] = ()
    link_local: tuple[str, ...] = ()
    other_interfaces: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    def addresses_of(self, netdev: str) -> tuple[ipaddress.IPv4Interface, ...]:
        """The static IPv4 addresses it gives `netdev`, in the file's order."""
        return tuple(a for n, a in self.addresses if n == netdev)

    def describe(self) -> str:
        """One line for `host plan`, e.g. "/etc/netplan/40-cx7.yaml (netplan): enp1s0f1np1 192.168.100.10/24"."""
        parts = []
        for netdev in self.netdevs:
            what = [str(a) for a in self.addresses_of(netdev)]
            what += ["DHCP"] * (netdev in self.dhcp) + ["link-local"] * (netdev in self.link_local)
            what += [f"MTU {m}" for n, m in self.mtu if n == netdev]
            parts.append(" ".join([_printable(netdev), *what]))
        line = f"{_printable(self.path)} ({self.kind}): " + (", ".join(parts) or "no twin named")
        if self.other_interfaces:
            line += "; also configures " + ", ".join(_printable(i) for i in self.other_interfaces)
        if self.problems:
            line += "; " + "; ".join(_printable(p) for p in self.problems)
        return line


def _printable(text: str) -> str:
    """`text` as is, or escaped (ascii()) when it holds control or other unprintable characters."""
    return text if text.isprintable() else ascii(text)
