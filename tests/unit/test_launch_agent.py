"""The OpenMPI launch agent: which orted commands run, who may ask, and for which ranks (no ssh)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from sparkd.api.agent_socket import AgentSocket
from sparkd.engine.agent import LaunchAgentService
from sparkd.engine.launchers.mpi import OrtedRefused, orted_command
from sparkd.host.proc import unit_of_cgroup, unit_of_pid
from sparkd.launch_agent import main as agent_main
from sparkd.model.deployment import Assignment, DeploymentRecord, DeploymentSpec, Framework, NodePart, Supervision

DATA = Path(__file__).parents[1] / "data"
AGENT = "/tmp/agent.sh"  # the agent the recorded commands name


def recorded(name: str) -> str:
    """A command mpirun 4.1 (Debian 12) gave its plm_rsh_agent, as the agent receives it (joined)."""
    words = [line.rstrip("\n")[1:-1] for line in (DATA / name).read_text().splitlines()]
    return " ".join(words[1:]).replace("10.99.99.1", "192.168.100.1")  # recorded with its head at .1 of a test net


@pytest.mark.parametrize("name", ["orted-argv.txt", "orted-argv-prefix.txt"])
def test_mpiruns_own_commands_become_a_foreground_orted(name: str) -> None:
    words = orted_command(recorded(name), AGENT, "192.168.100.1")
    assert words[0] == "orted" and "--daemonize" not in words
    assert words[words.index("ess_base_vpid") + 1] == "1"
    assert "PATH=/usr/bin:$PATH" not in words  # the prelude of an absolute mpirun is dropped


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("sh -c id", "only orted is started"),
        ("orted ; rm -rf /", "is not an MCA setting"),
        ("orted -mca mca_base_component_path /tmp/evil", "is not one mpirun's launcher sets"),
        ("orted -mca orte_launch_agent /bin/sh", "is not one mpirun's launcher sets"),
        ("orted --mca plm_rsh_agent /bin/ssh", "must be this deployment's launch agent"),
        ("LD_PRELOAD=/tmp/x.so ; export LD_PRELOAD ; orted", "is not the PATH prelude"),
        ("orted -mca ess", "is not an MCA setting"),
        ("orted -mca ess 'env\x00'", "control characters"),
        ('orted -mca ess "unclosed', "does not split"),
    ],
)
def test_anything_but_an_orted_launch_is_refused_naming_the_word(command: str, why: str) -> None:
    with pytest.raises(OrtedRefused) as e:
        orted_command(command, AGENT, "192.168.100.1")
    assert why in str(e.value)


def test_a_process_unit_comes_from_its_cgroup() -> None:
    assert unit_of_cgroup("0::/system.slice/sparkd-demo-rank0.service\n") == "sparkd-demo-rank0.service"
    v1 = "12:cpu:/x\n1:name=systemd:/system.slice/sparkd-a-rank0.service\n"
    assert unit_of_cgroup(v1) == "sparkd-a-rank0.service"
    # A user's own systemd names its units as it likes: never taken for the system's.
    user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/sparkd-victim-rank0.service\n"
    assert unit_of_cgroup(user) == ""
    assert unit_of_cgroup("0::/system.slice/sparkd-a-rank0.service/payload\n") == ""  # a sub-cgroup
    assert unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n") == ""
    assert unit_of_cgroup("0::/system.slice/evil\nname.service\n") == ""  # one line per hierarchy
    assert isinstance(unit_of_pid(os.getpid()), str) and unit_of_pid(2**30) == ""


class Cluster:
    def __init__(self) -> None:
        self.started: list[tuple[str, int, str]] = []

    async def start_part(self, node_id: str, spec: DeploymentSpec, a: Assignment, launch_command: str = "") -> str:
        self.started.append((node_id, a.rank, launch_command))
        return f"sparkd-{spec.name}-rank{a.rank}.service"


def record(framework: Framework = Framework.TRTLLM, deleting: bool = False) -> DeploymentRecord:
    spec = DeploymentSpec("trt", framework, "/models/m", "/models/m", 2, 1)
    parts = (NodePart("spark1", "", 0, "192.168.100.1"), NodePart("spark2", "id2", 1, "192.168.100.2"))
    return DeploymentRecord(spec, Assignment(0, 2, "192.168.100.1", 29501), parts, 0.0, Supervision(deleting=deleting))


def ask(service: LaunchAgentService, unit: str, request: Any) -> dict[str, Any]:
    return asyncio.run(service.handle(unit, request))


def test_the_deployments_mpirun_gets_its_planned_rank_started_on_that_node() -> None:
    cluster = Cluster()
    service = LaunchAgentService(lambda: {"trt": record()}, cluster, AGENT)  # type: ignore[arg-type]
    answer = ask(service, "sparkd-trt-rank0.service", {"host": "192.168.100.2", "command": recorded("orted-argv.txt")})
    assert answer == {"ok": True, "rank": 1, "node": "spark2", "unit": "sparkd-trt-rank1.service"}
    assert cluster.started == [("id2", 1, recorded("orted-argv.txt"))]


@pytest.mark.parametrize(
    ("records", "unit", "host", "why"),
    [
        ({"trt": record()}, "sparkd-trt-rank0.service", "192.168.100.7", "holds no rank of deployment trt"),
        ({"trt": record()}, "sparkd-trt-rank0.service", "192.168.100.1", "holds no rank of deployment trt"),
        ({"trt": record()}, "sshd.service", "192.168.100.2", "is not the mpirun of a TensorRT-LLM deployment"),
        ({"trt": record()}, "", "192.168.100.2", "a process of no unit"),
        ({"trt": record(Framework.VLLM)}, "sparkd-trt-rank0.service", "192.168.100.2", "is not the mpirun"),
        ({"trt": record(deleting=True)}, "sparkd-trt-rank0.service", "192.168.100.2", "is being deleted"),
    ],
)
def test_a_rank_the_plan_does_not_hold_or_a_caller_that_is_not_the_mpirun_is_refused(
    records: dict[str, DeploymentRecord], unit: str, host: str, why: str
) -> None:
    cluster = Cluster()
    service = LaunchAgentService(lambda: records, cluster, AGENT)  # type: ignore[arg-type]
    answer = ask(service, unit, {"host": host, "command": recorded("orted-argv.txt")})
    assert answer["ok"] is False and why in answer["error"]
    assert cluster.started == []  # nothing was asked of any node


class UnitOf:
    def __init__(self, unit: str) -> None:
        self.unit, self.pids = unit, []  # type: ignore[var-annotated]

    def unit_of(self, pid: int) -> str:
        self.pids.append(pid)
        return self.unit


def test_the_real_agent_program_over_the_real_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sparkd-launch-agent HOST WORDS...` (as mpirun runs it) against the socket: exit 0 once started, 1 refused;
    the caller is known by SO_PEERCRED (this test's own PID), never by what it says."""
    cluster, proc = Cluster(), UnitOf("sparkd-trt-rank0.service")
    service = LaunchAgentService(lambda: {"trt": record()}, cluster, AGENT)  # type: ignore[arg-type]
    path = tmp_path / "agent" / "agent.sock"
    monkeypatch.setenv("SPARKD_LAUNCH_AGENT_SOCKET", str(path))
    words = recorded("orted-argv.txt").split(" ")

    async def scenario() -> tuple[int, int]:
        server = AgentSocket(path, service, proc)  # type: ignore[arg-type]
        await server.start()
        try:
            assert path.stat().st_mode & 0o777 == 0o666
            ok = await asyncio.to_thread(agent_main, ["192.168.100.2", *words])
            refused = await asyncio.to_thread(agent_main, ["192.168.100.9", *words])
        finally:
            await server.stop()
        return ok, refused

    assert asyncio.run(scenario()) == (0, 1)
    assert proc.pids == [os.getpid(), os.getpid()]
    assert [(n, r) for n, r, _ in cluster.started] == [("id2", 1)]


