"""How the stand-ins' ranks find each other (vLLM's, SGLang's and TensorRT-LLM's alike).

Rank 0 listens on the master address and port; the other ranks connect to it from their own host IP. Two
layers:

- the process group: where `torch` is importable, a real torch.distributed gloo group is formed at
  `tcp://ADDR:PORT` (rank 0 hosts its TCPStore on PORT), with a real all_reduce and broadcast at init;
  GLOO_SOCKET_IFNAME must name the interface. Without torch (or with SPARKD_LAB_RENDEZVOUS=tcp) the log says
  that the built-in TCP rendezvous is used instead. SPARKD_LAB_RENDEZVOUS=gloo insists on gloo.
- the pipeline: JSON lines over one TCP connection per worker: with gloo, to a port rank 0 picks on ADDR
  (ephemeral, so no second fixed port can collide) and broadcasts in the init broadcast; without, to
  ADDR:PORT itself. Every completion passes through every stage on it, and it is the liveness between
  ranks: when a peer's connection closes or resets, the survivors exit 1 (engine dead), as the real engines
  do; keepalive notices a peer whose host vanished (about 10 s). A wedged peer keeps its connection, so a
  wedge stays silent, as a real one is (`Switch.running`).
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

from sparkd.lab.standins.console import engine_dead, log
from sparkd.lab.standins.switch import Switch

#: "tcp" forces the built-in rendezvous, "gloo" insists on torch.distributed; unset (or empty) is auto.
BACKEND_ENV = "SPARKD_LAB_RENDEZVOUS"
#: How long a worker keeps trying to reach rank 0, and gloo's init timeout, in seconds.
JOIN_TIMEOUT = 300.0


class RendezvousError(Exception):
    """The ranks could not form a group; the message says why."""


def keepalive(sock: socket.socket) -> None:
    """A peer whose host vanishes without closing (a pulled cable) is noticed within about 10 s; a wedged
    peer's kernel still acknowledges, so a wedge is not. Best effort: not every platform has these options."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 10000)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Line:
    """A JSON-lines connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.file = sock, sock.makefile("rwb")
        self.send_lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        with self.send_lock:
            self.file.write(json.dumps(obj).encode() + b"\n")
            self.file.flush()

    def recv(self) -> dict[str, Any]:
        try:
            line = self.file.readline()
            if not line:
                raise ConnectionError("peer rank closed the connection")
            msg = json.loads(line)
        except ValueError as e:
            raise ConnectionError(f"peer rank sent garbage: {e}") from None
        if not isinstance(msg, dict):
            raise ConnectionError("peer rank sent garbage: not an object")
        return msg


class Worker:
    """Rank 0's side of one worker rank: a reader thread that ends the engine as soon as the connection
    closes or resets (not when an answer is slow: a wedged worker hangs the pipeline, silently), and one
    pipeline message at a time."""

    def __init__(self, rank: int, conn: Line) -> None:
        self.rank, self.conn = rank, conn
        self.lock = threading.Lock()
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()

    def start(self) -> None:
        threading.Thread(target=self._read, name=f"rank{self.rank}", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                self.replies.put(self.conn.recv())
            except (ConnectionError, OSError):
                engine_dead(f"rank {self.rank} went away")

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            try:
                self.conn.send(obj)
            except OSError:
                engine_dead(f"rank {self.rank} went away")
            return self.replies.get()


@dataclass
class Group:
    """A formed group, as one rank sees it."""

    rank: int
    world_size: int
    backend: str  # "gloo", "tcp", or "single" for a world of one
    workers: dict[int, Worker] = field(default_factory=dict)  # on rank 0
    head: Line | None = None  # on the other ranks


def load_torch() -> Any | None:
    """torch, when the gloo rendezvous is to be used; None for the built-in one."""
    choice = os.environ.get(BACKEND_ENV, "")
    if choice not in ("", "tcp", "gloo"):
        raise RendezvousError(f"{BACKEND_ENV} must be tcp or gloo, not {choice[:40]!r}")
    if choice == "tcp":
        return None
    # c10d warns that a namespace without DNS cannot name the client socket: noise for the lab.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():  # torch without numpy warns at import; the stand-in needs no numpy
            warnings.simplefilter("ignore")
            torch = importlib.import_module("torch")
    except ImportError:
        if choice == "gloo":
            raise RendezvousError(f"{BACKEND_ENV}=gloo but torch is not importable") from None
        return None
    log(f"torch {torch.__version__} imported in {time.monotonic() - t0:.1f} s: the gloo rendezvous is used")
    return torch


def form(rank: int, world_size: int, addr: str, port: int, host_ip: str, model: str) -> Group:
    """Forms the group of `world_size` ranks at addr:port (rank 0 must own `addr`). RendezvousError if it cannot."""
    if world_size == 1:
        return Group(0, 1, "single")
    torch = load_torch()
    backend = "gloo" if torch is not None else "tcp"
    if torch is None:
        log(f"torch is not importable: the built-in TCP rendezvous is used (JSON lines on {addr}:{port})")
    if rank == 0:
        try:
            listener = socket.create_server((addr, 0 if torch is not None else port), reuse_port=False)
        except OSError as e:
            raise RendezvousError(f"cannot listen on {addr}:{port}: {e.strerror}") from None
        if torch is not None:
            _gloo(torch, rank, world_size, addr, port, int(listener.getsockname()[1]))
        return _accept(listener, world_size, model, backend)
    lport = _gloo(torch, rank, world_size, addr, port, 0) if torch is not None else port
    return _join(rank, world_size, addr, lport, host_ip, model, backend)


def _gloo(torch: Any, rank: int, world_size: int, addr: str, port: int, lport: int) -> int:
    """Forms the gloo group; rank 0 broadcasts its pipeline port `lport`, which every rank returns."""
    ifname = os.environ.get("GLOO_SOCKET_IFNAME", "")
    if not ifname:
        raise RendezvousError(
            "GLOO_SOCKET_IFNAME is not set: gloo would pick the interface of the hostname's address; "
            "set it to the interconnect's netdev"
        )
    dist = importlib.import_module("torch.distributed")
    log(f"joining the gloo process group at tcp://{addr}:{port} as rank {rank} of {world_size} ({ifname})")
    t0 = time.monotonic()
    if rank > 0:
        _await_listener(addr, port)  # torch's store client backs off ~10 s after a refused first try
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{addr}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=JOIN_TIMEOUT),
        )
        total = torch.tensor([rank + 1], dtype=torch.int64)
        dist.all_reduce(total)
        token = torch.tensor([port, world_size, lport] if rank == 0 else [0, 0, 0], dtype=torch.int64)
        dist.broadcast(token, src=0)
    except Exception as e:  # torch's DistNetworkError, DistStoreError, RuntimeError, ValueError...
        raise RendezvousError(f"gloo rendezvous at tcp://{addr}:{port} failed: {str(e).strip()[:300]}") from None
    want = world_size * (world_size + 1) // 2
    got = [int(v) for v in token.tolist()]
    if int(total.item()) != want or got[:2] != [port, world_size] or not 0 < got[2] < 65536:
        raise RendezvousError(f"gloo collectives gave wrong answers: all_reduce {total.item()} (want {want}), {got}")
    log(
        f"gloo process group formed: world_size={world_size} rank={rank} "
        f"(all_reduce ok, broadcast ok) in {time.monotonic() - t0:.2f} s"
    )
    return got[2]


def _await_listener(addr: str, port: int) -> None:
    """Returns once something listens on addr:port (rank 0's TCP store), polling every 0.2 s."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)


def _accept(listener: socket.socket, world_size: int, model: str, backend: str) -> Group:
    workers: dict[int, Worker] = {}
    addr, lport = listener.getsockname()[:2]
    log(f"waiting for {world_size - 1} rank(s) on {addr}:{lport}")
    while len(workers) < world_size - 1:
        sock, _ = listener.accept()
        keepalive(sock)
        conn = Line(sock)
        try:
            hello = conn.recv()
            rank = int(hello["rank"])
        except (ConnectionError, OSError, KeyError, TypeError, ValueError):
            sock.close()
            continue  # not a rank (a port probe), or one that died at once
        if hello.get("model") != model:
            raise RendezvousError(f"rank {rank} serves {hello.get('model')}, not {model}")
        if hello.get("world_size") != world_size or hello.get("backend") != backend:
            raise RendezvousError(
                f"rank {rank} has world size {hello.get('world_size')} over {hello.get('backend')}, "
                f"not {world_size} over {backend}"
            )
        if not 0 < rank < world_size or rank in workers:
            raise RendezvousError(f"a second rank {rank} joined (ranks are 1 to {world_size - 1} besides this one)")
        workers[rank] = Worker(rank, conn)
        log(f"rank {rank} joined from {hello.get('host_ip')}")
    listener.close()
    for worker in workers.values():
        worker.conn.send({"world_size": world_size, "backend": backend})
        worker.start()
    return Group(0, world_size, backend, workers=workers)


def _join(rank: int, world_size: int, addr: str, lport: int, host_ip: str, model: str, backend: str) -> Group:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        try:
            sock = socket.create_connection((addr, lport), timeout=5, source_address=(host_ip, 0))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RendezvousError(f"could not reach rank 0 at {addr}:{lport}") from None
            time.sleep(0.5)
    sock.settimeout(None)
    keepalive(sock)
    conn = Line(sock)
    hello = {"rank": rank, "host_ip": host_ip, "model": model, "world_size": world_size, "backend": backend}
    try:
        conn.send(hello)
        reply = conn.recv()
    except (ConnectionError, OSError):
        raise RendezvousError("rank 0 went away before the process group formed") from None
    log(f"joined process group: world_size={reply.get('world_size')} rank={rank} ({backend})")
    return Group(rank, world_size, backend, head=conn)


def serve_stage(group: Group, host_ip: str, switch: Switch) -> NoReturn:
    """A worker rank's pipeline stage, for ever: answers each message from rank 0 with its stage and host IP
    (a wedge holds the answers, while this loop still notices rank 0 going away)."""
    conn = group.head
    assert conn is not None
    pending: queue.Queue[dict[str, Any]] = queue.Queue()

    def answer() -> None:
        while True:
            msg = pending.get()
            switch.running.wait()
            tokens = len(str(msg.get("prompt", "")).split())
            try:
                conn.send({"stage": group.rank, "host_ip": host_ip, "tokens": tokens})
            except OSError:
                engine_dead("the head rank went away")

    threading.Thread(target=answer, name="stage", daemon=True).start()
    while True:
        try:
            pending.put(conn.recv())
        except (ConnectionError, OSError):
            engine_dead("the head rank went away")
