"""A host apply in a process of its own, as the daemon runs it: `python -m tests.integration.host_child
NETNS SYSROOT TOOLS INDEX apply|start|restore`. The failpoint tests kill it with SPARKD_HOST_FAILPOINT."""

from __future__ import annotations

import asyncio
import sys

from sparkd.config import Config, NodeConfig
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.host.netlink import Pyroute2Netlink
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysfs import SysrootSysfs
from sparkd.host.sysroot import Sysroot


def configurator(netns: str, root: str, tools: str, index: int) -> HostConfigurator:
    role = "head" if index == 0 else "worker"
    config = Config(node=NodeConfig(name=f"spark{index + 1}", role=role, index=index), sysroot=root)
    sysroot = Sysroot(root)
    return HostConfigurator(config, sysroot, SysrootSysfs(sysroot), Pyroute2Netlink(netns), SubprocessRunner(tools))


async def main(netns: str, root: str, tools: str, index: int, what: str) -> None:
    host = configurator(netns, root, tools, index)
    if what == "apply":
        await host.apply()
    elif what == "start":
        print(await host.start())
    elif what == "restore":
        await host.restore()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
