"""Host plan and apply on a FakeHost with the lab's stand-in tools, compared as text with golden trees.

Each case is a node from the seed guide's examples or the survey's cabling cases; the golden file
holds the plan, every file sparkd wrote (the state records aside: they carry ids and times), the
links, the QoS the stand-ins were given, and the discovery notes (the RoCE v2 GID index).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkd.config import Config, InterconnectConfig, NodeConfig
from sparkd.config_host import HostConfig
from sparkd.errors import HostOperationFailed
from sparkd.lab import fixtures
from sparkd.model.inventory import LinkState
from tests.fakes.host import FakeHost
from tests.golden.harness import check
from tests.hostcfg_helpers import configurator, tools_copy


def _cage0(fake: FakeHost) -> None:
    """The cable in cage p0 (function 0) on this node: the survey's "port 0 on one node, port 1 on the other"."""
    ib = fake.root / "sys/class/infiniband"
    for dev in ("rocep1s0f0", "roceP2p1s0f0", "rocep1s0f1", "roceP2p1s0f1"):
        cabled = dev.endswith("f0")
        (ib / dev / "ports/1/state").write_text("4: ACTIVE\n" if cabled else "1: DOWN\n")
        (ib / dev / "ports/1/rate").write_text("200 Gb/sec (4X HDR)\n" if cabled else "40 Gb/sec (4X QDR)\n")
    for name, link in list(fake.netlink._links.items()):
        cabled = "f0np0" in name
        fake.netlink._links[name] = LinkState(name, link.index, cabled, cabled, "UP" if cabled else "DOWN", 1500, ())


def _one_twin(fake: FakeHost) -> None:
    """Only one twin: the PCIe domain 0002 functions have no RoCE device (one twin only, the survey's case)."""
    for dev in ("roceP2p1s0f0", "roceP2p1s0f1"):
        shutil.rmtree(fake.root / "sys/class/infiniband" / dev)


def _gid4(fake: FakeHost) -> None:
    fixtures.write_node_fixtures(fake.root, 1, gid_v2_index=4)


Prepare = Callable[[FakeHost], None]
CASES: dict[str, tuple[Config, Prepare | None]] = {
    "head-dual": (Config(node=NodeConfig("spark1", "head", 0)), None),
    "worker-dual": (Config(node=NodeConfig("spark2", "worker", 1)), None),
    "worker3-single": (
        Config(node=NodeConfig("spark4", "worker", 3), interconnect=InterconnectConfig(mode="single")),
        None,
    ),
    "head-mtu-1500": (Config(node=NodeConfig("spark1", "head", 0), interconnect=InterconnectConfig(mtu=1500)), None),
    "head-qos-off": (Config(node=NodeConfig("spark1", "head", 0), host=HostConfig(qos=False)), None),
    "worker-cage0": (Config(node=NodeConfig("spark2", "worker", 1)), _cage0),
    "worker-one-twin": (Config(node=NodeConfig("spark2", "worker", 1)), _one_twin),
    "worker-gid4": (Config(node=NodeConfig("spark2", "worker", 1)), _gid4),
    "head-peermem-hostname": (
        Config(node=NodeConfig("spark1", "head", 0), host=HostConfig(peermem=True, hostname="spark-a")),
        None,
    ),
}


def _qos(tools: Path) -> list[str]:
    state = tools / "qos-state.json"
    if not state.exists():
        return []
    interfaces = json.loads(state.read_text()).get("interfaces", {})
    return [
        f"qos {name} trust={'dscp' if s.get('dscp') else 'pcp'} pfc={[p for p, on in enumerate(s['pfc']) if on]}"
        for name, s in sorted(interfaces.items())
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_apply(tmp_path: Path, request: pytest.FixtureRequest, case: str) -> None:
    config, prepare = CASES[case]
    fake = FakeHost(tmp_path / "root", config.node.index or 0)
    if prepare is not None:
        prepare(fake)
    (fake.root / "etc").mkdir(exist_ok=True)
    (fake.root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    (fake.root / "proc/modules").write_text("mlx5_ib 491520 0 - Live 0x0000000000000000\n")
    (fake.root / "etc/hostname").write_text("spark-1234\n")
    tools = tools_copy(tmp_path / "tools", fake.root)
    host = configurator(fake, config, tools)
    plan = asyncio.run(host.plan())
    outcome = asyncio.run(host.apply())
    assert outcome.verified and outcome.changed and outcome.plan.actions == plan.actions
    text = "".join(f"note {n}\n" for n in plan.notes)
    text += "".join(
        f"plan {a.component} {a.kind.value} {a.target} {a.current!r} -> {a.desired!r}\n" for a in plan.actions
    )
    skipped = ("file /var/lib/sparkd/", "ran ", "tool ")  # records with ids; the tools' runs and raw state
    dump = [line for line in fake.dump().splitlines() if not line.startswith(skipped)]
    check(request, f"apply-{case}", text + "\n".join(dump + _qos(tools)) + "\n")
    mtimes = {p: p.stat().st_mtime_ns for p in fake.root.rglob("*") if p.is_file()}
    links = asyncio.run(fake.netlink.links())
    again = asyncio.run(host.apply())
    assert not again.changed and again.plan.actions == []  # the same desired state changes nothing
    assert {p: p.stat().st_mtime_ns for p in fake.root.rglob("*") if p.is_file()} == mtimes
    assert asyncio.run(fake.netlink.links()) == links


def test_a_failed_step_rolls_back_to_the_exact_state_before(tmp_path: Path) -> None:
    fake = FakeHost(tmp_path / "root")
    host = configurator(fake, CASES["head-dual"][0], tools_copy(tmp_path / "tools", fake.root))
    before = fake.dump()
    fake.netlink.fail.add("add_address:enP2p1s0f1np1")  # twin B refuses its address, after twin A got its own
    with pytest.raises(HostOperationFailed):
        asyncio.run(host.apply())
    assert fake.dump() == before
