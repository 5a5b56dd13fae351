"""Detection of hand-made interconnect setups: netplan files and NetworkManager keyfiles on the twins."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from sparkd.engine.hostcfg.foreign import MAX_FILE_BYTES, MAX_FILES, find_foreign
from sparkd.host.sysroot import Sysroot
from sparkd.model.foreign import ForeignSetup
from tests.fakes.host import NETDEVS

FIXTURES = Path(__file__).parents[1] / "data" / "foreign"
NETPLAN = "/etc/netplan"
NM = "/etc/NetworkManager/system-connections"


def ip(text: str) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(text)


def put(tmp_path: Path, host_path: str, text: str) -> None:
    target = tmp_path / host_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_nvidia_static_playbook_file(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/40-cx7.yaml", (FIXTURES / "40-cx7-static.yaml").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup == ForeignSetup(
        path="/etc/netplan/40-cx7.yaml",
        kind="netplan",
        netdevs=("enp1s0f1np1", "enP2p1s0f1np1"),
        addresses=(("enp1s0f1np1", ip("192.168.100.10/24")), ("enP2p1s0f1np1", ip("192.168.101.10/24"))),
    )
    assert setup.describe() == (
        "/etc/netplan/40-cx7.yaml (netplan): enp1s0f1np1 192.168.100.10/24, enP2p1s0f1np1 192.168.101.10/24"
    )


def test_nvidia_link_local_playbook_file(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/40-cx7.yaml", (FIXTURES / "40-cx7-link-local.yaml").read_text())
    assert find_foreign(Sysroot(tmp_path), NETDEVS) == [
        ForeignSetup(
            path="/etc/netplan/40-cx7.yaml",
            kind="netplan",
            netdevs=("enp1s0f0np0", "enp1s0f1np1"),
            link_local=("enp1s0f0np0", "enp1s0f1np1"),
        )
    ]


def test_seed_guide_file_for_spark1(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/60-dgx-interconnect.yaml", (FIXTURES / "60-dgx-interconnect.yaml").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup == ForeignSetup(
        path="/etc/netplan/60-dgx-interconnect.yaml",
        kind="netplan",
        netdevs=("enp1s0f0np0",),
        addresses=(("enp1s0f0np0", ip("192.168.100.1/24")),),
        mtu=(("enp1s0f0np0", 9000),),
    )
    assert setup.describe() == "/etc/netplan/60-dgx-interconnect.yaml (netplan): enp1s0f0np0 192.168.100.1/24 MTU 9000"


def test_management_only_file_and_unrelated_profile_are_not_reported(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/01-management.yaml", (FIXTURES / "01-management.yaml").read_text())
    put(tmp_path, f"{NM}/management.nmconnection", (FIXTURES / "unrelated.nmconnection").read_text())
    put(tmp_path, "/etc/netplan/README", "enp1s0f1np1 is not read: no .yaml suffix\n")
    put(tmp_path, "/etc/netplan/.hidden.yaml", "network: {ethernets: {enp1s0f1np1: {dhcp4: true}}}\n")
    put(tmp_path, "/etc/netplan/00-empty.yaml", "")
    assert find_foreign(Sysroot(tmp_path), NETDEVS) == []


def test_mixed_file_reports_the_management_nic_as_another_interface(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/50-mixed.yml", (FIXTURES / "50-mixed.yaml").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup == ForeignSetup(
        path="/etc/netplan/50-mixed.yml",
        kind="netplan",
        netdevs=("enP2p1s0f1np1",),
        addresses=(("enP2p1s0f1np1", ip("192.168.101.10/24")),),  # the IPv6 address is ignored
        mtu=(("enP2p1s0f1np1", 9000),),
        other_interfaces=("enP7s7",),
    )
    assert setup.describe().endswith("enP2p1s0f1np1 192.168.101.10/24 MTU 9000; also configures enP7s7")


def test_networkmanager_dhcp_profile_on_a_twin(tmp_path: Path) -> None:
    put(tmp_path, f"{NM}/Wired connection 2.nmconnection", (FIXTURES / "twin-dhcp.nmconnection").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup == ForeignSetup(
        path=f"{NM}/Wired connection 2.nmconnection",
        kind="networkmanager",
        netdevs=("enp1s0f1np1",),
        mtu=(("enp1s0f1np1", 1500),),
        dhcp=("enp1s0f1np1",),
    )
    assert setup.describe() == f"{NM}/Wired connection 2.nmconnection (networkmanager): enp1s0f1np1 DHCP MTU 1500"


def test_networkmanager_generic_profile_may_bind_to_a_twin(tmp_path: Path) -> None:
    put(tmp_path, f"{NM}/Wired connection 1.nmconnection", (FIXTURES / "generic.nmconnection").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    problem = (
        "is a generic wired profile (no interface-name, ipv4.method 'auto'): NetworkManager may bind it to a "
        "twin; give it an interface-name or set autoconnect=false"
    )
    assert setup == ForeignSetup(
        path=f"{NM}/Wired connection 1.nmconnection", kind="networkmanager", problems=(problem,)
    )
    assert setup.describe() == f"{NM}/Wired connection 1.nmconnection (networkmanager): no twin named; {problem}"
    text = (
        (FIXTURES / "generic.nmconnection").read_text().replace("type=ethernet\n", "type=ethernet\nautoconnect=false\n")
    )
    put(tmp_path, f"{NM}/Wired connection 1.nmconnection", text)
    assert find_foreign(Sysroot(tmp_path), NETDEVS) == []


def test_networkmanager_static_addresses_in_number_order(tmp_path: Path) -> None:
    put(
        tmp_path,
        f"{NM}/cx7.nmconnection",
        "# written by hand\n[connection]\nid=cx7\ntype=802-3-ethernet\ninterface-name=enP2p1s0f1np1\n"
        "interface-name=enp1s0f1np1\n"  # a duplicate key: the last one counts, as in NetworkManager
        "[802-3-ethernet]\nmtu=9000\n"
        "[ipv4]\nmethod=manual\naddress10=192.168.102.10/24\naddress1=192.168.100.10/24,192.168.100.1\n"
        "address2=192.168.101.10/24\nroute1=10.0.0.0/8,192.168.100.1\n",
    )
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup == ForeignSetup(
        path=f"{NM}/cx7.nmconnection",
        kind="networkmanager",
        netdevs=("enp1s0f1np1",),
        addresses=tuple(("enp1s0f1np1", ip(f"192.168.{n}.10/24")) for n in (100, 101, 102)),
        mtu=(("enp1s0f1np1", 9000),),
    )


def test_networkmanager_link_local_and_bad_values(tmp_path: Path) -> None:
    put(
        tmp_path,
        f"{NM}/ll.nmconnection",
        "[connection]\ntype=ethernet\ninterface-name=enp1s0f0np0\nmaster=bond0\nslave-type=bond\n"
        "[ethernet]\nmtu=jumbo\n[ipv4]\nmethod=link-local\n",
    )
    put(tmp_path, f"{NM}/bad.nmconnection", "interface-name=enp1s0f1np1\n")
    put(tmp_path, f"{NM}/shared.nmconnection", "[connection]\ninterface-name=enP2p1s0f1np1\n[ipv4]\nmethod=shared\n")
    bad, ll, shared = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert bad.netdevs == () and len(bad.problems) == 1
    assert bad.problems[0].startswith("is not a keyfile (") and "section header" in bad.problems[0]
    assert ll.netdevs == ll.link_local == ("enp1s0f0np0",) and ll.mtu == () and ll.dhcp == ()
    assert ll.problems == (
        "makes enp1s0f0np0 a port of 'bond0': sparkd cannot take that over; remove it by hand",
        "ethernet.mtu: MTU 'jumbo' is not a number from 68 to 65535",
    )
    assert shared.netdevs == ("enP2p1s0f1np1",) and shared.problems == (
        "is a '' profile, not an ethernet one: sparkd cannot take it over",
        "ipv4.method 'shared' on enP2p1s0f1np1: sparkd cannot take that over",
    )


def test_malformed_and_unsafe_yaml_are_problems(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/10-broken.yaml", "network:\n  ethernets:\n    enp1s0f1np1: [unclosed\n")
    put(tmp_path, "/etc/netplan/20-alias.yaml", "a: &x [1, 2]\nnetwork: {ethernets: {enp1s0f1np1: {mtu: *x}}}\n")
    put(tmp_path, "/etc/netplan/30-list.yaml", "- network\n")
    put(tmp_path, "/etc/netplan/40-tag.yaml", "network: !!python/object:os.system {}\n")
    put(tmp_path, "/etc/netplan/50-deep.yaml", "network: " + "[" * 40 + "]" * 40 + "\n")
    put(tmp_path, "/etc/netplan/60-binary.yaml", "network: {}\n")
    (tmp_path / "etc/netplan/60-binary.yaml").write_bytes(b"\xff\xfe network")
    found = {s.path.rsplit("/", 1)[1]: s for s in find_foreign(Sysroot(tmp_path), NETDEVS)}
    assert all(s.netdevs == () and len(s.problems) == 1 for s in found.values())
    problems = {name: s.problems[0] for name, s in found.items()}
    assert problems["10-broken.yaml"].startswith("is not valid YAML at line 4 (")
    assert problems["20-alias.yaml"] == "uses YAML anchors or aliases, which sparkd does not read: write the values out"
    assert problems["30-list.yaml"] == "is not a netplan document (no `network:` mapping); fix or remove it"
    assert problems["40-tag.yaml"].startswith("uses the YAML tag 'tag:yaml.org,2002:python/object:os.system'")
    assert problems["50-deep.yaml"] == "is nested deeper than 16 levels: not a netplan file sparkd reads"
    assert problems["60-binary.yaml"] == "is not UTF-8 text (byte 0); fix or remove it"


def test_oversized_symlinked_and_irregular_files_are_problems_not_reads(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/70-big.yaml", "# " + "x" * MAX_FILE_BYTES + "\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text("network: {ethernets: {enp1s0f1np1: {addresses: [192.168.100.99/24]}}}\n")
    os.symlink(outside, tmp_path / "etc/netplan/80-link.yaml")
    (tmp_path / "etc/netplan/90-dir.yaml").mkdir()
    os.mkfifo(tmp_path / "etc/netplan/95-fifo.yaml")
    big, link, directory, fifo = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert big == ForeignSetup(
        "/etc/netplan/70-big.yaml",
        "netplan",
        problems=("is larger than 64 KiB and was not read: a netplan file is a few lines; check it",),
    )
    assert link == ForeignSetup(
        "/etc/netplan/80-link.yaml",
        "netplan",
        problems=("is a symbolic link, which sparkd does not follow: replace it with the netplan file itself",),
    )
    irregular = ("is not a regular file: sparkd reads only regular files here; move it away",)
    assert (directory.path, directory.problems) == ("/etc/netplan/90-dir.yaml", irregular)
    assert (fifo.path, fifo.problems) == ("/etc/netplan/95-fifo.yaml", irregular)


def test_bonds_bridges_vlans_over_a_twin_cannot_be_taken_over(tmp_path: Path) -> None:
    put(
        tmp_path,
        "/etc/netplan/30-bond.yaml",
        "network:\n  ethernets:\n    enp1s0f1np1: {}\n    enP2p1s0f1np1: {}\n"
        "  bonds:\n    bond0:\n      interfaces: [enp1s0f1np1, enP2p1s0f1np1]\n      addresses: [192.168.100.10/24]\n"
        "  vlans:\n    vlan7: {id: 7, link: enp1s0f0np0}\n"
        "  bridges:\n    br0: {interfaces: [enP7s7]}\n",
    )
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup.netdevs == ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f1np1")
    assert setup.addresses == () and setup.other_interfaces == ("bond0", "br0", "vlan7")
    assert setup.problems == tuple(
        f"network.{where} runs over the twin {twin}: sparkd cannot take that over; take {twin} out of it by hand"
        for where, twin in (
            ("bonds.bond0", "enp1s0f1np1"),
            ("bonds.bond0", "enP2p1s0f1np1"),
            ("vlans.vlan7", "enp1s0f0np0"),
        )
    )


def test_match_by_glob_set_name_and_mac(tmp_path: Path) -> None:
    put(
        tmp_path,
        "/etc/netplan/20-match.yaml",
        "network:\n  ethernets:\n"
        "    cx7-all:\n      match: {name: 'enp1s0f*'}\n      dhcp4: true\n      mtu: 9000\n"
        "    renamed:\n      match: {macaddress: '00:11:22:33:44:55'}\n      set-name: enP2p1s0f1np1\n"
        "      addresses: [192.168.101.10/24, 300.1.1.1/24]\n"
        "    away:\n      match: {name: enP2p1s0f0np0}\n      set-name: fabric0\n"
        "    mgmt:\n      match: {driver: r8169}\n",
    )
    [setup] = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert setup.netdevs == NETDEVS
    assert setup.dhcp == ("enp1s0f0np0", "enp1s0f1np1")
    assert setup.mtu == (("enp1s0f0np0", 9000), ("enp1s0f1np1", 9000))
    assert setup.addresses == (("enP2p1s0f1np1", ip("192.168.101.10/24")),)
    assert setup.other_interfaces == ("enp1s0f*",)  # a pattern may match more than the twins
    assert setup.problems == (
        "network.ethernets.renamed matches by macaddress, which sparkd does not resolve: it may configure a twin; "
        "match it by name instead",
        "network.ethernets.renamed.addresses: '300.1.1.1/24' is not an address with a prefix length (a.b.c.d/n)",
        "network.ethernets.away renames enP2p1s0f0np0 to 'fabric0': remove its set-name",
        "network.ethernets.mgmt matches by driver, which sparkd does not resolve: it may configure a twin; "
        "match it by name instead",
    )


def test_results_sorted_by_path_and_file_count_bounded(tmp_path: Path) -> None:
    put(tmp_path, f"{NM}/a.nmconnection", (FIXTURES / "twin-dhcp.nmconnection").read_text())
    put(tmp_path, "/etc/netplan/60-dgx-interconnect.yaml", (FIXTURES / "60-dgx-interconnect.yaml").read_text())
    put(tmp_path, "/etc/netplan/40-cx7.yaml", (FIXTURES / "40-cx7-static.yaml").read_text())
    paths = [s.path for s in find_foreign(Sysroot(tmp_path), NETDEVS)]
    assert paths == [f"{NM}/a.nmconnection", "/etc/netplan/40-cx7.yaml", "/etc/netplan/60-dgx-interconnect.yaml"]
    for n in range(MAX_FILES + 1):
        put(tmp_path, f"/etc/netplan/{n:03}-x.yaml", "network: {ethernets: {enP7s7: {dhcp4: true}}}\n")
    found = find_foreign(Sysroot(tmp_path), NETDEVS)
    assert [(s.path, s.problems) for s in found if s.kind == "netplan"] == [
        (
            "/etc/netplan",
            (f"holds {MAX_FILES + 3} files; sparkd read the first {MAX_FILES} only: remove the stale ones",),
        )
    ]  # 40-cx7 and 60-dgx sort after the 65 numbered files: unread, and the listing says so


def test_only_the_given_netdevs_are_twins(tmp_path: Path) -> None:
    put(tmp_path, "/etc/netplan/40-cx7.yaml", (FIXTURES / "40-cx7-link-local.yaml").read_text())
    [setup] = find_foreign(Sysroot(tmp_path), ["enp1s0f1np1"])
    assert (setup.netdevs, setup.link_local, setup.other_interfaces) == (("enp1s0f1np1",),) * 2 + (("enp1s0f0np0",),)


def test_describe_escapes_unprintable_names() -> None:
    setup = ForeignSetup(
        "/etc/netplan/\x1b[2J.yaml", "netplan", problems=("is not UTF-8 text (byte 0); fix or remove it",)
    )
    assert (
        setup.describe()
        == "'/etc/netplan/\\x1b[2J.yaml' (netplan): no twin named; is not UTF-8 text (byte 0); fix or remove it"
    )
