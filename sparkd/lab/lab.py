"""Bring a lab up and down: namespaces, sysroots, a systemd, and one sparkd unit per node.

State lives in /var/lib/sparkd-lab (lab.json records what was created, so `down` removes
exactly that, even after a half-finished `up`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from sparkctl_client.client import Client, ClientError
from sparkd.host.systemd import DbusSystemd
from sparkd.lab import fixtures, sandbox, topology
from sparkd.model.unit import UnitSpec
from sparkd.v1 import host_service_pb2, node_service_pb2, peer_pb2, peer_service_pb2

T = TypeVar("T")
LAB_DIR = Path(os.environ.get("SPARKD_LAB_DIR", "/var/lib/sparkd-lab"))
STATE = LAB_DIR / "lab.json"
STANDIN = """#!/bin/sh
# sparkd lab stand-in for vLLM (sparkd/lab/standins/vllm.py); not the real vLLM.
exec {python} -m sparkd.lab.standins.vllm "$@"
"""


class LabError(Exception):
    """A lab operation failed; the message says what to do."""


@dataclass
class LabState:
    """What `up` created (saved before each step, so `down` can undo a partial `up`)."""

    nodes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    sandbox_pid: int = 0
    units: list[str] = field(default_factory=list)

    def save(self) -> None:
        LAB_DIR.mkdir(parents=True, exist_ok=True)
        STATE.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls) -> LabState | None:
        try:
            return cls(**json.loads(STATE.read_text()))
        except FileNotFoundError:
            return None


def node_dir(node: str) -> Path:
    return LAB_DIR / "nodes" / node


def sysroot(node: str) -> Path:
    return node_dir(node) / "root"


def admin_socket(node: str) -> Path:
    return sysroot(node) / "run/sparkd/sparkd.sock"


def daemon_unit(node: str) -> str:
    return f"sparkd-lab-{node}.service"


def _config(node: str, index: int) -> str:
    role = "head" if index == 0 else "worker"
    return f"""# sparkd lab node {node} (written by `sparkd lab up`)
version = 1
sysroot = "{sysroot(node)}"

[node]
name = "{node}"
role = "{role}"
index = {index}

[frameworks]
vllm_venv = "{LAB_DIR / "frameworks/vllm"}"

[units]
network_namespace_path = "/run/netns/{node}"

