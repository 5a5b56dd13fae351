"""Lab stand-in for `vllm serve` (vLLM 0.33 native multi-node), for the lab and the tests.

It accepts exactly the flags sparkd emits (unknown flags fail with argparse's exit code 2,
as vLLM's parser does), enforces vLLM's own rules that matter to sparkd (`--headless`
only on node-rank > 0, no `--nnodes > 1` with the Ray backend, tp x pp = nnodes GPUs at
one GPU per Spark), and really rendezvouses: rank 0 listens on `--master-addr:--master-port`,
the other ranks connect from `VLLM_HOST_IP`. Rank 0 then serves `/health`, `/v1/models`,
`/metrics` (Prometheus text, vLLM's metric names), `/v1/chat/completions` and `/v1/completions`
(both honour `max_tokens`); every completion passes through every pipeline stage over the
rendezvous connections, so an answer proves the whole cluster works. When a peer rank goes
away (its connection closes or resets) the survivors exit non-zero, like vLLM's engine does.

Fault switches (`sparkd/lab/faults.py`, set with `sparkd lab fault`): each rank polls its fault file
`<SPARKD_LAB_FAULTS_DIR>/<served name>/rank<N>` every 0.2 s and can be made to crash (exit 3), wedge
(alive, `/health` 200, completions hang; a wedged worker stops answering the head), start slowly, or fail
every start. Liveness between ranks is the connection itself, never an answer's timing: a wedged rank
keeps its connection open, so a wedge stays silent, as a real one is.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sparkd.lab import faults
from sparkd.lab.standins.console import error, exit_now, log
from sparkd.lab.standins.engine import COMPLETIONS_DEFAULT_MAX_TOKENS, BadRequest, Engine, max_tokens_of
from sparkd.lab.standins.switch import Switch

VERSION = "0.33.0+sparkd.lab"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm", allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", allow_abbrev=False)
    s.add_argument("model")
    s.add_argument("--served-model-name")
    s.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    s.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    s.add_argument("--distributed-executor-backend", choices=["ray", "mp", "uni", "external_launcher"])
    s.add_argument("--nnodes", "-n", type=int, default=1)
    s.add_argument("--node-rank", "-r", type=int, default=0)
    s.add_argument("--master-addr", default="127.0.0.1")
    s.add_argument("--master-port", type=int, default=29501)
    s.add_argument("--headless", action="store_true")
    s.add_argument("--host")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-model-len", type=int)
    s.add_argument("--max-num-seqs", type=int)
    s.add_argument("--gpu-memory-utilization", type=float, default=0.92)
    s.add_argument("--kv-cache-dtype", choices=["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"], default="auto")
    return p


def fail(message: str) -> None:
    """Exits 1 at once, as vLLM's engine does on a fatal error."""
    print(f"ERROR [stand-in] {message}", file=sys.stderr, flush=True)
    exit_now(1)


def engine_dead(message: str) -> None:
    """Ends the process at once from any thread (a peer rank died: the engine cannot go on)."""
    error(f"{message}; exiting (engine dead)")
    exit_now(1)


