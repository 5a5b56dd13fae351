"""Discovery from sysfs: GID tables and PCIe links (recorded formats), the RoCE v2 GID index, warnings."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from sparkd.engine.hostcfg.discovery import discover, render_discovery, roce_v2_gid_index
from sparkd.engine.twins import select_twins
from sparkd.errors import HostOperationFailed
from sparkd.host.sysfs import MAX_GID_SLOTS, SysrootSysfs
from sparkd.host.sysroot import Sysroot
from sparkd.lab.fixtures import (
    ROCE_V1,
    ROCE_V2,
    TWIN_A,
    TWIN_B,
    ipv4_gid,
    link_local_gid,
    write_gids,
    write_node_fixtures,
)
from sparkd.model.discovery import Discovery, Gid, parse_gts
from sparkd.model.inventory import LinkState, RdmaPort, Twins

NETDEVS = ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1")
IB = "sys/class/infiniband"


def links(carried: dict[str, str] | None = None) -> dict[str, LinkState]:
    """The four netdevs, cage p1 with carrier; `carried` puts an address on a netdev."""
    out = {}
    for i, name in enumerate(NETDEVS, start=2):
        up = "f1np1" in name
        addrs = tuple(ipaddress.IPv4Interface(a) for n, a in (carried or {}).items() if n == name)
        out[name] = LinkState(name, i, up, up, "UP" if up else "DOWN", 1500, addrs)
    return out


def addresses(index: int) -> dict[str, ipaddress.IPv4Interface]:
    return {
        TWIN_A: ipaddress.IPv4Interface(f"192.168.100.{index + 1}/24"),
        TWIN_B: ipaddress.IPv4Interface(f"192.168.101.{index + 1}/24"),
    }


def discover_node(root: Path, index: int, carried: dict[str, str] | None = None) -> Discovery:
    sysfs = SysrootSysfs(Sysroot(root))
    state = links(carried)
    return discover(sysfs, state, select_twins(sysfs.rdma_ports(), state), addresses(index))


def test_gid_table_in_the_recorded_format(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 14)
    text = (tmp_path / IB / "rocep1s0f1/ports/1/gids/3").read_text()
    assert text == "0000:0000:0000:0000:0000:ffff:c0a8:640f\n"  # spark-fb97's 192.168.100.15, derived in 1.2
    assert (tmp_path / IB / "rocep1s0f1/ports/1/gid_attrs/types/3").read_text() == "RoCE v2\n"
    assert (tmp_path / IB / "rocep1s0f1/ports/1/gids/9").read_text() == "0000:" * 7 + "0000\n"
    assert not (tmp_path / IB / "rocep1s0f1/ports/1/gid_attrs/types/9").exists()
    gids = SysrootSysfs(Sysroot(tmp_path)).gids("rocep1s0f1")
    local = link_local_gid("4c:bb:47:2f:0e:04")
    assert gids == [
        Gid(0, local, ROCE_V1, TWIN_A),
        Gid(1, local, ROCE_V2, TWIN_A),
        Gid(2, "0000:0000:0000:0000:0000:ffff:c0a8:640f", ROCE_V1, TWIN_A),
        Gid(3, "0000:0000:0000:0000:0000:ffff:c0a8:640f", ROCE_V2, TWIN_A),
    ]
    assert [(g.ipv4, g.version) for g in gids] == [
        (None, "v1"),
        (None, "v2"),
        (ipaddress.IPv4Address("192.168.100.15"), "v1"),
        (ipaddress.IPv4Address("192.168.100.15"), "v2"),
    ]
    assert link_local_gid("4c:bb:47:2f:fb:98") == "fe80:0000:0000:0000:4ebb:47ff:fe2f:fb98"  # recorded, 1.1
    assert ipv4_gid("192.168.101.2") == "0000:0000:0000:0000:0000:ffff:c0a8:6502"


def test_empty_unreadable_and_malformed_slots_are_skipped(tmp_path: Path) -> None:
    mapped = ipv4_gid("192.168.100.1")
    write_gids(tmp_path, "rocep1s0f1", TWIN_A, [(1, mapped, ROCE_V1), (2, mapped, ROCE_V2)], slots=9)
    port = tmp_path / IB / "rocep1s0f1/ports/1"
    (port / "gids/3").write_text("not a gid\n")
    (port / "gids/4").write_text("0000:0000:0000:0000:0000:FFFF:C0A8:6401\n")  # upper case: read as lower
    for n, kind in ((4, ROCE_V2), (5, "RoCE v3"), (6, ROCE_V2)):
        (port / f"gids/{n}").write_text(f"{mapped.upper() if n == 4 else mapped}\n")
        (port / f"gid_attrs/types/{n}").write_text(f"{kind}\n")
    (port / "gid_attrs/ndevs/4").write_text(f"{TWIN_A}\n")
    (port / "gid_attrs/ndevs/5").write_text(f"{TWIN_A}\n")
    (port / "gid_attrs/ndevs/6").write_text("bad/name\n")
    (port / "gids/7").unlink()  # the table ends at the first missing slot: 8 is never read
    (port / "gids/8").write_text(f"{mapped}\n")
    (port / "gid_attrs/types/8").write_text(f"{ROCE_V2}\n")
    (port / "gid_attrs/types/0").write_text(f"{ROCE_V2}\n")  # an empty slot, attributes or not
    gids = SysrootSysfs(Sysroot(tmp_path)).gids("rocep1s0f1")
    assert [(g.index, g.type, g.netdev) for g in gids] == [
        (1, ROCE_V1, TWIN_A),
        (2, ROCE_V2, TWIN_A),
        (4, ROCE_V2, TWIN_A),
    ]
    assert gids[2].gid == mapped
    (port / "gid_attrs/ndevs/2").unlink()  # the kernel names no netdev: kept, with none
    assert SysrootSysfs(Sysroot(tmp_path)).gids("rocep1s0f1")[1] == Gid(2, mapped, ROCE_V2, "")


@pytest.mark.parametrize(("node", "v2"), [(0, 3), (1, 4), (2, 7)])
def test_roce_v2_index_resolved_per_hca(tmp_path: Path, node: int, v2: int) -> None:
    write_node_fixtures(tmp_path, node, gid_v2_index=v2)
    d = discover_node(tmp_path, node)
    assert d.cabled_function == 1
    assert [(t.netdev, t.roce_v2_gid_index) for t in d.twins] == [(TWIN_A, v2), (TWIN_B, v2)]
    assert d.warnings == ()
    assert [g.index for g in d.twins[1].gids] == [0, 1, v2 - 1, v2]  # the holes between are skipped


def test_the_survey_pair_three_on_one_node_four_on_the_other(tmp_path: Path) -> None:
    # MiaAI-Lab PR #26: index 4 on one Spark, 3 on the other; and a node drifts from 3 to 4 in place.
    write_node_fixtures(tmp_path / "a", 0)
    write_node_fixtures(tmp_path / "b", 1, gid_v2_index=4)
    assert [t.roce_v2_gid_index for t in discover_node(tmp_path / "a", 0).twins] == [3, 3]
    assert [t.roce_v2_gid_index for t in discover_node(tmp_path / "b", 1).twins] == [4, 4]
    write_node_fixtures(tmp_path / "a", 0, gid_v2_index=4)
    assert not (tmp_path / "a" / IB / "rocep1s0f1/ports/1/gid_attrs/types/2").exists()
    twin = discover_node(tmp_path / "a", 0).twins[0]
    assert (twin.roce_v2_gid_index, [g.index for g in twin.gids]) == (4, [0, 1, 3, 4])


def test_only_a_v2_gid_of_the_address_on_the_twin_counts() -> None:
    ip = ipaddress.IPv4Address("192.168.100.1")
    mapped, other = ipv4_gid("192.168.100.1"), ipv4_gid("192.168.100.2")
    gids = [
        Gid(1, link_local_gid("4c:bb:47:2f:00:04"), ROCE_V2, TWIN_A),
        Gid(2, mapped, ROCE_V1, TWIN_A),
        Gid(3, other, ROCE_V2, TWIN_A),
        Gid(5, mapped, ROCE_V2, "enp1s0f1np1.10"),
    ]
    assert roce_v2_gid_index(gids, TWIN_A, ip) is None
    assert roce_v2_gid_index([*gids, Gid(9, mapped, ROCE_V2, TWIN_A), Gid(7, mapped, ROCE_V2, TWIN_A)], TWIN_A, ip) == 7


def test_a_narrow_pcie_link_is_a_warning(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    (tmp_path / "sys/devices/pci0002:00/0002:00:00.0/0002:01:00.1/current_link_width").write_text("2\n")
    d = discover_node(tmp_path, 0)
    assert [(t.pcie_speed, t.pcie_width) for t in d.twins] == [("32.0 GT/s PCIe", 4), ("32.0 GT/s PCIe", 2)]
    assert d.warnings == (
        "enP2p1s0f1np1: PCIe link 32.0 GT/s PCIe x2 is below 32.0 GT/s x4 (about 63 of 126 Gb/s): update the "
        "BIOS (GX10 units before 2026-04 train the second controller at x2) and reboot",
    )
    assert render_discovery(d) == [
        "cabled cage: p1 (PCI function 1)",
        "twin A enp1s0f1np1 (rocep1s0f1, 0000:01:00.1): ACTIVE 200 Gb/s, PCIe 32.0 GT/s PCIe x4, "
        "RoCE v2 GID index 3 (192.168.100.1)",
        "twin B enP2p1s0f1np1 (roceP2p1s0f1, 0002:01:00.1): ACTIVE 200 Gb/s, PCIe 32.0 GT/s PCIe x2, "
        "RoCE v2 GID index 3 (192.168.101.1)",
        f"warning: {d.warnings[0]}",
    ]


def test_a_slow_pcie_link_is_a_warning_and_old_kernels_format_is_read(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    device = tmp_path / "sys/devices/pci0000:00/0000:00:00.0/0000:01:00.1"
    (device / "current_link_speed").write_text("16.0 GT/s PCIe\n")
    (tmp_path / "sys/devices/pci0002:00/0002:00:00.0/0002:01:00.1/current_link_speed").write_text("32 GT/s\n")
    d = discover_node(tmp_path, 0)
    assert [t.pcie_gts for t in d.twins] == [16.0, 32.0]
    assert len(d.warnings) == 1 and d.warnings[0].startswith("enp1s0f1np1: PCIe link 16.0 GT/s PCIe x4 is below")
    assert (parse_gts("Unknown"), parse_gts("2.5 GT/s PCIe"), parse_gts("32.0 Gb/s")) == (None, 2.5, None)


def test_an_address_not_in_the_gid_table_is_a_warning(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    sysfs = SysrootSysfs(Sysroot(tmp_path))
    want = {TWIN_A: ipaddress.IPv4Interface("192.168.100.9/24")}
    d = discover(sysfs, links(), select_twins(sysfs.rdma_ports(), links()), want)
    assert [(t.address, t.roce_v2_gid_index) for t in d.twins] == [(want[TWIN_A], None), (None, None)]
    assert d.warnings == (
        "enp1s0f1np1: no RoCE v2 GID for 192.168.100.9 on rocep1s0f1 yet (the address is not on the link): "
        "run `sparkctl-client host apply`, then plan again",
    )
    assert render_discovery(d)[1:3] == [
        "twin A enp1s0f1np1 (rocep1s0f1, 0000:01:00.1): ACTIVE 200 Gb/s, PCIe 32.0 GT/s PCIe x4, "
        "RoCE v2 GID for 192.168.100.9: none",
        "twin B enP2p1s0f1np1 (roceP2p1s0f1, 0002:01:00.1): ACTIVE 200 Gb/s, PCIe 32.0 GT/s PCIe x4, 4 GIDs",
    ]
    carried = links({TWIN_A: "192.168.100.9/24"})
    d = discover(sysfs, carried, select_twins(sysfs.rdma_ports(), carried), want)
    assert d.warnings[0].startswith("enp1s0f1np1 carries 192.168.100.9 but rocep1s0f1 has no RoCE v2 GID")


def test_an_active_port_below_200_is_a_warning(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    slow = RdmaPort("rocep1s0f1", TWIN_A, "0000:01:00.1", 100, "ACTIVE")
    down = RdmaPort("roceP2p1s0f1", TWIN_B, "0002:01:00.1", 40, "DOWN")
    d = discover(SysrootSysfs(Sysroot(tmp_path)), links(), Twins(slow, down), addresses(0))
    assert d.warnings == (
        "enp1s0f1np1: RoCE port rocep1s0f1 is ACTIVE at 100 Gb/s, below 200: use a 200G QSFP cable, or fix the "
        "switch port at 200G (`ethtool -s enp1s0f1np1 speed 200000`)",
    )


def test_missing_files_do_not_crash(tmp_path: Path) -> None:
    sysfs = SysrootSysfs(Sysroot(tmp_path))
    assert (sysfs.gids("rocep1s0f1"), sysfs.pci_link("rocep1s0f1")) == ([], None)
    write_node_fixtures(tmp_path, 0)
    (tmp_path / "sys/devices/pci0000:00/0000:00:00.0/0000:01:00.1/current_link_width").unlink()
    for n in range(4):
        (tmp_path / IB / f"roceP2p1s0f1/ports/1/gid_attrs/types/{n}").unlink()
    assert sysfs.pci_link("rocep1s0f1") is None and sysfs.pci_link("roceP2p1s0f1") == ("32.0 GT/s PCIe", 4)
    assert sysfs.gids("roceP2p1s0f1") == []
    d = discover_node(tmp_path, 0)
    assert (d.twins[0].pcie_speed, d.twins[0].pcie_width, d.twins[1].roce_v2_gid_index) == (None, None, None)
    assert "PCIe unknown" in render_discovery(d)[1]
    assert [w.split(":")[0] for w in d.warnings] == ["enP2p1s0f1np1"]
    nothing = discover(sysfs, links(), None, {})
    assert (nothing.cabled_function, nothing.twins) == (None, ())
    assert render_discovery(nothing) == ["cabled cage: none", f"warning: {nothing.warnings[0]}"]


def test_links_out_of_the_sysroot_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "gids").mkdir(parents=True)
    (outside / "current_link_speed").write_text("32.0 GT/s PCIe\n")
    (outside / "current_link_width").write_text("4\n")
    (outside / "gids/0").write_text(f"{ipv4_gid('192.168.100.1')}\n")
    root = tmp_path / "root"
    write_node_fixtures(root, 0)
    device = root / IB / "rocep1s0f1/device"
    device.unlink()
    os.symlink(outside, device)  # an absolute link: the machine's own files, not the sysroot's
    sysfs = SysrootSysfs(Sysroot(root))
    assert sysfs.pci_link("rocep1s0f1") is None
    assert sysfs.pci_link("roceP2p1s0f1") == ("32.0 GT/s PCIe", 4)  # a relative link inside: followed
    gid0 = root / IB / "roceP2p1s0f1/ports/1/gids/0"
    gid0.unlink()
    os.symlink(outside / "gids/0", gid0)
    assert [g.index for g in sysfs.gids("roceP2p1s0f1")] == [1, 2, 3]


def test_reads_are_bounded(tmp_path: Path) -> None:
    mapped = ipv4_gid("192.168.100.1")
    write_gids(tmp_path, "rocep1s0f1", TWIN_A, [(n, mapped, ROCE_V2) for n in range(300)])
    port = tmp_path / IB / "rocep1s0f1/ports/1"
    (port / "gids/0").write_text(mapped + " " * 200 + "\n")  # past the 128-byte bound
    (port / "gid_attrs/ndevs/1").write_text("x" * 4096)
    (port / "gids/2").unlink()
    os.mkfifo(port / "gids/2")  # a FIFO is refused, never waited on
    gids = SysrootSysfs(Sysroot(tmp_path)).gids("rocep1s0f1")
    assert len(gids) == MAX_GID_SLOTS - 2 and gids[-1].index == MAX_GID_SLOTS - 1
    assert (gids[0].index, gids[0].netdev, gids[1].index) == (1, "", 3)
    width = tmp_path / "sys/devices/x/current_link_width"
    width.parent.mkdir(parents=True)
    width.write_text("4" * 200)
    (width.parent / "current_link_speed").write_text("32.0 GT/s PCIe\n")
    os.symlink("../../../devices/x", tmp_path / IB / "rocep1s0f1/device")
    assert SysrootSysfs(Sysroot(tmp_path)).pci_link("rocep1s0f1") is None
    width.write_text("4\n")
    assert SysrootSysfs(Sysroot(tmp_path)).pci_link("rocep1s0f1") == ("32.0 GT/s PCIe", 4)


@pytest.mark.parametrize("name", ["../../etc", "roce/p1", "", ".hidden", "x" * 65])
def test_bad_device_names_and_ports_are_refused(tmp_path: Path, name: str) -> None:
    sysfs = SysrootSysfs(Sysroot(tmp_path))
    with pytest.raises(HostOperationFailed, match="not a device name"):
        sysfs.gids(name)
    with pytest.raises(HostOperationFailed, match="not a device name"):
        sysfs.pci_link(name)
    with pytest.raises(HostOperationFailed, match="not a port number"):
        sysfs.gids("rocep1s0f1", port=0)
