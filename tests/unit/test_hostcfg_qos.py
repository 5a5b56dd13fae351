"""RoCE QoS (`sparkd.engine.hostcfg.qos`): plan, apply, verify and roll back through the lab's stand-in `dcb`
and `mlnx_qos` (sparkd/lab/tools), run for real by the subprocess runner, so that verification parses the
tools' real output formats; the fake runner for failures and odd output. Files are the real adapter over a
temporary sysroot with the lab's fixtures, and a configfs tree made by hand as the kernel would make it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import sparkd.lab
from sparkd.engine.hostcfg.component import Change
from sparkd.engine.hostcfg.qos import QosComponent, QosState, SetPfc, SetRoceTos, SetTrust, parse_mlnx_qos
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import CommandResult
from sparkd.host.runner import SubprocessRunner
from sparkd.host.sysroot import Sysroot
from sparkd.model.host import ActionKind, DesiredHost, HostAction, QosSettings, TwinPlan
from tests.fakes.host import FakeHost, FakeRunner

TOOLS = Path(sparkd.lab.__file__).parent / "tools"
A, B = "enp1s0f1np1", "enP2p1s0f1np1"
RA, RB = "rocep1s0f1", "roceP2p1s0f1"
DESIRED = DesiredHost(
    twins=(
        TwinPlan(A, RA, ipaddress.IPv4Interface("192.168.100.1/24")),
        TwinPlan(B, RB, ipaddress.IPv4Interface("192.168.101.1/24")),
    )
)
OFF = DesiredHost(twins=DESIRED.twins, qos=QosSettings(enabled=False))
PFC3 = (False, False, False, True, False, False, False, False)
NO_PFC = (False,) * 8


class Configfs(Sysroot):
    """The sysroot, with configfs's attribute semantics under /sys/kernel/config: a write replaces the value,
    which then reads back with a newline (a plain file would keep the tail of a longer old value)."""

    def write_attribute(self, host_path: str, data: bytes, group: str = "") -> None:
        super().write_attribute(host_path, b"", group)  # makes the group; the attribute must exist already
        if host_path.startswith("/sys/kernel/config/"):
            self.path(host_path).write_bytes(data.strip() + b"\n")


def make_configfs(root: Path, *devices: str, tos: int = 0) -> None:
    """What configfs shows once rdma_cm's group of each device is made: ports/1/default_roce_tos."""
    for dev in devices:
        port = root / "sys/kernel/config/rdma_cm" / dev / "ports/1"
        port.mkdir(parents=True, exist_ok=True)
        (port / "default_roce_tos").write_text(f"{tos}\n")


def stub_runner(tmp_path: Path, *tools: str) -> SubprocessRunner:
    """The subprocess runner over a node's tools directory holding copies of `tools`; nothing else is searched,
    so that the machine's own dcb never runs."""
    directory = tmp_path / "node-tools"
    directory.mkdir(exist_ok=True)
    for tool in tools:
        shutil.copy2(TOOLS / tool, directory / tool)
    runner = SubprocessRunner(first=str(directory))
    runner.search = (str(directory),)
    return runner


def host(tmp_path: Path, configfs: bool = True) -> Configfs:
    root = tmp_path / "root"
    FakeHost(root)  # the lab's fixtures: /sys/class/infiniband and the netdevs of each RDMA device
    shutil.rmtree(root / "sys/kernel/config")  # the fixtures' configfs: each test makes its own (or none)
    if configfs:
        make_configfs(root, RA, RB)
    return Configfs(root)


def plan(qos: QosComponent, desired: DesiredHost) -> list[Change]:
    keys = qos.keys(desired)
    have = asyncio.run(qos.observe(keys))
    return [c for k in keys for c in qos.diff(k, qos.target(desired, k, have[k]), have[k])]


def apply(qos: QosComponent, changes: list[Change]) -> None:
    async def go() -> None:
        for change in changes:
            await qos.apply(change)

    asyncio.run(go())


def now(qos: QosComponent) -> dict[str, Any]:
    return dict(asyncio.run(qos.observe([A, B])))


