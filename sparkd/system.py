"""The composition root: builds every adapter, engine part and servicer, and runs the daemon.

Only `sparkd.__main__` (and tests that want a whole daemon) import this module.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog

from sparkd import __version__, identity
from sparkd.api.deployments import DeploymentServicer
from sparkd.api.host import HostServicer
from sparkd.api.node import NodeServicer
from sparkd.api.peers import PeerServicer as LocalPeerServicer
from sparkd.api.server import Servicers, build_server, serve_unix
from sparkd.api.status import StatusServicer
from sparkd.config import Config
from sparkd.engine.deployments import DeploymentManager
from sparkd.engine.host import HostConfigurator, Observed, desired_addresses
from sparkd.engine.inventory import Inventory
from sparkd.engine.launch import LocalFacts
from sparkd.engine.store import DeploymentStore
from sparkd.errors import PreconditionFailed
from sparkd.host.gpu import Gpus, NvmlGpus
from sparkd.host.netlink import Netlink
from sparkd.host.proc import Proc
from sparkd.host.sysfs import Sysfs
from sparkd.host.sysroot import Sysroot
from sparkd.host.systemd import Systemd
from sparkd.peer.manager import PeerManager, run_heartbeat
from sparkd.peer.route_guard import RouteGuard
from sparkd.peer.server import PeerListener
from sparkd.peer.server import PeerServicer as RemotePeerServicer

log = structlog.get_logger(__name__)


def _gpus(config: Config, sysroot: Sysroot) -> Gpus:
    if config.lab.nvml_fixture:
        # Lab only: NVML cannot exist in a simulated node; answers come from a recorded fixture.
        from sparkd.lab.nvml import FixtureGpus

        return FixtureGpus(sysroot.path(config.lab.nvml_fixture))
    return NvmlGpus()


class System:
    """Everything one sparkd daemon is made of."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sysroot = sysroot = Sysroot(config.sysroot)
        self.identity = identity.load_or_create(sysroot.path(config.state_dir))
        self.netlink = Netlink()
        self.sysfs = Sysfs(sysroot)
        self.systemd = Systemd()
        self.host = HostConfigurator(config, sysroot, self.sysfs, self.netlink)
        self.inventory = Inventory(
            config, self.identity, self.sysfs, self.netlink, Proc(sysroot), _gpus(config, sysroot)
        )
        self.peers = PeerManager(
            config,
            self.identity,
            RouteGuard(self.netlink, self._twin_netdevs),
            lambda: self.deployments.list(),  # noqa: PLW0108 (built below)
        )
        self.deployments = DeploymentManager(
            config, DeploymentStore(sysroot, config.state_dir), self.systemd, self.facts, self.peers
        )
        self.peer_listener = PeerListener(
            RemotePeerServicer(self.peers, self.deployments), config.peer.port, self._listen_addresses
        )
        self.servicers = Servicers(
            node=NodeServicer(self.inventory),
            host=HostServicer(self.host, self.peer_listener.ensure),
            peers=LocalPeerServicer(self.peers),
            deployments=DeploymentServicer(self.deployments),
            status=StatusServicer(self.inventory, self.peers, self.deployments),
        )

    @property
    def admin_socket(self) -> Path:
        return self.sysroot.path(self.config.api.socket)

    @property
    def ro_socket(self) -> Path:
        return self.sysroot.path(self.config.api.ro_socket)

    async def facts(self) -> LocalFacts:
        observed = await self.host.observe()
        return LocalFacts(
            host_ip=str(self.config.node_address().ip),
            twins=observed.twins,
            vllm_venv=self.config.frameworks.vllm_venv,
            network_namespace_path=self.config.units.network_namespace_path,
        )

    async def _observe(self) -> Observed | None:
        """The host now, or None when no CX-7 port is cabled."""
        try:
            return await self.host.observe()
        except PreconditionFailed:
            return None

    async def _twin_netdevs(self) -> list[str]:
        observed = await self._observe()
        return [t.netdev for t in observed.twins.all()] if observed else []

    async def _listen_addresses(self) -> list[str]:
        """This node's interconnect addresses that are present on its twins now."""
        observed = await self._observe()
        if observed is None:
            return []
        return [
            str(address.ip)
            for netdev, address in desired_addresses(self.config, observed.twins).items()
            if address in observed.links[netdev].addresses
        ]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serves until SIGTERM/SIGINT (or `stop` is set)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        admin = build_server(self.servicers, read_only=False)
        ro = build_server(self.servicers, read_only=True)
        await serve_unix(admin, self.admin_socket, 0o660, self.config.api.socket_group)
        await serve_unix(ro, self.ro_socket, 0o666, self.config.api.socket_group)
        await self.peer_listener.ensure()
        heartbeat = asyncio.create_task(
            run_heartbeat(self.peers, self.peer_listener.ensure, self.config.peer.heartbeat_s)
        )
        adopted = [d.spec.name for d in await self.deployments.list()]
        log.info(
            "sparkd.ready",
            version=__version__,
            node=self.config.node.name,
            role=self.config.node.role,
            node_id=self.identity.node_id,
            socket=str(self.admin_socket),
            deployments=adopted,
        )
        _notify(f"READY=1\nSTATUS=serving on {self.admin_socket}; {len(adopted)} deployment(s)")
        await stop.wait()
        _notify("STOPPING=1\nSTATUS=stopping")
        log.info("sparkd.stopping")
        heartbeat.cancel()
        await self.peer_listener.stop()
        await self.peers.close()
        await asyncio.gather(admin.grpc.stop(grace=2.0), ro.grpc.stop(grace=2.0))
        for path in (self.admin_socket, self.ro_socket):
            path.unlink(missing_ok=True)


def _notify(state: str) -> None:
    """sd_notify; a no-op outside systemd."""
    try:
        from systemd import daemon
    except ImportError:
        return
    daemon.notify(state)
