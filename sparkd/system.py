"""The composition root: builds every engine part and servicer on the host adapters, and runs the daemon.

`System(config, host)` takes its host facilities injected (`sparkd.host.protocols.Host`):
`real_host(config)` builds the real adapters; tests pass fakes and get a whole daemon on
them. Only `sparkd.__main__` (and tests that want a whole daemon) import this module.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from sparkd import __version__, identity
from sparkd.api.agent_socket import AgentSocket
from sparkd.api.deployments import DeploymentServicer
from sparkd.api.events import EventServicer
from sparkd.api.host import HostServicer
from sparkd.api.node import NodeServicer
from sparkd.api.peers import PeerServicer as LocalPeerServicer
from sparkd.api.server import ApiServer, Servicers, build_server, serve_unix
from sparkd.api.status import StatusServicer
from sparkd.config import Config
from sparkd.engine import versions
from sparkd.engine.agent import LaunchAgentService
from sparkd.engine.deployments import DeploymentManager
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.engine.inventory import Inventory
from sparkd.engine.launch import LocalFacts
from sparkd.engine.membership import Membership
from sparkd.engine.observer import Intervals, StateLoop
from sparkd.engine.store import DeploymentStore
from sparkd.engine.supervisor import Policy, Supervisor
from sparkd.engine.twins import select_twins
from sparkd.errors import PreconditionFailed
from sparkd.events import EventBus
from sparkd.host.protocols import Gpus, Host
from sparkd.host.sysroot import Sysroot
from sparkd.identity import Identity
from sparkd.model.host import QosSettings
from sparkd.model.inventory import Twins
from sparkd.model.observed import Snapshot
from sparkd.model.versions import Versions
from sparkd.peer.hostcluster import HostCluster
from sparkd.peer.manager import PeerManager
from sparkd.peer.parts import PeerCluster
from sparkd.peer.route_guard import RouteGuard
from sparkd.peer.stack import Discoverer, PeerStack
from sparkd.peer.tls import KeyPair
from sparkd.watchdog import Watchdog, notify

log = structlog.get_logger(__name__)


def _gpus(config: Config, sysroot: Sysroot) -> Gpus:
    if config.lab.nvml_fixture:
        # Lab only: NVML cannot exist in a simulated node; answers come from a recorded fixture.
        from sparkd.lab.nvml import FixtureGpus

        return FixtureGpus(sysroot.path(config.lab.nvml_fixture))
    from sparkd.host.gpu import NvmlGpus

    return NvmlGpus()


def real_host(config: Config) -> Host:
    """The real adapters: files and sysfs under the sysroot, pyroute2, D-Bus systemd, the journal, NVML."""
    from sparkd.host.http import AsyncioHttpProbe
    from sparkd.host.journal import SystemJournal
    from sparkd.host.netlink import Pyroute2Netlink
    from sparkd.host.ports import BindPorts
    from sparkd.host.proc import SysrootProc
    from sparkd.host.runner import SubprocessRunner
    from sparkd.host.sysfs import SysrootSysfs
    from sparkd.host.systemd import DbusSystemd

    sysroot = Sysroot(config.sysroot)
    return Host(
        files=sysroot,
        sysfs=SysrootSysfs(sysroot),
        proc=SysrootProc(sysroot),
        netlink=Pyroute2Netlink(),
        systemd=DbusSystemd(),
        journal=SystemJournal(),
        gpus=_gpus(config, sysroot),
        http=AsyncioHttpProbe(),
        runner=SubprocessRunner(config.lab.tools_dir),
        ports=BindPorts(),
    )


#: How often the host is compared with its committed configuration (drift).
DRIFT_S = 30.0


class System:
    """Everything one sparkd daemon is made of."""

    def __init__(
        self,
        config: Config,
        host: Host,
        node_identity: Identity | None = None,
        intervals: Intervals | None = None,
        discovery: Discoverer | None = None,
        policy: Policy | None = None,
    ) -> None:
        """`node_identity` is read by the caller (`sparkd run` reads it in a child process, see
        `sparkd.identity`); without it, the key is loaded (or created) in this process. `discovery`
        replaces the real one (UDP multicast on the twins) only in tests without network namespaces."""
        self.config, self.host = config, host
        self.sysroot = sysroot = Sysroot(config.sysroot)
        state_dir = sysroot.path(config.state_dir)
        self.identity = node_identity or identity.load_or_create(state_dir)
        keys = KeyPair(identity.read_key_pem(state_dir), self.identity.cert_pem.encode())
        self.snapshot = Snapshot()
        self.bus = EventBus()
        self.membership = membership = Membership(config, host.files)
        self.versions = Versions(sparkd=__version__)
        self.configurator = HostConfigurator(
            config,
            host.files,
            host.sysfs,
            host.netlink,
            host.runner,
            lambda: membership.index if membership.addressed else None,
            self._cluster_names,
        )
        self.inventory = Inventory(config, self.identity, self.snapshot, membership)
        boot_id = (host.files.read_text("/proc/sys/kernel/random/boot_id") or "").strip()[:36]
        guard = RouteGuard(host.netlink, self._twin_netdevs)
        self.peers = PeerManager(
            config, self.identity, keys, membership, guard, self.snapshot, self.bus, lambda: self.versions, boot_id
        )
        self.deployments = DeploymentManager(
            config,
            DeploymentStore(host.files, config.state_dir),
            host,
            self.facts,
            PeerCluster(self.peers),
            self.snapshot,
            self.bus,
            poke=lambda: self.loop.poke("units", "serving"),
            role=lambda: membership.role,
        )
        self.supervisor = Supervisor(self.deployments, policy)
        agents = LaunchAgentService(
            lambda: self.deployments.records, self.deployments.cluster, config.frameworks.launch_agent
        )
        self.agent_socket = AgentSocket(self.sysroot.path(config.api.agent_socket), agents, host.proc)
        self.peer = PeerStack(self.peers, host, self.deployments, self._twin_netdevs, discovery, self.configurator)
        self.loop = StateLoop(
            host, self.snapshot, self.bus, self.deployments.interests, self.deployments.refresh, intervals
        )
        self.servicers = Servicers(
            node=NodeServicer(self.inventory),
            host=HostServicer(
                self.configurator, self._peer_changed, HostCluster(self.peers, self.configurator, host.runner)
            ),
            peers=LocalPeerServicer(
                self.peers, membership, self.peer.office, self.peer.joiner, self.bus, self._peer_changed
            ),
            deployments=DeploymentServicer(self.deployments, self.supervisor),
            status=StatusServicer(self.inventory, self.peers, self.deployments, host=self.configurator),
            events=EventServicer(self.bus),
        )
        self._servers: list[ApiServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_watch: Callable[[], None] | None = None

    @property
    def admin_socket(self) -> Path:
        return self.sysroot.path(self.config.api.socket)

    @property
    def ro_socket(self) -> Path:
        return self.sysroot.path(self.config.api.ro_socket)

    def _cluster_names(self) -> list[tuple[str, int]]:
        """Every paired node's (name, index), this one included: the /etc/hosts block."""
        own = (self.config.node.name, self.membership.index or 0)
        return [own] + [(m.name, m.index) for m in self.membership.peers()]

    async def _drift_loop(self) -> None:
        """Compares the host with the committed state every DRIFT_S; reports (and, if configured, repairs)."""
        reported: list[str] = []
        while True:
            await asyncio.sleep(DRIFT_S)
            try:
                drift = [a.description for a in await self.configurator.check_drift()]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("host.drift_check_crashed")
                continue
            if drift != reported:
                state = "drifted" if drift else "in_sync"
                self.bus.transition("host", self.config.node.name, state, "; ".join(drift)[:1000])
                reported = drift

    async def facts(self) -> LocalFacts:
        twins = await self.configurator.twins()
        committed = self.configurator.committed()
        return LocalFacts(
            host_ip=str(self.config.node_address(self.membership.index).ip),
            twins=twins,
            qos=committed.qos if committed is not None else QosSettings(enabled=False),
            frameworks=self.config.frameworks,
            agent_socket=str(self.sysroot.path(self.config.api.agent_socket)),
            network_namespace_path=self.config.units.network_namespace_path,
        )

    def _twins(self) -> Twins | None:
        s = self.snapshot
        try:
            return select_twins(list(s.rdma), s.links, self.config.interconnect.mode)
        except PreconditionFailed:
            return None

    async def _twin_netdevs(self) -> list[str]:
        """The twins, from the snapshot (the route guard asks the kernel for the route itself)."""
        twins = self._twins()
        return [t.netdev for t in twins.all()] if twins else []

    async def _refresh_versions(self) -> None:
        """This node's versions for the handshake: now, then every minute (a hash only when the NCCL
        library changed)."""
        while True:
            try:
                self.versions = await versions.collect(self.config.frameworks, self.host.files, self.snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("versions.collect_failed")
            await asyncio.sleep(60)

    async def _peer_changed(self) -> None:
        """After pairing or a host apply: the links afresh (the listeners bind the addresses present now)."""
        await self.loop.observe_links()
        await self.peer.changed()

    def _stalled(self) -> str | None:
        """Why the watchdog must not be fed now (`Watchdog.check`): a probe of the state loop is stuck."""
        probes = self.loop.stalled()
        return f"state loop stalled: {', '.join(probes)}" if probes else None

    def _link_changed(self) -> None:
        self.loop.poke("links")
        self.peer.link_changed()

    async def start(self) -> None:
        """Finishes an interrupted host apply and re-applies the committed host state, observes once, binds
        the sockets and the peer listener, and starts the loops."""
        if done := await self.configurator.start():
            log.info("host.started", done=done)
        await self.loop.run_once()
        admin = build_server(self.servicers, read_only=False)
        ro = build_server(self.servicers, read_only=True)
        await serve_unix(admin, self.admin_socket, 0o660, self.config.api.socket_group)
        await serve_unix(ro, self.ro_socket, 0o666, self.config.api.socket_group)
        self._servers = [admin, ro]
        await self.agent_socket.start()
        self.loop.start()
        self.supervisor.start()
        self.versions = await versions.collect(self.config.frameworks, self.host.files, self.snapshot)
        self._tasks = [asyncio.create_task(self._refresh_versions()), asyncio.create_task(self._drift_loop())]
        self._stop_watch = self.host.netlink.watch_links(self._link_changed)
        await self.peer.start()

    async def stop(self) -> None:
        if self._stop_watch is not None:
            self._stop_watch()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.bus.close()  # ends the event streams first: they would hold the servers' grace period
        await self.supervisor.stop()
        await self.loop.stop()
        await self.peer.stop()
        await asyncio.gather(*(s.grpc.stop(grace=2.0) for s in self._servers))
        await self.agent_socket.stop()
        for path in (self.admin_socket, self.ro_socket):
            path.unlink(missing_ok=True)
        await self.host.systemd.close()
        self.host.gpus.close()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serves until SIGTERM/SIGINT (or `stop` is set)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        names = [d.name for d in self.deployments.list()]
        log.info(
            "sparkd.ready",
            version=__version__,
            node=self.config.node.name,
            role=self.membership.role or "unpaired",
            node_id=self.identity.node_id,
            socket=str(self.admin_socket),
            deployments=names,
        )
        notify(f"READY=1\nSTATUS=serving on {self.admin_socket}; {len(names)} deployment(s)")
        watchdog = Watchdog(self._stalled)  # fed from this loop while the state loop makes progress
        watchdog.start()
        try:
            await stop.wait()
        finally:
            await watchdog.stop()
        notify("STOPPING=1\nSTATUS=stopping")
        log.info("sparkd.stopping")
        await self.stop()
