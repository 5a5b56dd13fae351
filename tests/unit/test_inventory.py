"""RDMA sysfs parsing (recorded layout) and twin selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkd.engine.twins import select_twins
from sparkd.errors import PreconditionFailed
from sparkd.host.proc import SysrootProc, parse_meminfo
from sparkd.host.sysfs import SysrootSysfs, parse_rate_gbps, parse_state
from sparkd.host.sysroot import Sysroot
from sparkd.lab.fixtures import write_node_fixtures
from sparkd.model.inventory import LinkState


def link(name: str, carrier: bool = False) -> LinkState:
    return LinkState(name, 1, carrier, carrier, "UP" if carrier else "DOWN", 1500, ())


def test_recorded_formats() -> None:
    assert parse_state("4: ACTIVE\n") == "ACTIVE" and parse_state("1: DOWN\n") == "DOWN"
    assert parse_rate_gbps("200 Gb/sec (4X HDR)\n") == 200 and parse_rate_gbps("40 Gb/sec (4X QDR)") == 40
    assert parse_meminfo("MemTotal:       127600748 kB\nMemAvailable: 1 kB\n").total_bytes == 127600748 * 1024


def test_spark_layout_from_sysroot(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    ports = SysrootSysfs(Sysroot(tmp_path)).rdma_ports()
    assert [(p.rdma_device, p.netdev, p.pci_address, p.rate_gbps, p.state) for p in ports] == [
        ("rocep1s0f0", "enp1s0f0np0", "0000:01:00.0", 40, "DOWN"),
        ("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
        ("roceP2p1s0f0", "enP2p1s0f0np0", "0002:01:00.0", 40, "DOWN"),
        ("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE"),
    ]
    assert SysrootProc(Sysroot(tmp_path)).memory().total_bytes == 127600748 * 1024


def test_twins_of_the_cabled_cage(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    ports = SysrootSysfs(Sysroot(tmp_path)).rdma_ports()
    links = {n: link(n) for n in ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1")}
    twins = select_twins(ports, links)
    assert (twins.a.netdev, twins.b and twins.b.netdev) == ("enp1s0f1np1", "enP2p1s0f1np1")
    assert select_twins(ports, links, mode="single").b is None


def test_cabled_cage_detected_per_node_from_carrier() -> None:
    # Cage p0 cabled on this node: RoCE state unknown (DOWN in sysfs), carrier from netlink says so.
    from sparkd.model.inventory import RdmaPort

    ports = [
        RdmaPort("rocep1s0f0", "enp1s0f0np0", "0000:01:00.0", 200, "DOWN"),
        RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 40, "DOWN"),
        RdmaPort("roceP2p1s0f0", "enP2p1s0f0np0", "0002:01:00.0", 200, "DOWN"),
    ]
    links = {
        "enp1s0f0np0": link("enp1s0f0np0", True),
        "enp1s0f1np1": link("enp1s0f1np1"),
        "enP2p1s0f0np0": link("enP2p1s0f0np0", True),
    }
    twins = select_twins(ports, links)
    assert (twins.a.netdev, twins.b and twins.b.netdev) == ("enp1s0f0np0", "enP2p1s0f0np0")


def test_no_cable_is_a_clear_error(tmp_path: Path) -> None:
    write_node_fixtures(tmp_path, 0)
    ports = [p for p in SysrootSysfs(Sysroot(tmp_path)).rdma_ports() if p.state != "ACTIVE"]
    with pytest.raises(PreconditionFailed, match="no cabled ConnectX-7 port"):
        select_twins(ports, {p.netdev: link(p.netdev) for p in ports})