def test_garbage_on_the_socket_gets_a_refusal_not_a_crash(tmp_path: Path) -> None:
    service = LaunchAgentService(lambda: {"trt": record()}, Cluster(), AGENT)  # type: ignore[arg-type]
    path = tmp_path / "a.sock"

    async def scenario() -> dict[str, Any]:
        server = AgentSocket(path, service, UnitOf("sparkd-trt-rank0.service"))  # type: ignore[arg-type]
        await server.start()
        try:

            def talk() -> bytes:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                    s.sendall(b"\xff not json\n")
                    return s.recv(4096)

            return json.loads(await asyncio.to_thread(talk))  # type: ignore[no-any-return]
        finally:
            await server.stop()

    answer = asyncio.run(scenario())
    assert answer["ok"] is False and "JSON object" in answer["error"]


def test_a_stranger_is_answered_before_it_is_read_and_the_agent_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = LaunchAgentService(lambda: {"trt": record()}, Cluster(), AGENT)  # type: ignore[arg-type]
    path = tmp_path / "a.sock"
    monkeypatch.setenv("SPARKD_LAUNCH_AGENT_SOCKET", str(path))

    async def scenario() -> int:
        server = AgentSocket(path, service, UnitOf("sshd.service"))  # type: ignore[arg-type]
        await server.start()
        try:
            return await asyncio.to_thread(agent_main, ["192.168.100.2", "orted", "-mca", "ess", "env" * 4000])
        finally:
            await server.stop()

    assert asyncio.run(scenario()) == 1
    assert "is not the mpirun of a TensorRT-LLM deployment" in capsys.readouterr().err
