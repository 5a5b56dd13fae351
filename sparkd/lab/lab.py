"""Bring a lab up and down: namespaces, sysroots, a systemd, and one sparkd unit per node.

State lives in /var/lib/sparkd-lab (lab.json records what was created, so `down` removes
exactly that, even after a half-finished `up`). The wrappers the nodes' deployments run (the
framework stand-ins, the real Ray CLI, the launch agent) are written by `sparkd.lab.wrappers`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from sparkctl_client.client import Client, ClientError
from sparkd.host.systemd import DbusSystemd
from sparkd.lab import faults, fixtures, sandbox, topology, wrappers
from sparkd.lab.errors import LabError
from sparkd.lab.frameworks import write_lab_framework_venvs
from sparkd.lab.wrappers import AGENT_WRAPPER
from sparkd.model.deployment import unit_name
from sparkd.model.unit import UnitSpec
from sparkd.v1 import host_service_pb2, node_service_pb2, peer_pb2, peer_service_pb2

__all__ = ["LabError"]  # re-exported (from sparkd.lab.errors): the CLI and the tests catch lab.LabError

T = TypeVar("T")
LAB_DIR = Path(os.environ.get("SPARKD_LAB_DIR", "/var/lib/sparkd-lab"))
STATE = LAB_DIR / "lab.json"
#: The largest deployment record the lab reads (sparkd.engine.store.MAX_RECORD_BYTES, its writer's bound).
MAX_RECORD_BYTES = 256 * 1024


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


def _config(node: str) -> str:
    """A node's config: the same for every node but its name (pairing gives each its role and index)."""
    return f"""# sparkd lab node {node} (written by `sparkd lab up`)
version = 1
sysroot = "{sysroot(node)}"

[node]
name = "{node}"

[frameworks]
vllm_venv = "{LAB_DIR / "frameworks/vllm"}"
sglang_venv = "{LAB_DIR / "frameworks/sglang"}"
trtllm_venv = "{LAB_DIR / "frameworks/trtllm"}"
launch_agent = "{LAB_DIR / "frameworks" / AGENT_WRAPPER}"

[units]
network_namespace_path = "/run/netns/{node}"

[lab]
nvml_fixture = "{fixtures.NVML_FIXTURE}"
tools_dir = "{node_dir(node) / "tools"}"
"""


def _write_standins() -> None:
    """The stand-ins' wrappers under LAB_DIR/frameworks (`sparkd.lab.wrappers`); LAB_DIR is read at each call."""
    wrappers.write_standins(LAB_DIR)


