"""Helpers of the host-configuration tests: the lab's stand-in tools, copied per test, and a configurator.

The stand-ins (`sparkd/lab/tools/`: dcb, mlnx_qos, modprobe, ufw, hostnamectl) keep their state in
their own directory and print it back in the real tools' formats, so that verification parses real
output; each test gets its own copy, configured to write only under the test's sysroot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparkd.config import Config
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.host.runner import SubprocessRunner
from sparkd.lab import fixtures
from tests.fakes.host import FakeHost


def tools_copy(directory: Path, sysroot: Path, only: tuple[str, ...] = fixtures.TOOL_NAMES) -> Path:
    """A private copy of the stand-in tools in `directory`, writing under `sysroot` (or only those named)."""
    return fixtures.write_tools(directory, sysroot, only)


def configurator(fake: FakeHost, config: Config, tools: Path) -> HostConfigurator:
    """The real configurator over a FakeHost (files, sysfs, netlink) and the stand-in tools (a real runner)."""
    config = dataclasses.replace(config, sysroot=str(fake.root))
    return HostConfigurator(config, fake.sysroot, fake.host.sysfs, fake.netlink, SubprocessRunner(str(tools)))
