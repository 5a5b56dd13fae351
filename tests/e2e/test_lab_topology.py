"""Labs of three and four nodes through the switch, every worker connected; the management LAN; clashes.

Each lab here is its own (up and down inside the test), its mgmt0 ports captured from before the
daemons start (tests/e2e/conftest.py `lab_up`).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from pyroute2 import netns

from sparkd.lab import lab as lab_mod
from sparkd.lab import topology
from tests.e2e.conftest import MgmtCapture, addresses, client, default_route, ip_json, lab_up, leftovers

TWINS = ("enp1s0f1np1", "enP2p1s0f1np1")


def ping(node: str, address: str, size: int) -> bool:
    cmd = ["ip", "netns", "exec", node, "ping", "-M", "do", "-s", str(size), "-c", "1", "-W", "2", address]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize("n", [3, 4])
def test_nodes_through_a_switch_all_workers_connected(mgmt_capture: MgmtCapture, n: int) -> None:
    with lab_up(mgmt_capture, f"{n}-node lab", nodes=n) as state:
        assert state.namespaces == [*topology.node_names(n), "sparklab-sw", "sparklab-mgmt"]
        head = json.loads(client("spark1", "-o", "json", "peer", "status").stdout)
        assert [(p["name"], p["address"], p["state"]) for p in head["peers"]] == [
            (f"spark{i}", f"192.168.100.{i}", "PEER_STATE_CONNECTED") for i in range(2, n + 1)
        ]
        for number, node in enumerate(state.nodes, start=1):
            for twin, subnet in zip(TWINS, ("192.168.100", "192.168.101"), strict=True):
                assert addresses(node, twin, "inet") == [f"{subnet}.{number}/24"]
            assert addresses(node, "mgmt0", "inet") == [f"10.77.0.{number}/24"]
            assert default_route(node) == ("10.77.0.254", "mgmt0")
        # The switch takes jumbo frames: a 9000-byte frame with don't-fragment crosses it on both twins.
        last = state.nodes[-1]
        assert ping(last, "192.168.100.1", 8972) and ping(last, "192.168.101.1", 8972)
        assert not ping(last, "192.168.100.1", 8973)
        # The management LAN is a LAN of its own: the bridge answers, nothing lies beyond it.
        assert ping(last, "10.77.0.254", 56) and ping(last, "10.77.0.1", 56)
        (bridge,) = ip_json("sparklab-mgmt", "link", "show", "dev", "brM")
        ports = [i["ifname"] for i in ip_json("sparklab-mgmt", "link", "show", "master", "brM")]
        assert bridge["operstate"] == "UP" and sorted(ports) == sorted(f"m{i}" for i in range(1, n + 1))
        assert ip_json("sparklab-mgmt", "-4", "route", "show", "default") == []
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_up_refuses_a_management_namespace_it_did_not_make() -> None:
    netns.create(topology.MGMT_NS)
    try:
        assert topology.MGMT_NS in topology.existing()
        with pytest.raises(lab_mod.LabError, match="sparklab-mgmt exist already"):
            lab_mod.up(2, bare=True)
        assert not lab_mod.STATE.exists()
    finally:
        netns.remove(topology.MGMT_NS)
    assert leftovers() == []