def _daemon_unit_spec(node: str) -> UnitSpec:
    return UnitSpec(
        name=daemon_unit(node),
        argv=[sys.executable, "-m", "sparkd", "run", "--config", str(node_dir(node) / "sparkd.toml")],
        description=f"sparkd (lab node {node})",
        environment={"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "GRPC_VERBOSITY": "ERROR"},
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


def up(
    n: int, bare: bool, log: Callable[[str], None] = print, on_network: Callable[[list[str]], None] | None = None
) -> LabState:
    """Creates an n-node lab and returns once it is ready (see `sparkd lab up --help`).

    `on_network(nodes)` runs once the namespaces and links exist, before any daemon starts (tests start
    their packet captures there)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces and systemd units)")
    if n < 2 or n > 16:
        raise LabError(f"--nodes must be from 2 to 16, got {n}")
    if STATE.exists():
        raise LabError(f"a lab is already up ({STATE}); run `sparkd lab down` first")
    present = topology.existing()
    clash = [ns for ns in topology.namespaces(n) if ns in present]
    if clash:
        raise LabError(f"network namespaces {', '.join(clash)} exist already and are not this lab's; remove them")
    t0 = time.monotonic()
    state = LabState(nodes=topology.node_names(n))
    state.save()
    if sandbox.needed():
        state.sandbox_pid = sandbox.up(LAB_DIR / "sandbox-units")
        state.save()
        log(f"systemd sandbox up (pid {state.sandbox_pid})")
    state.namespaces = topology.namespaces(n)
    state.save()
    topology.create(state.nodes)
    log(f"namespaces, twins and management LAN up: {', '.join(state.namespaces)}")
    if on_network is not None:
        on_network(state.nodes)
    _write_standins()
    for index, node in enumerate(state.nodes):
        fixtures.write_node_fixtures(sysroot(node), index, str(LAB_DIR / "frameworks/vllm"))
        write_lab_framework_venvs(sysroot(node), str(LAB_DIR / "frameworks"))
        fixtures.write_tools(node_dir(node) / "tools", sysroot(node))
        (node_dir(node) / "sparkd.toml").write_text(_config(node))
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
    """Waits for the daemons and the twins' link-local addresses; unless bare, configures every link
    (`host apply`) and waits for the workers to connect. Bare nodes are as newly cabled Sparks: sparkd
    answering, twins up with carrier and IPv6 link-local addresses, no IPv4 address, no peer."""
    for node, client in clients.items():

        def answers(c: Client = client) -> object:
            return c.call(c.node.GetVersion, node_service_pb2.GetVersionRequest(), timeout=2)

        _wait(f"sparkd on {node}", 30, answers)
    log(f"daemons answer ({time.monotonic() - t0:.1f} s)")
    _wait("IPv6 link-local addresses on the twins (DAD)", 15, lambda: all(map(topology.link_local_ready, clients)))
    log(f"twins up with link-local addresses ({time.monotonic() - t0:.1f} s)")
    if bare:
        log(f"bare lab ready in {time.monotonic() - t0:.1f} s (links unconfigured, no peers)")
        return
    _pair(clients, log)
    log(f"nodes paired ({time.monotonic() - t0:.1f} s)")
    for node, client in clients.items():
        r = client.call(client.host.ApplyHost, host_service_pb2.ApplyHostRequest())
        log(f"{node}: link configured ({len(r.actions)} actions, verified={r.verified})")
    head = clients["spark1"]

    def peers_connected() -> bool:
        peers = head.call(head.peers.ListPeers, peer_service_pb2.ListPeersRequest()).peers
        return bool(sum(p.state == peer_pb2.PEER_STATE_CONNECTED for p in peers) == len(clients) - 1)

    _wait("the workers to connect to the head", 30, peers_connected)
    log(f"peers connected; lab ready in {time.monotonic() - t0:.1f} s")


def _pair(clients: dict[str, Client], log: Callable[[str], None]) -> None:
    """Pairs the nodes as an operator does: `peer pair begin` on spark1 (the head), then `peer pair join` on
    each worker in turn (each join uses up the token, so the head opens a new one for the next)."""
    names = list(clients)
    head = clients[names[0]]
    for node in names[1:]:
        begin = head.call(head.peers.BeginPairing, peer_service_pb2.BeginPairingRequest(ttl_seconds=120))
        worker = clients[node]
        answer = worker.call(
            worker.peers.JoinPairing,
            peer_service_pb2.JoinPairingRequest(head_node_id=begin.node_id, token=begin.token, timeout_seconds=20),
            timeout=40,
        )
        log(f"{node}: paired with {names[0]} as index {answer.index}")


def _rank(record: Path) -> int:
    """This node's rank in a deployment record (the lab's own files; 0 when unreadable)."""
    try:
        return int(json.loads(record.read_text())["assignment"]["rank"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _reap_when_done(pid: int) -> None:
    """Reaps the sandbox's `unshare` as soon as it exits, where it is this process's child (`up` ran here,
    as in the tests): else `sandbox.down` takes its zombie for a live sandbox and waits out its timeout."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return
    if ppid != os.getpid():
        return

    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # already reaped (subprocess's own clean-up)

    threading.Thread(target=reap, name="sandbox-reaper", daemon=True).start()


async def _restart_transient(
    spec: UnitSpec, also_stop: tuple[str, ...] = (), between: Callable[[], None] = lambda: None
) -> None:
    """Stops a transient unit (and then `also_stop`), waits until systemd has unloaded it, runs `between` and
    starts it afresh."""
    systemd = DbusSystemd()
    try:
        await systemd.stop(spec.name)
        for unit in also_stop:
            await systemd.stop(unit)
        deadline = time.monotonic() + 20
        while (await systemd.state(spec.name)).load_state != "not-found":
            if time.monotonic() > deadline:
                raise LabError(f"{spec.name} did not stop within 20 s; see `journalctl -u {spec.name}`")
            await asyncio.sleep(0.1)
        between()
        await systemd.start(spec)
    finally:
        await systemd.close()


def reboot(node: str, log: Callable[[str], None] = print) -> str:
    """Simulates a reboot of `node`: its sparkd stops, then every deployment unit of the node (its records
    name them), a new boot ID is written under the node's sysroot, and sparkd starts again, as after power
    on. (The lab's nodes share this machine's kernel: nothing else restarts.) Returns the new boot ID once
    the daemon answers again."""
    state = LabState.load()
    if state is None or node not in state.nodes:
        raise LabError(f"no lab node {node!r} (is the lab up? `sparkd lab status`)")
    boot_id = str(uuid.uuid4())
    units = tuple(unit_name(name, rank) for name, _, rank in _records(node))

    def new_boot() -> None:
        (sysroot(node) / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")

    asyncio.run(_restart_transient(_daemon_unit_spec(node), units, new_boot))
    client = Client(str(admin_socket(node)))
    try:
        _wait(
            f"sparkd on {node}",
            30,
            lambda: client.call(client.node.GetVersion, node_service_pb2.GetVersionRequest(), timeout=2),
        )
    finally:
        client.close()
    log(f"{node} rebooted: boot ID {boot_id}")
    return boot_id


def stop_daemon(node: str) -> None:
    """Stops `node`'s sparkd and nothing else (its deployments' units stay up), for example to let another
    build of sparkd serve the node from the same config and state (tests/e2e/test_deb_install.py)."""
    asyncio.run(_each_on_systemd(DbusSystemd.stop, [daemon_unit(node)]))


def start_daemon(node: str) -> None:
    """Starts `node`'s sparkd again after `stop_daemon`, and returns once it answers."""
    asyncio.run(_each_on_systemd(DbusSystemd.start, [_daemon_unit_spec(node)]))
    client = Client(str(admin_socket(node)))
    try:
        _wait(
            f"sparkd on {node}", 30, lambda: client.call(client.node.GetVersion, node_service_pb2.GetVersionRequest())
        )
    finally:
        client.close()


def _records(node: str) -> list[tuple[str, str, int]]:
    """(deployment, served model name, rank) of each deployment record on `node` (the lab's own files; an
    unreadable record is left out)."""
    found = []
    for record in sorted((sysroot(node) / "var/lib/sparkd/deployments").glob("*.json")):
        try:
            with record.open("rb") as f:
                doc = json.loads(f.read(MAX_RECORD_BYTES + 1))
            spec, rank = doc["spec"], doc["assignment"]["rank"]
            if isinstance(spec["served_model_name"], str) and isinstance(rank, int):
                found.append((record.name.removesuffix(".json"), spec["served_model_name"], rank))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def fault(node: str, name: str, rank: int, switch: faults.Fault, log: Callable[[str], None] = print) -> Path:
    """Sets (or, with mode none, clears) the fault switch of `rank` of the deployment `name` (a deployment
    name, or the served model name the stand-in runs with), and returns the fault file's path.

    The fault files are shared by every lab node (`sparkd.lab.faults`: the path names the served model name
    and the rank, not the node); `node` says which node runs that rank, and is checked: it must be a lab
    node, and where its records know the deployment, they must give it that rank. A name no record on `node`
    knows is taken as a served model name: the switch acts when a stand-in serving it as that rank runs."""
    state = LabState.load()
    if state is None or node not in state.nodes:
        raise LabError(f"no lab node {node!r} (is the lab up? `sparkd lab status`)")
    known = [r for r in _records(node) if name in (r[0], r[1])]
    served = name
    if known:
        deployment, served, on_node = next((r for r in known if r[0] == name), known[0])
        if on_node != rank:
            raise LabError(f"{node} runs rank {on_node} of {deployment}, not rank {rank}; give rank {on_node}")
    else:
        log(f"{node} knows no deployment {name!r}: the switch acts on a stand-in serving {name!r} as rank {rank}")
    try:
        path = faults.fault_path(faults.faults_dir(LAB_DIR), served, rank)
    except faults.FaultError as e:
        raise LabError(str(e)) from None
    faults.write_fault(path, switch)
    what = "cleared" if switch.mode == "none" else faults.encode_fault(switch).decode().strip()
    log(f"{node}: rank {rank} of {served}: {what} ({path})")
    return path


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
        _reap_when_done(state.sandbox_pid)
        sandbox.down(state.sandbox_pid)  # ends every unit and process inside it
    topology.destroy(state.namespaces or state.nodes)
    shutil.rmtree(LAB_DIR, ignore_errors=True)
    log("lab down")
