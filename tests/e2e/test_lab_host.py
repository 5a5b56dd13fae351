"""The host configuration on a two-node lab with the Spark layout (issue 10's "What it must show").

spark2 is brought back to how it was before sparkd (`host restore`): a fresh node. Its `host plan` then
lists every action, `host apply` makes them, and a second apply changes nothing: no file's mtime and no
link attribute. The management guard is tried on the lab nodes' real management interface (mgmt0, which
carries the default route), and a cluster-wide apply runs from the head over the real peer protocol, its
pings crossing the veth twins with don't-fragment at the full MTU.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from tests.e2e.conftest import client, ip_json

pytestmark = pytest.mark.usefixtures("lab")

TWINS = ("enp1s0f1np1", "enP2p1s0f1np1")


def host_json(node: str, *args: str) -> dict:  # type: ignore[type-arg]
    r = client(node, "-o", "json", "host", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def links(node: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        {k: link.get(k) for k in ("ifname", "mtu", "flags", "operstate", "addr_info")}
        for link in ip_json(node, "addr")
        if link["ifname"] in TWINS
    ]


def mtimes(node: str) -> dict[Path, int]:
    root = lab_mod.sysroot(node)
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "run/" not in str(p)}


def wait_connected(node: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client(node, "-o", "json", "peer", "status")
        if r.returncode == 0 and all(p["state"] == "PEER_STATE_CONNECTED" for p in json.loads(r.stdout)["peers"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"{node}'s peers did not reconnect")


def test_a_fresh_node_plans_every_action_applies_them_and_a_second_apply_changes_nothing() -> None:
    restored = host_json("spark2", "restore")
    assert "files /etc/nccl.conf" in restored["restored"]
    assert all(link["mtu"] == 1500 for link in links("spark2"))
    plan = host_json("spark2", "plan")
    kinds = [(a["component"], a["kind"]) for a in plan["actions"]]
    assert kinds.count(("links", "HOST_ACTION_KIND_SET_MTU")) == 2
    assert kinds.count(("links", "HOST_ACTION_KIND_ADD_ADDRESS")) == 2
    assert kinds.count(("qos", "HOST_ACTION_KIND_SET_QOS")) == 6  # trust, PFC and ToS on both twins
    written = {a["target"] for a in plan["actions"] if a["kind"] == "HOST_ACTION_KIND_WRITE_FILE"}
    assert {"/etc/nccl.conf", "/etc/profile.d/sparkd-nccl.sh", "/etc/hosts"} <= written
    assert any("RoCE v2 GID index 3 (192.168.100.2)" in n for n in plan["notes"])
    applied = host_json("spark2", "apply")
    assert applied["changed"] and applied["verified"] and applied["actions"] == plan["actions"]
    assert all(link["mtu"] == 9000 for link in links("spark2"))
    before_files, before_links = mtimes("spark2"), links("spark2")
    again = host_json("spark2", "apply")
    assert (again["changed"], again["actions"]) == (False, [])
    assert mtimes("spark2") == before_files and links("spark2") == before_links
    wait_connected("spark2")
    wait_connected("spark1")


def test_the_management_interface_is_refused_unless_the_risk_is_accepted(tmp_path: Path) -> None:
    desired = tmp_path / "mgmt.toml"
    desired.write_text('[interconnect]\nmode = "single"\nsubnet_a = "10.78.0.0/24"\n[host]\ntwin_a = "mgmt0"\n')
    before = ip_json("spark1", "addr", "show", "dev", "mgmt0")
    r = client("spark1", "host", "plan", "-f", str(desired))
    assert r.returncode != 0
    assert "mgmt0 carries the default route" in r.stderr and "--accept-risk=lose-connection" in r.stderr
    r = client("spark1", "host", "apply", "-f", str(desired))
    assert r.returncode != 0 and ip_json("spark1", "addr", "show", "dev", "mgmt0") == before


def test_a_cluster_wide_apply_verifies_both_sides_and_changes_nothing_when_in_place() -> None:
    wait_connected("spark1")
    r = host_json("spark1", "apply", "--cluster")
    assert [n["node"] for n in r["nodes"]] == ["spark2", "spark1"] and not r["changed"]


def node_state(node: str) -> tuple[list[dict], dict[str, bytes]]:  # type: ignore[type-arg]
    root = lab_mod.sysroot(node)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "etc").rglob("*")) if p.is_file()}
    qos = lab_mod.node_dir(node) / "tools/qos-state.json"
    files["<qos>"] = qos.read_bytes()
    return links(node), files


def test_a_cluster_apply_whose_verification_fails_leaves_every_node_exactly_as_before() -> None:
    wait_connected("spark1")
    # spark1's twin A was changed by hand (its MTU back to 1500): the cluster apply has something to do there.
    subprocess.run(["ip", "-n", "spark1", "link", "set", "enp1s0f1np1", "mtu", "1500"], check=True)
    # spark2 drops every ICMP packet that comes in on its twin B: that twin's link is as good as held down,
    # and nothing sparkd configures can fix it.
    nft = (
        "table inet sparkdtest {\n  chain drop_icmp {\n    type filter hook input priority 0;\n"
        '    iifname "enP2p1s0f1np1" ip protocol icmp drop\n  }\n}\n'
    )
    subprocess.run(["ip", "netns", "exec", "spark2", "nft", "-f", "-"], input=nft, text=True, check=True)
    try:
        before = {node: node_state(node) for node in ("spark1", "spark2")}
        r = client("spark1", "host", "apply", "--cluster")
        assert r.returncode != 0
        assert "did not answer a 9000-byte don't-fragment ping out of enP2p1s0f1np1" in r.stderr
        assert "Every node was rolled back" in r.stderr
        assert {node: node_state(node) for node in ("spark1", "spark2")} == before
    finally:
        subprocess.run(["ip", "netns", "exec", "spark2", "nft", "delete", "table", "inet", "sparkdtest"], check=False)
    repaired = host_json("spark1", "apply", "--cluster")
    assert repaired["changed"] and [n["changed"] for n in repaired["nodes"]] == [False, True]
    assert all(link["mtu"] == 9000 for link in links("spark1"))