def test_a_fresh_node_plans_pfc_trust_and_tos_per_twin(tmp_path: Path) -> None:
    qos = QosComponent(host(tmp_path), stub_runner(tmp_path, "dcb", "mlnx_qos"))
    assert now(qos) == {A: QosState("pcp", NO_PFC, 0, RA), B: QosState("pcp", NO_PFC, 0, RB)}
    assert [c.show() for c in plan(qos, DESIRED)] == [
        HostAction(ActionKind.SET_QOS, net, old, new, text, "qos")
        for n, r in ((A, RA), (B, RB))
        for net, old, new, text in (
            (n, "none", "3", f"set PFC of {n} on priorities 3 (from none)"),
            (n, "pcp", "dscp", f"trust DSCP on {n} (from PCP)"),
            (r, "0", "106", f"set the RDMA CM's default RoCE ToS of {r} to 106 (from 0)"),
        )
    ]


def test_apply_through_the_stand_ins_verifies_and_replans_nothing(tmp_path: Path) -> None:
    files = host(tmp_path)
    qos = QosComponent(files, stub_runner(tmp_path, "dcb"))
    apply(qos, plan(qos, DESIRED))
    assert now(qos) == {A: QosState("dscp", PFC3, 106, RA), B: QosState("dscp", PFC3, 106, RB)}
    assert plan(qos, DESIRED) == []  # verified, and idempotent
    assert files.read_text(f"/sys/kernel/config/rdma_cm/{RB}/ports/1/default_roce_tos") == "106\n"
    shown = subprocess.run(
        [tmp_path / "node-tools/dcb", "-N", "app", "show", "dev", A, "dscp-prio"], capture_output=True, text=True
    )
    assert shown.stdout.split()[1:] == [f"{d}:{d >> 3}" for d in range(64)]  # the default DSCP map: 26 -> 3


def test_disabling_qos_plans_the_reverse_and_brings_the_fresh_state_back(tmp_path: Path) -> None:
    qos = QosComponent(host(tmp_path), stub_runner(tmp_path, "dcb"))
    apply(qos, plan(qos, DESIRED))
    reverse = plan(qos, OFF)
    assert reverse == [
        change
        for n, r in ((A, RA), (B, RB))
        for change in (SetRoceTos(r, 106, 0), SetTrust(n, "dscp", "pcp"), SetPfc(n, PFC3, NO_PFC))
    ]  # traffic off the lossless priority first, then PFC off
    apply(qos, reverse)
    assert now(qos) == {A: QosState("pcp", NO_PFC, 0, RA), B: QosState("pcp", NO_PFC, 0, RB)}
    assert plan(qos, OFF) == []


def test_rollback_brings_back_the_exact_prior_state(tmp_path: Path) -> None:
    files = host(tmp_path)
    runner = stub_runner(tmp_path, "dcb", "mlnx_qos")
    qos = QosComponent(files, runner)
    odd = QosState("pcp", (True, False, False, False, False, True, False, False), 32, RA)
    apply(qos, qos.diff(A, odd, now(qos)[A]))  # an operator's own settings on twin A
    prior = {k: json.loads(json.dumps(qos.dump(v))) for k, v in now(qos).items()}  # the journal's record
    apply(qos, plan(qos, DESIRED))
    assert now(qos)[A] == QosState("dscp", PFC3, 106, RA)
    here = now(qos)
    apply(qos, [c for k in (A, B) for c in qos.diff(k, qos.load(prior[k]), here[k])])
    assert now(qos) == {A: odd, B: QosState("pcp", NO_PFC, 0, RB)}


def test_mlnx_qos_is_used_when_the_node_has_no_dcb(tmp_path: Path) -> None:
    qos = QosComponent(host(tmp_path), stub_runner(tmp_path, "mlnx_qos"))
    apply(qos, plan(qos, DESIRED))
    assert now(qos)[B] == QosState("dscp", PFC3, 106, RB)
    assert plan(qos, DESIRED) == []
    apply(qos, plan(qos, OFF))
    assert now(qos)[B] == QosState("pcp", NO_PFC, 0, RB)


def test_mlnx_qos_argv_and_dcb_preferred(tmp_path: Path) -> None:
    runner = FakeRunner()
    runner.programs = {"mlnx_qos": "/usr/bin/mlnx_qos"}
    qos = QosComponent(host(tmp_path), runner)
    apply(qos, [SetPfc(A, NO_PFC, PFC3), SetTrust(A, "pcp", "dscp")])
    assert runner.argvs == [
        ("/usr/bin/mlnx_qos", "-i", A, "--pfc", "0,0,0,1,0,0,0,0"),
        ("/usr/bin/mlnx_qos", "-i", A, "--trust", "dscp"),
    ]
    runner.programs["dcb"] = "/usr/sbin/dcb"
    apply(qos, [SetTrust(A, "dscp", "pcp"), SetPfc(A, PFC3, NO_PFC)])
    assert runner.argvs[2:] == [
        ("/usr/sbin/dcb", "app", "flush", "dev", A, "dscp-prio"),
        ("/usr/sbin/dcb", "pfc", "set", "dev", A, "prio-pfc", *(f"{p}:off" for p in range(8))),
    ]