[lab]
nvml_fixture = "{fixtures.NVML_FIXTURE}"
"""


def _write_standins() -> None:
    vllm = LAB_DIR / "frameworks/vllm/bin/vllm"
    vllm.parent.mkdir(parents=True, exist_ok=True)
    vllm.write_text(STANDIN.format(python=sys.executable))
    vllm.chmod(0o755)


def _daemon_unit_spec(node: str) -> UnitSpec:
    return UnitSpec(
        name=daemon_unit(node),
        argv=[sys.executable, "-m", "sparkd", "run", "--config", str(node_dir(node) / "sparkd.toml")],
        description=f"sparkd (lab node {node})",
        environment={"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"},
        network_namespace_path=f"/run/netns/{node}",
        service_type="notify",
        restart="on-failure",
        working_directory="/",
    )


async def _each_on_systemd(op: Callable[[DbusSystemd, T], Awaitable[None]], items: list[T]) -> None:
    """Runs `op(systemd, item)` for each item on one D-Bus connection (e.g. `DbusSystemd.start` for unit specs)."""
    systemd = DbusSystemd()
    try:
        for item in items:
            await op(systemd, item)
    finally:
        await systemd.close()


def _wait(what: str, timeout: float, probe: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except ClientError as e:
            last = e.message
        time.sleep(0.2)
    raise LabError(
        f"timed out after {timeout:.0f} s waiting for {what}{': ' + last if last else ''}; "
        "see `journalctl -u 'sparkd-lab-*'`, then `sparkd lab down`"
    )


def up(n: int, bare: bool, log: Callable[[str], None] = print) -> LabState:
    """Creates an n-node lab and returns once it is ready (see `sparkd lab up --help`)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces and systemd units)")
    if n < 2 or n > 16:
        raise LabError(f"--nodes must be from 2 to 16, got {n}")
    if STATE.exists():
        raise LabError(f"a lab is already up ({STATE}); run `sparkd lab down` first")
    clash = [ns for ns in topology.node_names(n) + [topology.SWITCH_NS] if ns in topology.existing()]
    if clash:
        raise LabError(f"network namespaces {', '.join(clash)} exist already and are not this lab's; remove them")
    t0 = time.monotonic()
    state = LabState(nodes=topology.node_names(n))
    state.save()
    if sandbox.needed():
        state.sandbox_pid = sandbox.up(LAB_DIR / "sandbox-units")
        state.save()
        log(f"systemd sandbox up (pid {state.sandbox_pid})")
    state.namespaces = state.nodes + ([topology.SWITCH_NS] if n > 2 else [])
    state.save()
    topology.create(state.nodes)
    log(f"namespaces and twins up: {', '.join(state.nodes)}")
    _write_standins()
    for index, node in enumerate(state.nodes):
        fixtures.write_node_fixtures(sysroot(node), index)
        (node_dir(node) / "sparkd.toml").write_text(_config(node, index))
        state.units.append(daemon_unit(node))
        state.save()
        asyncio.run(_each_on_systemd(DbusSystemd.start, [_daemon_unit_spec(node)]))
    clients = {node: Client(str(admin_socket(node))) for node in state.nodes}
    try:
        _settle(clients, bare, t0, log)
    finally:
        for client in clients.values():
            client.close()
    return state


def _settle(clients: dict[str, Client], bare: bool, t0: float, log: Callable[[str], None]) -> None:
    """Waits for the daemons; unless bare, configures every link and waits for the peers."""
    for node, client in clients.items():

        def answers(c: Client = client) -> object:
            return c.call(c.node.GetVersion, node_service_pb2.GetVersionRequest(), timeout=2)

        _wait(f"sparkd on {node}", 30, answers)
    log(f"daemons answer ({time.monotonic() - t0:.1f} s)")
    if bare:
        return
    for node, client in clients.items():
        r = client.call(client.host.ApplyHost, host_service_pb2.ApplyHostRequest())
        log(f"{node}: link configured ({len(r.actions)} actions, verified={r.verified})")
    head = clients["spark1"]

    def peers_connected() -> bool:
        peers = head.call(head.peers.ListPeers, peer_service_pb2.ListPeersRequest()).peers
        return bool(sum(p.state == peer_pb2.PEER_STATE_CONNECTED for p in peers) == len(clients) - 1)

    _wait("the workers to connect to the head", 30, peers_connected)
    log(f"peers connected; lab ready in {time.monotonic() - t0:.1f} s")


def _rank(record: Path) -> int:
    """This node's rank in a deployment record (the lab's own files; 0 when unreadable)."""
    try:
        return int(json.loads(record.read_text())["assignment"]["rank"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def down(log: Callable[[str], None] = print) -> None:
    """Removes everything the lab created: units, processes, namespaces, sandbox, files."""
    state = LabState.load() or LabState()
    if state.units and not state.sandbox_pid:
        # A real systemd outlives the lab: stop the deployment units, then the daemons.
        deployments = [
            f"sparkd-{record.name.removesuffix('.json')}-rank{_rank(record)}.service"
            for node in state.nodes
            for record in sorted((sysroot(node) / "var/lib/sparkd/deployments").glob("*.json"))
        ]
        asyncio.run(_each_on_systemd(DbusSystemd.stop, [u for u in deployments if u] + state.units))
    if state.sandbox_pid:
        sandbox.down(state.sandbox_pid)  # ends every unit and process inside it
    topology.destroy(state.namespaces or state.nodes)
    shutil.rmtree(LAB_DIR, ignore_errors=True)
    log("lab down")
