"""A deployment unit as a unit file (sparkd.model.unit.unit_file) and as a plan shows it (unit_properties),
and what systemd itself says of it: `systemd-analyze verify` and `systemd-analyze security --offline=true`
(the exposure score is printed; `-s` shows it, and benchmarks/unit_security.py prints the whole table)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sparkd.config import FrameworksConfig
from sparkd.engine.launch import LocalFacts, plan_units
from sparkd.engine.sandbox import sandbox_units, unit_sandbox
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework
from sparkd.model.inventory import RdmaPort, Twins
from sparkd.model.unit import UnitSpec, command_line, unit_file, unit_properties

TWINS = Twins(
    RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
    RdmaPort("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE"),
)
SPEC = DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", pipeline=2, tensor=1, port=8000)
#: Upper bounds of `systemd-analyze security` (systemd 252: native 1.8, container CLI 0.7 when written);
#: a change that loosens the sandbox shows here first.
MAX_EXPOSURE = {"native": 2.5, "container": 1.2}


def deployment_unit(venv: str, container: bool = False, user: str = "dynamic") -> UnitSpec:
    """The head's rank of a two-node vLLM deployment, as the launch plan makes it, then sandboxed."""
    facts = LocalFacts(host_ip="192.168.100.1", twins=TWINS, frameworks=FrameworksConfig(vllm_venv=venv))
    spec = dataclasses.replace(SPEC, name="democ") if container else SPEC
    (unit,) = plan_units(spec, Assignment(0, 2, "192.168.100.1", 29501), facts)
    if container:  # the docker CLI as the container runtime runs it (here: any executable that exists)
        docker = f"{venv}/bin/docker"
        remove = ("-" + docker, "rm", "--force", "sparkd-democ-rank0")
        unit = dataclasses.replace(
            unit, argv=(docker, "run", "--rm", "img:1", *unit.argv), exec_start_pre=(remove,), exec_stop_post=(remove,)
        )
    return sandbox_units([unit], unit_sandbox(FrameworksConfig(user=user), spec.name, container))[0]


def test_command_lines_are_quoted_and_escaped_for_systemd() -> None:
    words = ["/opt/x/bin/run", "plain", "two words", "50%", "$HOME", 'say "hi"', "back\\slash", "a\nb", ""]
    assert command_line(words) == (
        '/opt/x/bin/run plain "two words" "50%%" "$$HOME" "say \\"hi\\"" "back\\\\slash" "a\\x0ab" ""'
    )
    assert command_line(["-/usr/bin/docker", "rm", "-f", "x"]) == "-/usr/bin/docker rm -f x"


def test_the_unit_file_says_what_dbus_is_given() -> None:
    text = unit_file(deployment_unit("/opt/vllm"))
    lines = text.splitlines()
    assert lines[:2] == ["[Unit]", "Description=sparkd deployment demo rank 0 of 2 (vllm)"]
    assert "[Service]" in lines and lines[lines.index("[Service]") + 1].startswith("ExecStart=/opt/vllm/bin/vllm serve")
    for line in (
        "Environment=HOME=/var/cache/sparkd/demo",
        "Environment=NCCL_SOCKET_IFNAME==enp1s0f1np1",
        "User=sparkd-demo",
        "DynamicUser=yes",
        "LimitMEMLOCK=infinity",
        "CacheDirectory=sparkd/demo",
        "PrivateDevices=no",
        "MemoryDenyWriteExecute=no",
        "SystemCallFilter=@system-service pidfd_getfd",
        "SystemCallFilter=~@privileged",
        "DeviceAllow=char-nvidia* rw",
        "CapabilityBoundingSet=",
        "UMask=0077",
    ):
        assert line in lines, line


def test_a_plan_shows_the_sandbox_in_systemds_words() -> None:
    props = unit_properties(deployment_unit("/opt/vllm"))
    assert props["User"] == "sparkd-demo" and props["DynamicUser"] == "yes"
    assert props["DeviceAllow"] == "char-nvidia* rw; char-infiniband_verbs rw; /dev/infiniband/rdma_cm rw"
    assert props["SystemCallFilter"] == "@system-service pidfd_getfd; ~@privileged"
    assert props["ProtectSystem"] == "strict" and props["RestrictAddressFamilies"].endswith("AF_NETLINK")
    assert props["Type"] == "exec" and props["TimeoutStopSec"] == "30s"
    container = unit_properties(deployment_unit("/opt/vllm", container=True))
    assert (
        container["ExecStartPre"] == container["ExecStopPost"] == "-/opt/vllm/bin/docker rm --force sparkd-democ-rank0"
    )
    assert container["SupplementaryGroups"] == "docker" and container["PrivateNetwork"] == "yes"


def _analyze_offline() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    help_text = subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True).stdout
    return "--offline" in help_text


def exposure(path: Path) -> tuple[float, str]:
    """`systemd-analyze security --offline=true` of a unit file: the overall exposure and the table."""
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1)), out


@pytest.mark.skipif(not _analyze_offline(), reason="needs systemd-analyze with --offline (systemd 250 or later)")
@pytest.mark.parametrize("kind", ["native", "container"])
def test_systemd_verifies_the_unit_and_scores_its_exposure(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("vllm", "docker"):  # verify checks that ExecStart= and ExecStartPre= are executables
        (venv / "bin" / name).write_text("#!/bin/sh\nexit 0\n")
        (venv / "bin" / name).chmod(0o755)
    unit = deployment_unit(str(venv), container=kind == "container")
    path = tmp_path / unit.name
    path.write_text(unit_file(unit))
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0 and unit.name not in verify.stderr, verify.stderr
    score, table = exposure(path)
    with capsys.disabled():
        print(f"\nsystemd-analyze security --offline=true: {kind} deployment unit exposure {score}")
    assert score <= MAX_EXPOSURE[kind], table
    for kept in ("PrivateNetwork=", "MemoryDenyWriteExecute=", "PrivateDevices="):
        if kind == "native":
            assert re.search(rf"✗ {kept}", table), kept  # deliberately not set: the GPU, NCCL, the JITs
