"""`sparkd lab up --bare`, `lab exec`, a three-node lab through a switch, and `lab down` leaving nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from sparkd.lab import sandbox, topology
from tests.e2e.conftest import client, sparkd


def leftovers() -> list[str]:
    """Everything a lab could leave behind, described."""
    found = [f"netns {n}" for n in topology.existing()]
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    found += [f"link {i['ifname']}" for i in json.loads(links) if "sparklab" in i["ifname"] or "spark" in i["ifname"]]
    if Path("/run/systemd/private").exists():
        found.append("systemd sandbox (/run/systemd/private)")
    if sandbox.CGROUP.exists():
        found.append(f"cgroup {sandbox.CGROUP}")
    if lab_mod.LAB_DIR.exists():
        found.append(f"directory {lab_mod.LAB_DIR}")
    procs = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    found += [f"process {p}" for p in procs.splitlines() if "sparkd run --config" in p or "standins.vllm" in p]
    return found


@pytest.fixture
def clean() -> None:
    if lab_mod.STATE.exists():
        pytest.fail("a lab is already up; run `sparkd lab down` before the tests")
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_bare_lab_answers_then_down_leaves_nothing() -> None:
    try:
        r = sparkd("lab", "up", "--bare")
        assert r.returncode == 0, r.stderr
        node = json.loads(client("spark2", "-o", "json", "node", "show").stdout)["node"]
        assert node["name"] == "spark2" and node["role"] == "NODE_ROLE_WORKER"
        # Bare: the link is not configured and no peer is connected.
        assert all(p["addresses"] == [] for p in node["ports"])
        plan = json.loads(client("spark2", "-o", "json", "host", "plan").stdout)
        assert plan["changed"] is True and len(plan["actions"]) == 7
        # `lab exec` passes output and exit code through.
        r = sparkd("lab", "exec", "spark1", "--", "sh", "-c", "echo in-$SPARKD_SOCKET; exit 7")
        assert (
            r.returncode == 7
            and r.stdout.startswith("in-")
            and r.stdout.strip().endswith("spark1/root/run/sparkd/sparkd.sock")
        )
    finally:
        assert sparkd("lab", "down").returncode == 0
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_three_nodes_through_a_switch() -> None:
    try:
        r = sparkd("lab", "up", "--nodes", "3")
        assert r.returncode == 0, r.stderr
        head = json.loads(client("spark1", "-o", "json", "peer", "status").stdout)
        assert [(p["name"], p["address"], p["state"]) for p in head["peers"]] == [
            ("spark2", "192.168.100.2", "PEER_STATE_CONNECTED"),
            ("spark3", "192.168.100.3", "PEER_STATE_CONNECTED"),
        ]
    finally:
        assert sparkd("lab", "down").returncode == 0
    assert leftovers() == []
