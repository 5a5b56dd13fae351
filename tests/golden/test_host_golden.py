"""Host plan and apply on a FakeHost, compared as text with golden files (links, units, files written)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from sparkd.config import Config, InterconnectConfig, NodeConfig
from sparkd.engine.host import HostConfigurator
from sparkd.errors import HostOperationFailed
from tests.fakes.host import FakeHost
from tests.golden.harness import check

CASES = {
    "head-dual": Config(node=NodeConfig("spark1", "head", 0)),
    "worker-dual": Config(node=NodeConfig("spark2", "worker", 1)),
    "worker3-single": Config(node=NodeConfig("spark4", "worker", 3), interconnect=InterconnectConfig(mode="single")),
    "head-mtu-1500": Config(node=NodeConfig("spark1", "head", 0), interconnect=InterconnectConfig(mtu=1500)),
}


def configurator(fake: FakeHost, config: Config) -> HostConfigurator:
    config = dataclasses.replace(config, sysroot=str(fake.root))
    return HostConfigurator(config, fake.sysroot, fake.host.sysfs, fake.netlink)


@pytest.mark.parametrize("case", sorted(CASES))
def test_apply(tmp_path: Path, request: pytest.FixtureRequest, case: str) -> None:
    fake = FakeHost(tmp_path, CASES[case].node.index or 0)
    host = configurator(fake, CASES[case])
    plan = asyncio.run(host.plan())
    actions, verified = asyncio.run(host.apply())
    assert verified and actions == plan
    text = "".join(f"plan {a.kind.value} {a.target} {a.current!r} -> {a.desired!r}\n" for a in plan)
    check(request, f"apply-{case}", text + fake.dump())
    again, _ = asyncio.run(host.apply())
    assert again == []  # the same desired state changes nothing


def test_a_failed_step_rolls_back_to_the_exact_state_before(tmp_path: Path) -> None:
    fake = FakeHost(tmp_path)
    host = configurator(fake, CASES["head-dual"])
    before = fake.dump()
    fake.netlink.fail.add("add_address:enP2p1s0f1np1")  # twin B refuses its address, after twin A got its own
    with pytest.raises(HostOperationFailed):
        asyncio.run(host.apply())
    assert fake.dump() == before
