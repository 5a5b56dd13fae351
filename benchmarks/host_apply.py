"""Time of a full host plan + apply + verify, and of a no-op re-apply, on a node with a Spark's layout (root):

    sudo .venv/bin/python benchmarks/host_apply.py [--trials 5]

Each trial makes two fresh network namespaces cabled like two Sparks (veth twins, `sparkd.lab.topology`),
a sysroot with the lab's recorded Spark layout, and the lab's stand-in QoS tools, then times, on the head:
- plan: observe every component and diff (changes nothing);
- apply: the intent journal, every change (MTU and addresses by netlink, RoCE QoS by the dcb stand-in, the
  ToS, the files), the verification by observing again, the commit;
- re-apply: the same desired state again (plan, nothing to change, nothing written).
Both namespaces are removed after each trial. Figures are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from sparkd.config import Config, NodeConfig
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.host.netlink import Pyroute2Netlink
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysfs import SysrootSysfs
from sparkd.host.sysroot import Sysroot
from sparkd.lab import fixtures, topology


async def trial(ns: str, root: Path) -> tuple[float, float, float, int]:
    fixtures.write_node_fixtures(root, 0)
    tools = fixtures.write_tools(root.parent / "tools", root)
    sysroot = Sysroot(root)
    config = Config(node=NodeConfig("spark1", "head", 0), sysroot=str(root))
    host = HostConfigurator(config, sysroot, SysrootSysfs(sysroot), Pyroute2Netlink(ns), SubprocessRunner(str(tools)))
    t0 = time.perf_counter()
    plan = await host.plan()
    t1 = time.perf_counter()
    outcome = await host.apply()
    t2 = time.perf_counter()
    again = await host.apply()
    t3 = time.perf_counter()
    assert outcome.verified and outcome.changed and not again.changed
    return t1 - t0, t2 - t1, t3 - t2, len(plan.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark makes network namespaces")
    a, b = f"sdb{os.getpid() % 100000}a", f"sdb{os.getpid() % 100000}b"
    plans, applies, noops = [], [], []
    steps = 0
    for _ in range(args.trials):
        topology.destroy([a, b])
        topology.create_pair(a, b)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                p, ap, noop, steps = asyncio.run(trial(a, Path(tmp) / "root"))
        finally:
            topology.destroy([a, b])
        plans.append(p)
        applies.append(ap)
        noops.append(noop)
    for name, values in (("plan", plans), ("apply + verify", applies), ("no-op re-apply", noops)):
        print(
            f"{name:>16}: median {statistics.median(values) * 1000:7.1f} ms, "
            f"min {min(values) * 1000:7.1f}, max {max(values) * 1000:7.1f} ({len(values)} trials)"
        )
    print(f"{'':>16}  a full apply made {steps} changes (links, RoCE QoS through the dcb stand-in, ToS, files)")


if __name__ == "__main__":
    main()
