"""`sparkd lab up --bare` (fresh nodes, as newly cabled Sparks), `lab exec`, and `lab down` leaving nothing."""

from __future__ import annotations

import json
import time

import pytest

from sparkd.lab import lab as lab_mod
from sparkd.lab import topology
from tests.e2e.conftest import MgmtCapture, addresses, client, default_route, ip_json, leftovers, sparkd

TWINS = ("enp1s0f1np1", "enP2p1s0f1np1")


@pytest.mark.usefixtures("clean")
def test_bare_lab_is_fresh_sparks_then_down_leaves_nothing(mgmt_capture: MgmtCapture) -> None:
    try:
        r = sparkd("lab", "up", "--bare")
        assert r.returncode == 0, r.stderr
        # From here on (the steady state: workers that cannot reach the head), mgmt0 is captured.
        mgmt_capture.start(topology.node_names(2), "bare lab (CLI)")
        node = json.loads(client("spark2", "-o", "json", "node", "show").stdout)["node"]
        assert node["name"] == "spark2" and node["role"] == "NODE_ROLE_UNSPECIFIED"  # unpaired
        for number, name in enumerate(("spark1", "spark2"), start=1):
            # Twins up with carrier and an IPv6 link-local address, but no IPv4 address, MTU untouched.
            for twin in TWINS:
                (link,) = ip_json(name, "link", "show", "dev", twin)
                assert link["operstate"] == "UP" and "LOWER_UP" in link["flags"] and link["mtu"] == 1500
                assert addresses(name, twin, "inet") == []
                assert [a for a in addresses(name, twin, "inet6") if a.startswith("fe80:")], f"{name} {twin}"
            # The management port carries the only IPv4 route, so the head's interconnect address routes there.
            assert addresses(name, "mgmt0", "inet") == [f"10.77.0.{number}/24"]
            assert default_route(name) == ("10.77.0.254", "mgmt0")
            (route,) = ip_json(name, "route", "get", "192.168.100.1")
            assert route["dev"] == "mgmt0"
        assert all(p["addresses"] == [] for p in node["ports"])
        peers = json.loads(client("spark1", "-o", "json", "peer", "status").stdout)["peers"]
        assert [p for p in peers if p["state"] == "PEER_STATE_CONNECTED"] == []
        # Unpaired, a node has no index and so no addresses to plan.
        r = client("spark2", "host", "plan")
        assert r.returncode != 0 and "not paired yet" in r.stderr
        # Pairing from a fresh start, as an operator does it: over the cable before any IPv4 address exists.
        begin = json.loads(client("spark1", "-o", "json", "peer", "pair", "begin").stdout)
        r = client("spark2", "peer", "pair", "join", "--head", begin["node_id"], "--token", begin["token"])
        assert r.returncode == 0 and "as index 1" in r.stdout, r.stdout + r.stderr
        # What host apply would do now: MTU and address on each twin (already up), and nccl.conf.
        plan = json.loads(client("spark2", "-o", "json", "host", "plan").stdout)
        kinds = sorted(a["kind"].removeprefix("HOST_ACTION_KIND_") for a in plan["actions"])
        assert plan["changed"] is True
        assert kinds == ["ADD_ADDRESS", "ADD_ADDRESS", "SET_MTU", "SET_MTU", *["SET_QOS"] * 6, *["WRITE_FILE"] * 4]
        for name in ("spark1", "spark2"):
            assert client(name, "host", "apply").returncode == 0
        deadline = time.monotonic() + 15
        while True:
            peers = json.loads(client("spark1", "-o", "json", "peer", "status").stdout)["peers"]
            if [p["state"] for p in peers] == ["PEER_STATE_CONNECTED"]:
                break
            assert time.monotonic() < deadline, peers
            time.sleep(0.2)
        assert peers[0]["name"] == "spark2" and peers[0]["versions"]["sparkd"]
        # `lab exec` passes output and exit code through.
        r = sparkd("lab", "exec", "spark1", "--", "sh", "-c", "echo in-$SPARKD_SOCKET; exit 7")
        assert (
            r.returncode == 7
            and r.stdout.startswith("in-")
            and r.stdout.strip().endswith("spark1/root/run/sparkd/sparkd.sock")
        )
    finally:
        mgmt_capture.stop()
        assert sparkd("lab", "down").returncode == 0
    assert leftovers() == []
    assert not lab_mod.STATE.exists()