def check(args: argparse.Namespace) -> str:
    if args.nnodes > 1 and args.distributed_executor_backend == "ray":
        fail("nnodes > 1 can only be set when distributed executor backend is mp, uni or external_launcher")
    if args.headless != (args.node_rank > 0):
        fail("--headless is required on node-rank > 0 and not allowed on node-rank 0")
    world = args.tensor_parallel_size * args.pipeline_parallel_size
    if world != args.nnodes:
        fail(f"tp x pp = {world} GPUs but {args.nnodes} nodes with 1 GPU each")
    host_ip = os.environ.get("VLLM_HOST_IP", "")
    for var in ("VLLM_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        if not os.environ.get(var):
            fail(f"{var} is not set: multi-node rendezvous would pick the wrong interface")
    try:
        with socket.socket() as probe:
            probe.bind((host_ip, 0))
    except OSError:
        fail(f"VLLM_HOST_IP={host_ip} is not an address of this node")
    return host_ip


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
    """The head's side of one worker rank: a reader thread that ends the engine as soon as the connection
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


def run_worker(args: argparse.Namespace, host_ip: str, switch: Switch) -> None:
    log(
        f"Launching vLLM (v{VERSION}) headless multiproc executor, with head node address "
        f"{args.master_addr}:{args.master_port} for torch.distributed process group."
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            sock = socket.create_connection(
                (args.master_addr, args.master_port), timeout=5, source_address=(host_ip, 0)
            )
            break
        except OSError:
            if time.monotonic() > deadline:
                fail(f"could not reach the head at {args.master_addr}:{args.master_port}")
            time.sleep(0.5)
    sock.settimeout(None)
    keepalive(sock)
    conn = Line(sock)
    conn.send({"rank": args.node_rank, "host_ip": host_ip, "model": args.model})
    try:
        reply = conn.recv()
    except (ConnectionError, OSError):
        fail("the head rank went away before the process group formed")
    log(f"joined process group: world_size={reply['world_size']} rank={args.node_rank}")
    pending: queue.Queue[dict[str, Any]] = queue.Queue()

    def answer() -> None:  # a wedge holds the answers, while the main loop still sees the head go away
        while True:
            msg = pending.get()
            switch.running.wait()
            tokens = len(str(msg.get("prompt", "")).split())
            try:
                conn.send({"stage": args.node_rank, "host_ip": host_ip, "tokens": tokens})
            except OSError:
                engine_dead("the head rank went away")

    threading.Thread(target=answer, name="stage", daemon=True).start()
    while True:
        try:
            pending.put(conn.recv())
        except (ConnectionError, OSError):
            engine_dead("the head rank went away")


def run_head(args: argparse.Namespace, host_ip: str, switch: Switch) -> None:
    if args.master_addr != host_ip:
        fail(f"--master-addr {args.master_addr} must be this node's VLLM_HOST_IP {host_ip} on node-rank 0")
    listener = socket.create_server((args.master_addr, args.master_port), reuse_port=False)
    workers: dict[int, Worker] = {}
    log(f"waiting for {args.nnodes - 1} node(s) on {args.master_addr}:{args.master_port}")
    while len(workers) < args.nnodes - 1:
        sock, _ = listener.accept()
        keepalive(sock)
        conn = Line(sock)
        try:
            hello = conn.recv()
        except (ConnectionError, OSError):
            continue  # not a rank (a port probe), or one that died at once
        if hello.get("model") != args.model:
            fail(f"rank {hello.get('rank')} serves {hello.get('model')}, not {args.model}")
        workers[int(hello["rank"])] = Worker(int(hello["rank"]), conn)
        log(f"rank {hello['rank']} joined from {hello['host_ip']}")
    for worker in workers.values():
        worker.conn.send({"world_size": args.nnodes})
        worker.start()
    name = args.served_model_name or args.model
    engine = Engine(name, host_ip, workers, switch)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a wedge outlived its timeout)

        def _json(self, code: int, body: dict[str, Any]) -> None:
            self._send(code, json.dumps(body).encode(), "application/json")

        def _error(self, code: int, message: str, kind: str) -> None:
            self._json(code, {"error": {"message": message, "type": kind, "param": None, "code": code}})

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {})
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "vllm"}]})
            elif self.path == "/metrics":
                self._send(200, engine.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._json(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                if self.path == "/v1/chat/completions":
                    self._chat(body)
                else:
                    self._completion(body)
            except (BadRequest, ValueError) as e:
                self._error(400, str(e), "BadRequestError")

        def _chat(self, body: dict[str, Any]) -> None:
            messages = body.get("messages", [])
            if not isinstance(messages, list):
                raise BadRequest("messages must be a list")
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
            max_tokens = max_tokens_of(body, ("max_completion_tokens", "max_tokens"), None)
            tokens, prompt_tokens, reason = engine.generate(prompt, max_tokens)
            message = {"role": "assistant", "content": " ".join(tokens)}
            choice = {"index": 0, "message": message, "finish_reason": reason}
            self._answer("chatcmpl", "chat.completion", choice, prompt_tokens, len(tokens))

        def _completion(self, body: dict[str, Any]) -> None:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list):
                prompt = " ".join(map(str, prompt))
            if not isinstance(prompt, str):
                raise BadRequest("prompt must be a string or a list of strings")
            max_tokens = max_tokens_of(body, ("max_tokens",), COMPLETIONS_DEFAULT_MAX_TOKENS)
            tokens, prompt_tokens, reason = engine.generate(prompt, max_tokens)
            choice = {"index": 0, "text": " ".join(tokens), "logprobs": None, "finish_reason": reason}
            self._answer("cmpl", "text_completion", choice, prompt_tokens, len(tokens))

        def _answer(self, prefix: str, kind: str, choice: dict[str, Any], prompt_tokens: int, tokens: int) -> None:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            self._json(
                200,
                {
                    "id": f"{prefix}-lab-{int(time.time() * 1000)}",
                    "object": kind,
                    "created": int(time.time()),
                    "model": name,
                    "choices": [choice],
                    "usage": usage,
                },
            )

        def log_message(self, format: str, *a: Any) -> None:
            log(format % a)

    server = ThreadingHTTPServer((args.host or "0.0.0.0", args.port), Handler)
    log(f"Starting vLLM server on http://{args.host or '0.0.0.0'}:{args.port}")
    log("Application startup complete.")
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    host_ip = check(args)
    served = args.served_model_name or args.model
    try:
        path: Path | None = faults.fault_path(faults.standin_faults_dir(os.environ), served, args.node_rank)
    except faults.FaultError as e:
        log(f"no fault switch: {e}")
        path = None
    switch = Switch(path)
    switch.start()  # first, so that a crash switch also ends a slow start
    switch.at_start()
    if args.node_rank == 0:
        run_head(args, host_ip, switch)
    else:
        run_worker(args, host_ip, switch)


if __name__ == "__main__":
    main()
