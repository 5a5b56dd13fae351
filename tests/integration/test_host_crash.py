"""kill -9 at every step of a host apply, each step more than once: the next start ends in the old state or
the new one, never a mix, and no file is ever half written.

The apply runs in a process of its own (`host_child`, the daemon's own configurator) against real netlink
in a namespace, real files in a sysroot and the lab's stand-in QoS tools. `SPARKD_HOST_FAILPOINT=<step>`
makes it SIGKILL itself right after that step (`sparkd.engine.hostcfg.failpoints`); a second process then
starts as the daemon does (`HostConfigurator.start`: recovery from the intent journal, then the committed
state), and the whole host (both twins' MTU, addresses and state, every file under the sysroot, the QoS the
tools hold) is compared with the two states an apply may end in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sparkd.lab import fixtures
from tests.integration.conftest import Pair

ROOT = Path(__file__).parents[2]
REPEAT = 2


def child(pair: Pair, tools: Path, what: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARKD_HOST_FAILPOINT": failpoint}
    argv = [sys.executable, "-m", "tests.integration.host_child", pair.a, str(pair.root_a), str(tools), "0", what]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def state(pair: Pair, tools: Path) -> dict[str, object]:
    out = subprocess.run(["ip", "-n", pair.a, "-j", "addr"], capture_output=True, text=True, check=True).stdout
    links = {
        i["ifname"]: (
            i["mtu"],
            "UP" in i["flags"],
            sorted(f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"] if a["family"] == "inet"),
        )
        for i in json.loads(out)
        if i["ifname"].startswith("en")
    }
    files = {
        str(p.relative_to(pair.root_a)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(pair.root_a.rglob("*"))
        if p.is_file() and "var/lib/sparkd/host" not in str(p)
    }
    return {"links": links, "files": files, "qos": (tools / "qos-state.json").read_text()}


def steps(pair: Pair, tools: Path) -> list[str]:
    """Every failpoint of a full apply: after the journal, after each change, after verify, after commit."""
    code = (
        "import asyncio; from tests.integration.host_child import configurator; "
        f"host = configurator({pair.a!r}, {str(pair.root_a)!r}, {str(tools)!r}, 0); "
        "print(len(asyncio.run(host.plan()).steps))"
    )
    plan = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    n = int(plan.stdout.strip().splitlines()[-1])
    return ["journaled", *(f"change-{i}" for i in range(1, n + 1)), "verified", "committed"]


def test_kill_9_at_every_step_ends_in_the_old_or_the_new_state(pair: Pair, tmp_path: Path) -> None:
    tools = fixtures.write_tools(tmp_path / "tools", pair.root_a)
    old = state(pair, tools)
    failpoints = steps(pair, tools)
    assert len(failpoints) > 10
    assert child(pair, tools, "apply").returncode == 0
    new = state(pair, tools)
    assert new != old
    assert child(pair, tools, "restore").returncode == 0
    assert state(pair, tools) == old

    counts = {"old": 0, "new": 0}
    for failpoint in failpoints:
        for _ in range(REPEAT):
            killed = child(pair, tools, "apply", failpoint)
            assert killed.returncode == -signal.SIGKILL, (failpoint, killed.stderr[-2000:])
            started = child(pair, tools, "start")
            assert started.returncode == 0, started.stderr[-2000:]
            after = state(pair, tools)
            assert after in (old, new), f"after a kill at {failpoint}: neither the old state nor the new"
            ended = "new" if after == new else "old"
            assert ended == ("new" if failpoint == "committed" else "old"), failpoint
            counts[ended] += 1
            if ended == "new":
                assert child(pair, tools, "restore").returncode == 0
                assert state(pair, tools) == old
    print(f"\nkill -9 at {len(failpoints)} steps x {REPEAT}: {counts['old']} rolled back, {counts['new']} completed")
    assert counts["old"] == (len(failpoints) - 1) * REPEAT and counts["new"] == REPEAT
