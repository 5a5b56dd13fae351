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
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from sparkd.config import ApiConfig, Config, InterconnectConfig, NodeConfig, PeerConfig
from sparkd.engine.observer import Intervals
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.system import System
from sparkd.v1 import (
    deployment_service_pb2_grpc,
    host_service_pb2_grpc,
    node_service_pb2_grpc,
    peer_service_pb2_grpc,
    status_service_pb2_grpc,
)
from tests.fakes.host import FakeHost

T = TypeVar("T")
#: Probes run only when a test asks (`Daemon.observe()`), so every test sees exactly the evidence it set up.
MANUAL = Intervals(links=3600, units=3600, health=3600, gpus=3600, timeout=0.5)


def worker_hello() -> peer_pb.NodeHello:
    """A well-formed hello of worker spark2 (index 1, 192.168.100.2)."""
    return peer_pb.NodeHello(
        node_id="abcdefghijklmnop",
        name="spark2",
        role="NODE_ROLE_WORKER",
        index=1,
        address="192.168.100.2",
        sparkd_version="0.1.0",
        protocol_version=1,
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
        self.system = System(config, fake.host, intervals=MANUAL)
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

    def close(self) -> None:
        self.admin.channel.close()
        self.ro.channel.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_worker() -> Daemon:
    """A worker whose interconnect is on loopback (127.0.0.0/24: head .1, this worker .2), so a test client,
    which connects from 127.0.0.1, is the head as far as the peer service can tell. Loopback only: nothing
    leaves the machine, and the route guard (fake netlink: no routes) lets the worker dial nothing."""
    root = Path(tempfile.mkdtemp(prefix="sdwk"))
    fake = FakeHost(root, 1)
    for netdev, address in (("enp1s0f1np1", "127.0.0.2/24"), ("enP2p1s0f1np1", "127.0.1.2/24")):
        link = fake.netlink._links[netdev]
        fake.netlink._links[netdev] = dataclasses.replace(link, addresses=(ipaddress.IPv4Interface(address),))
    port = _free_port("127.0.0.2")
    config = Config(
        node=NodeConfig("spark2", "worker", 1),
        sysroot=str(root),
        api=ApiConfig(socket="/run/sparkd/sparkd.sock", ro_socket="/run/sparkd/sparkd-ro.sock"),
        interconnect=InterconnectConfig(
            subnet_a=ipaddress.IPv4Network("127.0.0.0/24"), subnet_b=ipaddress.IPv4Network("127.0.1.0/24")
        ),
        peer=PeerConfig(port=port),
    )
    d = Daemon(config, fake)
    d.peer_target = f"127.0.0.2:{port}"
    return d


@pytest.fixture
def worker() -> Iterator[Daemon]:
    d = loopback_worker()
    try:
        yield d
    finally:
        d.close()
        shutil.rmtree(d.fake.root, ignore_errors=True)


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
