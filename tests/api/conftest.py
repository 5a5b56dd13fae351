"""A whole daemon on fakes: the real System, the real grpc.aio servers on unix sockets, a FakeHost.

The daemon's event loop runs in a thread of its own, so tests call it with ordinary
synchronous gRPC stubs, exactly as the CLI does. No root, no namespace, no D-Bus, no
network: everything the daemon would do to the host lands in the FakeHost's text dump.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from sparkd.config import ApiConfig, Config, InterconnectConfig, NodeConfig, PeerConfig
from sparkd.engine.observer import Intervals
from sparkd.engine.supervisor import Policy
from sparkd.identity import tls_name
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.system import System
from sparkd.v1 import (
    deployment_service_pb2_grpc,
    host_service_pb2_grpc,
    node_service_pb2_grpc,
    peer_service_pb2,
    peer_service_pb2_grpc,
    status_service_pb2_grpc,
)
from tests.fakes.discovery import FakeDiscovery
from tests.fakes.host import FakeHost

T = TypeVar("T")
#: Probes run only when a test asks (`Daemon.observe()`), so every test sees exactly the evidence it set up.
MANUAL = Intervals(links=3600, units=3600, serving=3600, gpus=3600, timeout=0.5, serving_timeout=0.5)
#: The supervisor looks only when a test asks (`Daemon.supervise()`).
MANUAL_POLICY = Policy(tick_s=3600, settle_s=0.0)


def worker_hello(node_id: str = "abcdefghijklmnop", boot_id: str = "") -> peer_pb.NodeHello:
    """A well-formed hello of worker spark2 (index 1, 192.168.100.2)."""
    return peer_pb.NodeHello(
        node_id=node_id,
        name="spark2",
        role="NODE_ROLE_WORKER",
        index=1,
        address="192.168.100.2",
        sparkd_version="0.1.0",
        protocol_version=2,
        protocol_min=2,
        protocol_max=2,
        boot_id=boot_id,
    )


def head_config(root: Path, role: str = "head", index: int = 0) -> Config:
    return Config(
        node=NodeConfig(name=f"spark{index + 1}", role=role, index=index),
        sysroot=str(root),
        api=ApiConfig(socket="/run/sparkd/sparkd.sock", ro_socket="/run/sparkd/sparkd-ro.sock"),
    )


class Stubs:
    """Every sparkd.v1 stub on one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.node = node_service_pb2_grpc.NodeServiceStub(channel)
        self.host = host_service_pb2_grpc.HostServiceStub(channel)
        self.peers = peer_service_pb2_grpc.PeerServiceStub(channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(channel)
        self.status = status_service_pb2_grpc.StatusServiceStub(channel)


class Daemon:
    """A running System on a FakeHost; `admin` and `ro` are stubs on its two sockets."""

    def __init__(self, config: Config, fake: FakeHost) -> None:
        self.fake = fake
        self.peer_target = ""  # host:port of the peer listener, where a test binds one on loopback
        self.cluster: list[Daemon] = []  # the nodes of its loopback cluster, head first
        self.discovery = FakeDiscovery()
        self.system = System(config, fake.host, intervals=MANUAL, discovery=self.discovery, policy=MANUAL_POLICY)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(started,), daemon=True)
        self._thread.start()
        started.result(timeout=10)
        self.admin = Stubs(grpc.insecure_channel(f"unix:{self.system.admin_socket}"))
        self.ro = Stubs(grpc.insecure_channel(f"unix:{self.system.ro_socket}"))

    def _main(self, started: Future[None]) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            try:
                await self.system.start()
            except BaseException as e:
                started.set_exception(e)
                raise
            started.set_result(None)
            await self._stop.wait()
            await self.system.stop()

        self._loop.run_until_complete(main())

    def run(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn()` (a coroutine function or a plain one) on the daemon's loop and returns its result."""

        async def call() -> Any:
            result = fn()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=30)

    def observe(self) -> None:
        """One round of every probe, then the deployment states (what the state loop does each tick)."""
        self.run(self.system.loop.run_once)

    def supervise(self) -> None:
        """One look of the supervisor (what it does every tick), and its restarts to their end."""

        async def tick() -> None:
            supervisor = self.system.supervisor
            await supervisor.tick()
            await asyncio.gather(*supervisor._restarting.values(), return_exceptions=True)

        self.run(tick)

    def close(self) -> None:
        self.admin.channel.close()
        self.ro.channel.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_node(index: int, peer_port: int, pairing_port: int, pin: bool = False) -> Daemon:
    """A node whose interconnect is on loopback (127.0.0.0/24 and 127.0.1.0/24: head .1, workers .2, ...).
    Loopback only: nothing leaves the machine. Unpinned (pairing decides its role) unless `pin`."""
    root = Path(tempfile.mkdtemp(prefix=f"sdn{index}"))
    fake = FakeHost(root, 1)
    for netdev, address in (("enp1s0f1np1", f"127.0.0.{index + 1}/24"), ("enP2p1s0f1np1", f"127.0.1.{index + 1}/24")):
        link = fake.netlink._links[netdev]
        fake.netlink._links[netdev] = dataclasses.replace(link, addresses=(ipaddress.IPv4Interface(address),))
    for other in range(4):  # the fake kernel routes the other nodes' twin-A addresses out of twin A
        fake.netlink.routes[f"127.0.0.{other + 1}"] = "enp1s0f1np1"
    role = ("head" if index == 0 else "worker") if pin else ""
    config = Config(
        node=NodeConfig(f"spark{index + 1}", role, index if pin else None),
        sysroot=str(root),
        api=ApiConfig(socket="/run/sparkd/sparkd.sock", ro_socket="/run/sparkd/sparkd-ro.sock"),
        interconnect=InterconnectConfig(
            subnet_a=ipaddress.IPv4Network("127.0.0.0/24"), subnet_b=ipaddress.IPv4Network("127.0.1.0/24")
        ),
        peer=PeerConfig(port=peer_port, pairing_port=pairing_port, discovery_port=_free_port("127.0.0.1")),
    )
    d = Daemon(config, fake)
    d.peer_target = f"127.0.0.{index + 1}:{peer_port}"
    return d


def pair(head: Daemon, worker: Daemon) -> None:
    """Pairs `worker` with `head` the way an operator does (BeginPairing on the head, JoinPairing on the
    worker, over the real pairing listener), then waits until the worker's session is connected."""
    begin = head.admin.peers.BeginPairing(peer_service_pb2.BeginPairingRequest(ttl_seconds=60))
    worker.discovery.heard.append((head.system.peer.announcement, head.peer_target.split(":")[0], "enp1s0f1np1"))
    worker.admin.peers.JoinPairing(
        peer_service_pb2.JoinPairingRequest(head_node_id=begin.node_id, token=begin.token, timeout_seconds=5)
    )
    wait_connected(worker)


def wait_connected(*daemons: Daemon, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(d.system.peer.session.epoch for d in daemons if d.system.membership.role == "worker"):
            return
        time.sleep(0.05)
    raise AssertionError("the worker did not connect to the head")


def loopback_cluster(workers: int = 1) -> list[Daemon]:
    """A head and `workers` workers on loopback, paired and connected."""
    peer_port, pairing_port = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    nodes = [loopback_node(i, peer_port, pairing_port) for i in range(workers + 1)]
    for node in nodes:
        node.cluster = nodes
    for node in nodes[1:]:
        pair(nodes[0], node)
    return nodes


def close_all(nodes: list[Daemon]) -> None:
    for d in reversed(nodes):
        d.close()
        shutil.rmtree(d.fake.root, ignore_errors=True)


def peer_channel(target: str, caller: Daemon, callee: Daemon) -> grpc.Channel:
    """A mutual-TLS channel to `callee`'s peer port presenting `caller`'s key (what its daemon would dial)."""
    keys = caller.system.peers.keys
    credentials = grpc.ssl_channel_credentials(
        root_certificates=callee.system.identity.cert_pem.encode(),
        private_key=keys.key_pem,
        certificate_chain=keys.cert_pem,
    )
    options = [("grpc.ssl_target_name_override", tls_name(callee.system.identity.node_id))]
    return grpc.secure_channel(target, credentials, options=options)


@pytest.fixture
def cluster() -> Iterator[list[Daemon]]:
    nodes = loopback_cluster()
    try:
        yield nodes
    finally:
        close_all(nodes)


@pytest.fixture
def worker(cluster: list[Daemon]) -> Daemon:
    """The worker of a paired, connected loopback pair (`cluster[0]` is its head)."""
    return cluster[1]


@pytest.fixture
def root() -> Iterator[Path]:
    # Short: a unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="sdapi"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(root: Path) -> FakeHost:
    return FakeHost(root)


@pytest.fixture
def daemon(root: Path, fake: FakeHost) -> Iterator[Daemon]:
    d = Daemon(head_config(root), fake)
    try:
        yield d
    finally:
        d.close()
