"""Host apply against real netlink in namespaces: plan, apply, verify, idempotence, rollback, the route guard.

The configurator is the daemon's own, over pyroute2 in a namespace, files in a sysroot with the lab's
recorded Spark layout, and the lab's stand-in QoS tools (real processes printing the real tools' formats).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from sparkd.config import Config, NodeConfig
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.errors import HostOperationFailed, RouteNotOnInterconnect
from sparkd.host.netlink import Pyroute2Netlink
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysfs import SysrootSysfs
from sparkd.host.sysroot import Sysroot
from sparkd.lab import fixtures
from sparkd.model.host import ActionKind
from sparkd.peer.route_guard import RouteGuard
from tests.integration.conftest import Pair


def configurator(ns: str, root: Path, index: int) -> HostConfigurator:
    config = Config(node=NodeConfig(name=ns, role="head" if index == 0 else "worker", index=index), sysroot=str(root))
    sysroot = Sysroot(root)
    tools = fixtures.write_tools(root.parent / f"tools-{root.name}", root)
    return HostConfigurator(config, sysroot, SysrootSysfs(sysroot), Pyroute2Netlink(ns), SubprocessRunner(str(tools)))


def ip_addr(ns: str) -> dict[str, tuple[int, list[str], str]]:
    out = subprocess.run(["ip", "-n", ns, "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return {
        i["ifname"]: (
            i["mtu"],
            [f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"] if a["family"] == "inet"],
            i["operstate"],
        )
        for i in json.loads(out)
    }


def ping(ns: str, address: str, size: int) -> bool:
    cmd = ["ip", "netns", "exec", ns, "ping", "-M", "do", "-s", str(size), "-c", "1", "-W", "2", address]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_plan_lists_every_action_then_apply_makes_them(pair: Pair) -> None:
    host = configurator(pair.a, pair.root_a, 0)
    before = ip_addr(pair.a)
    plan = asyncio.run(host.plan())
    kinds = [a.kind for a in plan.actions]
    assert ip_addr(pair.a) == before  # a plan changes nothing
    assert kinds.count(ActionKind.SET_MTU) == 2 and kinds.count(ActionKind.ADD_ADDRESS) == 2
    assert kinds.count(ActionKind.SET_LINK_UP) == 2 and kinds.count(ActionKind.SET_QOS) == 6
    written = {a.target for a in plan.actions if a.kind is ActionKind.WRITE_FILE}
    assert {"/etc/nccl.conf", "/etc/profile.d/sparkd-nccl.sh", "/etc/hosts"} <= written
    outcome = asyncio.run(host.apply())
    assert outcome.verified and outcome.changed and outcome.plan.actions == plan.actions
    state = ip_addr(pair.a)
    assert state["enp1s0f1np1"][:2] == (9000, ["192.168.100.1/24"])
    assert state["enP2p1s0f1np1"][:2] == (9000, ["192.168.101.1/24"])
    conf = (pair.root_a / "etc/nccl.conf").read_text().splitlines()
    assert "NCCL_SOCKET_IFNAME==enp1s0f1np1" in conf and "NCCL_IB_HCA==rocep1s0f1,roceP2p1s0f1" in conf
    assert "NCCL_IB_TC=106" in conf
    assert (pair.root_a / "sys/kernel/config/rdma_cm/rocep1s0f1/ports/1/default_roce_tos").read_text() == "106\n"


def test_reapplying_the_same_state_changes_no_file_and_no_link(pair: Pair) -> None:
    host = configurator(pair.a, pair.root_a, 0)
    asyncio.run(host.apply())
    files, links = mtimes(pair.root_a), ip_addr(pair.a)
    again = asyncio.run(host.apply())
    assert not again.changed and again.plan.actions == [] and again.verified
    assert mtimes(pair.root_a) == files and ip_addr(pair.a) == links


def test_jumbo_frames_cross_both_twins_with_dont_fragment(pair: Pair) -> None:
    asyncio.run(configurator(pair.a, pair.root_a, 0).apply())
    asyncio.run(configurator(pair.b, pair.root_b, 1).apply())
    for address in ("192.168.100.2", "192.168.101.2"):
        assert ping(pair.a, address, 8972), f"9000-byte frame to {address} did not pass"
        assert not ping(pair.a, address, 8973), f"a frame over the MTU to {address} passed: the MTU is not real"


def test_stale_interconnect_address_is_removed(pair: Pair) -> None:
    subprocess.run(["ip", "-n", pair.a, "addr", "add", "192.168.100.77/24", "dev", "enp1s0f1np1"], check=True)
    subprocess.run(["ip", "-n", pair.a, "addr", "add", "10.1.2.3/24", "dev", "enp1s0f1np1"], check=True)
    host = configurator(pair.a, pair.root_a, 0)
    removes = [a for a in asyncio.run(host.plan()).actions if a.kind is ActionKind.REMOVE_ADDRESS]
    assert [(a.target, a.current) for a in removes] == [("enp1s0f1np1", "192.168.100.77/24")]
    asyncio.run(host.apply())
    # Only the stale interconnect address goes; an address outside the managed subnets stays.
    assert sorted(ip_addr(pair.a)["enp1s0f1np1"][1]) == ["10.1.2.3/24", "192.168.100.1/24"]


def test_failed_step_rolls_back_every_earlier_step(pair: Pair) -> None:
    (pair.root_a / "etc/nccl.conf").mkdir(parents=True)  # a file write will fail
    before = ip_addr(pair.a)
    host = configurator(pair.a, pair.root_a, 0)
    with pytest.raises(HostOperationFailed, match=r"/etc/nccl\.conf"):
        asyncio.run(host.apply())
    after = ip_addr(pair.a)
    for netdev in ("enp1s0f1np1", "enP2p1s0f1np1"):
        assert after[netdev] == before[netdev] == (1500, [], "DOWN")


def test_route_guard_allows_only_the_interconnect(pair: Pair) -> None:
    host = configurator(pair.a, pair.root_a, 0)
    asyncio.run(host.apply())
    subprocess.run(["ip", "-n", pair.a, "link", "add", "mgmt0", "type", "veth", "peer", "name", "mgmt1"], check=True)
    subprocess.run(["ip", "-n", pair.a, "addr", "add", "10.9.0.1/24", "dev", "mgmt0"], check=True)
    subprocess.run(["ip", "-n", pair.a, "link", "set", "mgmt0", "up"], check=True)

    async def twins() -> list[str]:
        return [t.netdev for t in (await host.twins()).all()]

    guard = RouteGuard(Pyroute2Netlink(pair.a), twins)
    assert asyncio.run(guard.check("192.168.100.2")) == "enp1s0f1np1"
    assert asyncio.run(guard.check("192.168.101.2")) == "enP2p1s0f1np1"
    with pytest.raises(RouteNotOnInterconnect) as e:
        asyncio.run(guard.check("10.9.0.2"))
    assert e.value.metadata == {"address": "10.9.0.2", "ifname": "mgmt0"}
    with pytest.raises(RouteNotOnInterconnect):
        asyncio.run(guard.check("203.0.113.1"))  # no route at all in the namespace