def test_mlnx_qos_real_output_parses(tmp_path: Path) -> None:
    stub_runner(tmp_path, "mlnx_qos")
    shown = subprocess.run([tmp_path / "node-tools/mlnx_qos", "-i", "x"], capture_output=True, text=True, cwd="/")
    assert shown.returncode == 0
    assert parse_mlnx_qos(shown.stdout) == ("pcp", NO_PFC)
    text = (
        "DCBX mode: OS controlled\nPriority trust state: dscp\ndscp2prio mapping:\n\tprio:0 dscp:07,06,05,\n"
        "Cable len: 7\nPFC configuration:\n\tpriority    0   1   2   3   4   5   6   7\n"
        "\tenabled     0   0   0   1   0   0   0   0   \n\tbuffer      0   0   0   1   0   0   0   0   \n"
    )
    assert parse_mlnx_qos(text) == ("dscp", PFC3)


def fake(tmp_path: Path, result: CommandResult, tool: str = "dcb") -> tuple[QosComponent, FakeRunner]:
    runner = FakeRunner()
    runner.programs = {tool: f"/usr/sbin/{tool}"}
    runner.results = {f"/usr/sbin/{tool}": result}
    return QosComponent(host(tmp_path), runner), runner


def test_a_tool_exiting_non_zero_fails_with_its_message(tmp_path: Path) -> None:
    result = CommandResult((), 1, "", "Error: Operation not supported\nsecond line\n")
    qos, _ = fake(tmp_path, result)
    with pytest.raises(HostOperationFailed, match=r"exit status 1.*Operation not supported") as e:
        asyncio.run(qos.observe([A]))
    assert "second line" not in e.value.message
    with pytest.raises(HostOperationFailed, match="Operation not supported"):
        apply(qos, [SetTrust(A, "pcp", "dscp")])
    warned = "****** WARNING: lldpad service is running and may overwrite your settings ******\n\n"
    warned += "pfc list must have 8 items\n"
    qos, _ = fake(tmp_path, CommandResult((), 1, warned, ""), "mlnx_qos")
    with pytest.raises(HostOperationFailed, match="pfc list must have 8 items"):  # mlnx_qos errors go to stdout
        apply(qos, [SetPfc(A, NO_PFC, PFC3)])


@pytest.mark.parametrize(
    ("tool", "stdout"),
    [
        ("dcb", "\x00\xff garbage"),
        ("dcb", "prio-pfc 0:off 1:off 2:off\n"),
        ("dcb", "dscp-prio CS3:3 \n"),
        ("mlnx_qos", "Priority trust state: none\nPFC configuration:\n"),
        ("mlnx_qos", "Priority trust state: dscp\nPFC configuration:\n\tpriority 0 1 2 3 4 5 6 7\n\tenabled 0 0 2\n"),
        ("mlnx_qos", "x" * 70000),
    ],
)
def test_garbage_output_fails_cleanly(tmp_path: Path, tool: str, stdout: str) -> None:
    qos, _ = fake(tmp_path, CommandResult((), 0, stdout, ""), tool)
    with pytest.raises(HostOperationFailed, match=f"cannot read the QoS of {A}: {tool}'s output"):
        asyncio.run(qos.observe([A]))


def test_no_tool_with_qos_on_refuses_naming_the_tools(tmp_path: Path) -> None:
    runner = FakeRunner()
    qos = QosComponent(host(tmp_path), runner)
    have = asyncio.run(qos.observe([A]))
    assert have == {A: QosState("", (), 0, RA)}
    with pytest.raises(HostOperationFailed, match=r"dcb \(package iproute2\) or mlnx_qos \(package mlnx-tools"):
        qos.target(DESIRED, A, have[A])
    with pytest.raises(HostOperationFailed, match="neither"):
        apply(qos, [SetTrust(A, "pcp", "dscp")])
    assert runner.argvs == []


def test_no_tool_with_qos_off_plans_nothing(tmp_path: Path) -> None:
    runner = FakeRunner()
    qos = QosComponent(host(tmp_path, configfs=False), runner)
    assert plan(qos, OFF) == []
    assert runner.argvs == []


