"""The gpudirect, firewall and hostname components, applied through the lab's real stand-in tools.

Each test copies the stand-ins (sparkd/lab/tools) into its tmp directory, points their config at a tmp
sysroot, and runs them through the real `SubprocessRunner`: plan -> apply -> observe -> the diff is empty;
a re-plan is empty; a rollback to the recorded prior (dump -> JSON -> load -> diff -> apply) brings the
prior back exactly. Tools that are missing are a `FakeRunner` with no programs (never the machine's own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from sparkd.engine.hostcfg.component import Change, Component
from sparkd.engine.hostcfg.firewall import (
    ClosePort,
    FirewallComponent,
    Opening,
    OpenPort,
    firewall_report,
    parse_ufw_status,
)
from sparkd.engine.hostcfg.gpudirect import GpuDirectComponent, LoadModule, UnloadModule, gpudirect_report
from sparkd.engine.hostcfg.hostname import HostnameComponent, SetHostname, parse_etc_hostname, valid_hostname
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import CommandResult
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysroot import Sysroot
from sparkd.model.host import ActionKind, DesiredHost, FirewallOpening, TwinPlan
from tests.fakes.host import FakeRunner

TOOLS = Path(__file__).resolve().parents[2] / "sparkd" / "lab" / "tools"
MINE = ("modprobe", "ufw", "hostnamectl")
TWINS = (
    TwinPlan("enp1s0f1np1", "rocep1s0f1", ipaddress.IPv4Interface("192.168.100.1/24")),
    TwinPlan("enP2p1s0f1np1", "roceP2p1s0f1", ipaddress.IPv4Interface("192.168.101.1/24")),
)
PROC_MODULES = (
    "mlx5_ib 491520 0 - Live 0x0000000000000000\n"
    "nvidia 14155776 12 nvidia_uvm, Live 0x0000000000000000 (POE)\n"
    "mlx5_core 2637824 1 mlx5_ib, Live 0x0000000000000000\n"
)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A copy of the stand-ins, configured for the sysroot tmp_path/root."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in MINE:
        shutil.copy2(TOOLS / name, tools / name)
    root = tmp_path / "root"
    (tools / "modprobe.conf.json").write_text(json.dumps({"proc_modules": str(root / "proc/modules")}))
    (tools / "hostnamectl.conf.json").write_text(json.dumps({"etc_hostname": str(root / "etc/hostname")}))
    return tools


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for d in ("proc", "etc/ufw"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def runner(tools: Path) -> SubprocessRunner:
    r = SubprocessRunner(first=str(tools))
    for name in MINE:  # the stand-ins, never the machine's own tools
        assert r.which(name) == str(tools / name)
    return r


async def plan(c: Component, desired: DesiredHost) -> tuple[list[Change], Mapping[str, Any]]:
    keys = c.keys(desired)
    have = await c.observe(keys)
    return [ch for k in keys for ch in c.diff(k, c.target(desired, k, have[k]), have[k])], have


async def apply(c: Component, changes: list[Change]) -> None:
    for change in changes:
        await c.apply(change)


async def roll_back(c: Component, keys: list[str], prior: Mapping[str, Any]) -> list[Change]:
    """Records `prior` as the journal does, and brings it back; returns the changes made."""
    records = json.loads(json.dumps({k: c.dump(v) for k, v in prior.items()}))
    want = {k: c.load(records[k]) for k in keys}
    have = await c.observe(keys)
    changes = [ch for k in keys for ch in c.diff(k, want[k], have[k])]
    await apply(c, changes)
    return changes


async def converged(c: Component, desired: DesiredHost) -> Mapping[str, Any]:
    """Observes again: the diff against the target is empty."""
    changes, have = await plan(c, desired)
    assert changes == []
    return have


# -- gpudirect


def test_gpudirect_off_plans_nothing_and_never_unloads(root: Path, tools: Path) -> None:
    (root / "proc/modules").write_text(PROC_MODULES + "nvidia_peermem 16384 0 - Live 0x0000000000000000\n")
    c = GpuDirectComponent(Sysroot(root), runner(tools))
    assert c.keys(DesiredHost(TWINS)) == []
    assert asyncio.run(plan(c, DesiredHost(TWINS)))[0] == []
    assert "nvidia_peermem " in (root / "proc/modules").read_text()


def test_gpudirect_load_verify_replan_and_roll_back(root: Path, tools: Path) -> None:
    (root / "proc/modules").write_text(PROC_MODULES)
    c = GpuDirectComponent(Sysroot(root), runner(tools))
    desired = DesiredHost(TWINS, peermem=True)

    async def go() -> None:
        changes, prior = await plan(c, desired)
        assert changes == [LoadModule("nvidia_peermem")]
        action = changes[0].show()
        assert (action.kind, action.component, action.description) == (
            ActionKind.LOAD_MODULE,
            "gpudirect",
            "modprobe nvidia-peermem",
        )
        await apply(c, changes)
        assert (await converged(c, desired))["nvidia_peermem"].loaded
        assert "nvidia_peermem 16384 0 - Live" in (root / "proc/modules").read_text()
        assert await roll_back(c, ["nvidia_peermem"], prior) == [UnloadModule("nvidia_peermem")]
        assert await c.observe(["nvidia_peermem"]) == prior

    asyncio.run(go())
    assert (root / "proc/modules").read_text() == PROC_MODULES


def test_gpudirect_load_failure_says_it_is_expected_on_a_spark(root: Path, tools: Path) -> None:
    (root / "proc/modules").write_text(PROC_MODULES)
    (tools / "modprobe-fail").write_text("nvidia_peermem\n")
    c = GpuDirectComponent(Sysroot(root), runner(tools))
    with pytest.raises(HostOperationFailed) as e:
        asyncio.run(c.apply(LoadModule()))
    message = e.value.message
    assert "could not insert 'nvidia_peermem': Invalid argument" in message
    assert "GPUDirect RDMA is not supported on GB10" in message
    assert "host memory" in message and "peermem = false" in message
    assert (root / "proc/modules").read_text() == PROC_MODULES


def test_gpudirect_without_modprobe_names_the_remedy(root: Path) -> None:
    c = GpuDirectComponent(Sysroot(root), FakeRunner())
    assert asyncio.run(c.observe(["nvidia_peermem"]))["nvidia_peermem"].loaded is False  # no /proc/modules
    with pytest.raises(HostOperationFailed, match=r"modprobe is not installed \(install the kmod package\)"):
        asyncio.run(c.apply(LoadModule()))


def test_gpudirect_report() -> None:
    assert gpudirect_report(None) == "nvidia_peermem not loaded: not needed on GB10, NCCL uses host memory (GDR 0)"
    assert gpudirect_report(PROC_MODULES + "nvidia_peermem_x 1 0 - Live 0x0\n").startswith("nvidia_peermem not")
    assert gpudirect_report(PROC_MODULES + "nvidia_peermem 16384 0 - Live 0x0\n") == "nvidia_peermem loaded"


def standin(tools: Path, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(tools / name), *argv], capture_output=True, text=True)


@pytest.mark.parametrize("argv", [[], ["-r"], ["a", "b"], ["--force", "x"], ["../etc"], ["-r", "a b"]])
def test_modprobe_standin_refuses_other_forms(tools: Path, argv: list[str]) -> None:
    done = standin(tools, "modprobe", *argv)
    assert done.returncode == 1 and "usage: modprobe NAME" in done.stderr


@pytest.mark.parametrize(
    ("name", "conf", "argv"),
    [
        ("modprobe", None, ["nvidia-peermem"]),
        ("modprobe", {"proc_modules": "/proc/modules"}, ["-r", "nvidia-peermem"]),  # the machine's own
        ("hostnamectl", None, ["set-hostname", "spark-a"]),
        ("hostnamectl", {"etc_hostname": "/etc/hostname"}, ["set-hostname", "spark-a"]),
    ],
)
def test_standins_refuse_without_a_lab_config(tools: Path, name: str, conf: object, argv: list[str]) -> None:
    (tools / f"{name}.conf.json").unlink()
    if conf is not None:
        (tools / f"{name}.conf.json").write_text(json.dumps(conf))
    done = standin(tools, name, *argv)
    assert done.returncode == 1 and f"{name}.conf.json" in done.stderr


# -- firewall

OPENINGS = (FirewallOpening(29500, "rendezvous"), FirewallOpening(7471, "peer"))
UFW_STATUS = """Status: active

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW       Anywhere
7471/tcp on enp1s0f1np1    ALLOW       Anywhere                   # sparkd: peer
8000/tcp on enp1s0f1np1    DENY        Anywhere
9000/tcp on enp1s0f1np1    ALLOW       10.0.0.0/8
7471/tcp (v6) on enP2p1s0f1np1 ALLOW       Anywhere (v6)              # sparkd: peer
"""


def firewall(root: Path, tools: Path, rules: list[dict[str, Any]] | None = None) -> FirewallComponent:
    (root / "etc/ufw/ufw.conf").write_text("# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n")
    if rules is not None:
        (tools / "ufw-state.json").write_text(json.dumps({"rules": rules}))
    return FirewallComponent(Sysroot(root), runner(tools))


def test_firewall_open_verify_replan_and_roll_back(root: Path, tools: Path) -> None:
    theirs = [{"netdev": "enp1s0f1np1", "port": 7471, "comment": ""}]  # opened by the admin, before sparkd
    c = firewall(root, tools, theirs)
    desired = DesiredHost(TWINS, firewall=OPENINGS)
    keys = c.keys(desired)
    assert keys == [
        "enp1s0f1np1/7471/tcp",
        "enp1s0f1np1/29500/tcp",
        "enP2p1s0f1np1/7471/tcp",
        "enP2p1s0f1np1/29500/tcp",
    ]

    async def go() -> None:
        changes, prior = await plan(c, desired)
        assert prior["enp1s0f1np1/7471/tcp"] == Opening(True)
        assert changes == [
            OpenPort("enp1s0f1np1", 29500, "rendezvous"),
            OpenPort("enP2p1s0f1np1", 7471, "peer"),
            OpenPort("enP2p1s0f1np1", 29500, "rendezvous"),
        ]
        action = changes[1].show()
        assert (action.kind, action.target, action.component) == (
            ActionKind.OPEN_PORT,
            "enP2p1s0f1np1/7471/tcp",
            "firewall",
        )
        await apply(c, changes)
        assert all(item.open for item in (await converged(c, desired)).values())
        assert c.report(await c.observe(keys)) == "ufw active: 4 interconnect port(s) open"
        closed = await roll_back(c, keys, prior)
        assert closed == [
            ClosePort("enp1s0f1np1", 29500),
            ClosePort("enP2p1s0f1np1", 7471),
            ClosePort("enP2p1s0f1np1", 29500),
        ]
        assert await c.observe(keys) == prior

    asyncio.run(go())
    assert json.loads((tools / "ufw-state.json").read_text())["rules"] == theirs  # the admin's rule stays


def test_firewall_rule_comment_reaches_ufw(root: Path, tools: Path) -> None:
    c = firewall(root, tools, [])
    asyncio.run(c.apply(OpenPort("enp1s0f1np1", 7471, "peer")))
    status = subprocess.run([str(tools / "ufw"), "status"], capture_output=True, text=True).stdout
    assert "7471/tcp on enp1s0f1np1    ALLOW       Anywhere                   # sparkd: peer" in status
    assert "7471/tcp (v6) on enp1s0f1np1 ALLOW       Anywhere (v6)" in status


def test_firewall_argv_is_ufws_rule_syntax(root: Path) -> None:
    fake = FakeRunner()
    fake.programs["ufw"] = "/usr/sbin/ufw"
    c = FirewallComponent(Sysroot(root), fake)
    asyncio.run(c.apply(OpenPort("enp1s0f1np1", 7471, "peer")))
    asyncio.run(c.apply(ClosePort("enp1s0f1np1", 7471)))
    rule = ("allow", "in", "on", "enp1s0f1np1", "to", "any", "port", "7471", "proto", "tcp")
    assert fake.argvs == [("/usr/sbin/ufw", *rule, "comment", "sparkd: peer"), ("/usr/sbin/ufw", "delete", *rule)]


def test_firewall_inactive_or_missing_plans_nothing(root: Path, tools: Path) -> None:
    desired = DesiredHost(TWINS, firewall=OPENINGS)
    (root / "etc/ufw/ufw.conf").write_text("ENABLED=yes\nENABLED=no\n")
    c = FirewallComponent(Sysroot(root), runner(tools))
    assert c.keys(desired) == []
    assert c.report() == "no active firewall (ufw inactive): nothing to open"
    (root / "etc/ufw/ufw.conf").write_text("ENABLED=yes\n")
    missing = FirewallComponent(Sysroot(root), FakeRunner())
    assert missing.keys(desired) == []
    assert missing.report() == "no active firewall (ufw not installed): nothing to open"
    assert firewall_report(None, True) == "no active firewall (ufw inactive): nothing to open"
    assert FirewallComponent(Sysroot(root), runner(tools)).keys(DesiredHost(TWINS)) == []  # no ports in use


def test_firewall_enabled_but_not_running_is_an_error(root: Path, tools: Path) -> None:
    c = firewall(root, tools)
    (tools / "ufw-state.json").write_text(json.dumps({"active": False, "rules": []}))
    with pytest.raises(HostOperationFailed, match="says inactive: run `ufw enable`"):
        asyncio.run(c.observe(c.keys(DesiredHost(TWINS, firewall=OPENINGS))))


def test_firewall_without_ufw_at_apply_names_the_remedy(root: Path) -> None:
    c = FirewallComponent(Sysroot(root), FakeRunner())
    with pytest.raises(HostOperationFailed, match=r"apt install ufw"):
        asyncio.run(c.apply(OpenPort("enp1s0f1np1", 7471, "peer")))


def test_firewall_ufw_failure_is_reported(root: Path) -> None:
    fake = FakeRunner()
    fake.programs["ufw"] = "/usr/sbin/ufw"
    fake.results["/usr/sbin/ufw"] = CommandResult(("ufw",), 1, "", "ERROR: Could not find interface\n")
    c = FirewallComponent(Sysroot(root), fake)
    with pytest.raises(HostOperationFailed, match="exited 1: ERROR: Could not find interface"):
        asyncio.run(c.apply(OpenPort("enp1s0f1np1", 7471, "peer")))


def test_parse_ufw_status() -> None:
    active, allowed = parse_ufw_status(UFW_STATUS)
    assert active and allowed == {("enp1s0f1np1", 7471)}  # DENY, a source range and IPv6-only do not count
    assert parse_ufw_status("Status: inactive\n") == (False, set())
    with pytest.raises(ValueError):
        parse_ufw_status("ERROR: You need to be root to run this script\n")


def test_firewall_refuses_bad_ports_and_keys() -> None:
    c = FirewallComponent(Sysroot("/nonexistent"), FakeRunner())
    with pytest.raises(ValueError):
        c.diff("enp1s0f1np1/70000/tcp", Opening(True), Opening(False))
    with pytest.raises(ValueError):
        c.diff("a b/7471/tcp", Opening(True), Opening(False))


@pytest.mark.parametrize(
    "argv", ["", "status verbose", "allow 7471", "allow in on x;y to any port 1 proto tcp", "reset", "disable"]
)
def test_ufw_standin_refuses_other_forms(tools: Path, argv: str) -> None:
    done = standin(tools, "ufw", *argv.split())
    assert done.returncode == 1 and "usage: ufw status" in done.stderr
    assert not (tools / "ufw-state.json").exists()


# -- hostname


def test_hostname_set_verify_replan_and_roll_back(root: Path, tools: Path) -> None:
    (root / "etc/hostname").write_text("# set at install\nspark-fb97\n")
    machine = socket.gethostname()
    c = HostnameComponent(Sysroot(root), runner(tools))
    desired = DesiredHost(TWINS, hostname="spark-a")

    async def go() -> None:
        changes, prior = await plan(c, desired)
        assert changes == [SetHostname("spark-a", "spark-fb97")]
        action = changes[0].show()
        assert (action.kind, action.current, action.desired) == (ActionKind.SET_HOSTNAME, "spark-fb97", "spark-a")
        await apply(c, changes)
        assert (root / "etc/hostname").read_text() == "spark-a\n"
        await converged(c, desired)
        assert await roll_back(c, ["hostname"], prior) == [SetHostname("spark-fb97", "spark-a")]
        assert await c.observe(["hostname"]) == prior

    asyncio.run(go())
    assert (root / "etc/hostname").read_text() == "spark-fb97\n"
    assert socket.gethostname() == machine


def test_hostname_empty_plans_nothing(root: Path, tools: Path) -> None:
    c = HostnameComponent(Sysroot(root), runner(tools))
    assert c.keys(DesiredHost(TWINS)) == []
    assert asyncio.run(plan(c, DesiredHost(TWINS)))[0] == []


def test_hostname_rollback_to_none_leaves_it(root: Path) -> None:
    c = HostnameComponent(Sysroot(root), FakeRunner())
    assert asyncio.run(c.observe(["hostname"])) == {"hostname": None}
    assert c.diff("hostname", None, c.load({"name": "spark-a"})) == []


@pytest.mark.parametrize("name", ["-spark", "spark_a", "a" * 64, "spark..a", "a." * 32 + "b", "spark a", "spark\n"])
def test_hostname_refuses_bad_names(root: Path, tools: Path, name: str) -> None:
    c = HostnameComponent(Sysroot(root), runner(tools))
    with pytest.raises(HostOperationFailed, match="not a host name"):
        c.target(DesiredHost(TWINS, hostname=name), "hostname", None)
    with pytest.raises(HostOperationFailed, match="not a host name"):
        asyncio.run(c.apply(SetHostname(name)))
    assert standin(tools, "hostnamectl", "set-hostname", name).returncode == 1
    assert not (root / "etc/hostname").exists()


def test_hostname_without_hostnamectl_names_the_remedy(root: Path) -> None:
    c = HostnameComponent(Sysroot(root), FakeRunner())
    with pytest.raises(HostOperationFailed, match="hostnamectl is not installed"):
        asyncio.run(c.apply(SetHostname("spark-a")))


def test_hostnamectl_standin_refuses_other_forms(tools: Path) -> None:
    for argv in (["status"], ["set-hostname"], ["--pretty", "set-hostname", "a"], ["set-hostname", "a", "b"]):
        done = standin(tools, "hostnamectl", *argv)
        assert done.returncode == 1 and "usage: hostnamectl" in done.stderr


def test_parse_etc_hostname() -> None:
    assert parse_etc_hostname("\n# comment\n  spark-a  \nignored\n") == "spark-a"
    assert parse_etc_hostname("# only a comment\n") is None
    assert parse_etc_hostname("not valid!\n") is None
    assert valid_hostname("spark-a.lab") and valid_hostname("a" * 63) and not valid_hostname("")


# -- records

BAD_RECORDS = {
    GpuDirectComponent: [{"loaded": "yes"}, {"loaded": True, "x": 1}, [True], "loaded", {"loaded": 1}],
    FirewallComponent: [
        {"open": True},
        {"open": "y", "what": ""},
        {"open": True, "what": "a;b"},
        {"open": 1, "what": ""},
    ],
    HostnameComponent: [{"name": "-x"}, {"name": 5}, {"name": "a", "b": 1}, "spark-a", {}],
}


@pytest.mark.parametrize(("kind", "record"), [(k, r) for k, records in BAD_RECORDS.items() for r in records])
def test_load_rejects_bad_records(kind: Callable[[Sysroot, FakeRunner], Component], record: object) -> None:
    with pytest.raises(ValueError):
        kind(Sysroot("/nonexistent"), FakeRunner()).load(record)
    assert kind(Sysroot("/nonexistent"), FakeRunner()).load(None) is None