def test_tos_from_configfs(tmp_path: Path) -> None:
    files = host(tmp_path, configfs=False)
    qos = QosComponent(files, stub_runner(tmp_path, "dcb"))
    assert now(qos)[A].tos == 0  # no group: not set through configfs since boot
    with pytest.raises(HostOperationFailed, match="configfs mounted"):
        apply(qos, [SetRoceTos(RA, 0, 106)])  # no rdma_cm directory: configfs not mounted, or no rdma_cm
    make_configfs(files.root, RA, tos=96)
    assert now(qos)[A].tos == 96
    (files.root / f"sys/kernel/config/rdma_cm/{RA}/ports/1/default_roce_tos").write_text("banana\n")
    with pytest.raises(HostOperationFailed, match="not a ToS"):
        now(qos)
    shutil.rmtree(files.root / f"sys/kernel/config/rdma_cm/{RA}/ports")
    (files.root / f"sys/kernel/config/rdma_cm/{RA}/ports").mkdir()
    with pytest.raises(HostOperationFailed, match="has no ports/1"):
        now(qos)


def test_a_netdev_without_an_rdma_device_or_a_bad_name_fails(tmp_path: Path) -> None:
    qos = QosComponent(host(tmp_path), stub_runner(tmp_path, "dcb"))
    with pytest.raises(HostOperationFailed, match="no RDMA device"):
        asyncio.run(qos.observe(["eth0"]))
    with pytest.raises(HostOperationFailed, match="not a netdev name"):
        asyncio.run(qos.observe(["../../x"]))


def test_dump_load_round_trip() -> None:
    qos = QosComponent(Sysroot("/nonexistent"), FakeRunner())
    for item in (QosState("dscp", PFC3, 106, RA), QosState("", (), 0, RB), None):
        assert qos.load(json.loads(json.dumps(qos.dump(item)))) == item
    assert qos.diff(A, QosState("dscp", PFC3, 106, RA), QosState("dscp", PFC3, 106, RA)) == []


GOOD = {"trust": "dscp", "pfc": list(PFC3), "tos": 106, "rdma_device": RA}


@pytest.mark.parametrize(
    "record",
    [
        [],
        "dscp",
        {**GOOD, "extra": 1},
        {k: v for k, v in GOOD.items() if k != "tos"},
        {**GOOD, "trust": "DSCP"},
        {**GOOD, "trust": ["dscp"]},
        {**GOOD, "pfc": [True] * 7},
        {**GOOD, "pfc": [1, 0, 0, 0, 0, 0, 0, 0]},
        {**GOOD, "trust": "", "pfc": list(PFC3)},
        {**GOOD, "tos": 256},
        {**GOOD, "tos": True},
        {**GOOD, "tos": "106"},
        {**GOOD, "rdma_device": "../etc"},
        {**GOOD, "rdma_device": ""},
    ],
)
def test_load_rejects_bad_records(record: object) -> None:
    with pytest.raises(ValueError, match="QoS record"):
        QosComponent(Sysroot("/nonexistent"), FakeRunner()).load(record)


@pytest.mark.parametrize(
    "argv",
    [
        ["dcb", "pfc", "show", "dev", "a/b", "prio-pfc"],
        ["dcb", "pfc", "show", "dev", "x" * 16, "prio-pfc"],
        ["dcb", "pfc", "set", "dev", "eth0", "prio-pfc", "8:on"],
        ["dcb", "app", "replace", "dev", "eth0", "dscp-prio", "64:1"],
        ["dcb", "app", "show", "dev", "eth0", "dscp-prio"],  # names, not -N: not a form sparkd uses
        ["dcb", "link", "set", "dev", "eth0", "down"],
        ["mlnx_qos", "-i", "eth0", "--pfc", "1,1"],
        ["mlnx_qos", "-i", "eth0", "--trust", "none"],
        ["mlnx_qos", "-i", "-rf"],
        ["mlnx_qos", "--interface", "eth0"],
    ],
)
def test_the_stand_ins_refuse_other_forms(tmp_path: Path, argv: list[str]) -> None:
    runner = stub_runner(tmp_path, "dcb", "mlnx_qos")
    result = asyncio.run(runner.run([str(runner.which(argv[0])), *argv[1:]], 10))
    assert result.returncode == 1
    assert "Usage:" in result.stderr
    assert not (tmp_path / "node-tools/qos-state.json").exists()
