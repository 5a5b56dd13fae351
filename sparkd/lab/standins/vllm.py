"""Lab stand-in for `vllm serve` (vLLM 0.33 native multi-node), for the lab and the tests.

It accepts exactly the flags sparkd emits (unknown flags fail with argparse's exit code 2,
as vLLM's parser does), enforces vLLM's own rules that matter to sparkd (`--headless`
only on node-rank > 0, no `--nnodes > 1` with the Ray backend, tp x pp = nnodes GPUs at
one GPU per Spark), and really rendezvouses: rank 0 listens on `--master-addr:--master-port`,
the other ranks connect from `VLLM_HOST_IP`. Rank 0 then serves `/health`, `/v1/models`
and `/v1/chat/completions`; every completion passes through every pipeline stage over
the rendezvous connections, so an answer proves the whole cluster works. When a peer
rank goes away the survivors exit non-zero, like vLLM's engine does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    return p


def log(message: str) -> None:
    print(f"INFO {time.strftime('%m-%d %H:%M:%S')} [stand-in] {message}", flush=True)


def fail(message: str) -> None:
    print(f"ERROR [stand-in] {message}", file=sys.stderr, flush=True)
    sys.exit(1)


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


class Line:
    """A JSON-lines connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.file, self.lock = sock, sock.makefile("rwb"), threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps(obj).encode() + b"\n")
        self.file.flush()

    def recv(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise ConnectionError("peer rank closed the connection")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.send(obj)
            return self.recv()


def run_worker(args: argparse.Namespace, host_ip: str) -> None:
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
    conn = Line(sock)
    conn.send({"rank": args.node_rank, "host_ip": host_ip, "model": args.model})
    reply = conn.recv()
    log(f"joined process group: world_size={reply['world_size']} rank={args.node_rank}")
    while True:
        try:
            msg = conn.recv()
        except ConnectionError:
            fail("the head rank went away; exiting (engine dead)")
        conn.send({"stage": args.node_rank, "host_ip": host_ip, "tokens": len(str(msg.get("prompt", "")).split())})


def run_head(args: argparse.Namespace, host_ip: str) -> None:
    if args.master_addr != host_ip:
        fail(f"--master-addr {args.master_addr} must be this node's VLLM_HOST_IP {host_ip} on node-rank 0")
    listener = socket.create_server((args.master_addr, args.master_port), reuse_port=False)
    workers: dict[int, Line] = {}
    log(f"waiting for {args.nnodes - 1} node(s) on {args.master_addr}:{args.master_port}")
    while len(workers) < args.nnodes - 1:
        sock, _ = listener.accept()
        conn = Line(sock)
        hello = conn.recv()
        if hello.get("model") != args.model:
            fail(f"rank {hello.get('rank')} serves {hello.get('model')}, not {args.model}")
        workers[int(hello["rank"])] = conn
        log(f"rank {hello['rank']} joined from {hello['host_ip']}")
    for conn in workers.values():
        conn.send({"world_size": args.nnodes})
    name = args.served_model_name or args.model

    def forward(prompt: str) -> list[dict[str, Any]]:
        stages = [{"stage": 0, "host_ip": host_ip}]
        for rank in sorted(workers):
            try:
                stages.append(workers[rank].ask({"prompt": prompt}))
            except (ConnectionError, OSError):
                log(f"rank {rank} went away; exiting (engine dead)")
                os._exit(1)
        return stages

    class Handler(BaseHTTPRequestHandler):
        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {})
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "vllm"}]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
            stages = forward(prompt)
            route = " -> ".join(f"stage {s['stage']} ({s['host_ip']})" for s in stages)
            text = f"Hello from the sparkd lab: your prompt passed pipeline {route}."
            self._json(
                200,
                {
                    "id": f"chatcmpl-lab-{int(time.time() * 1000)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": name,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": len(prompt.split()),
                        "completion_tokens": len(text.split()),
                        "total_tokens": len(prompt.split()) + len(text.split()),
                    },
                },
            )

        def log_message(self, format: str, *a: Any) -> None:
            log(format % a)

    server = ThreadingHTTPServer((args.host or "0.0.0.0", args.port), Handler)

    def watch(rank: int, conn: Line) -> None:  # a dead peer rank kills the engine, as in vLLM
        while True:
            time.sleep(1)
            with conn.lock:
                try:
                    conn.send({"prompt": ""})
                    conn.recv()
                except (ConnectionError, OSError):
                    log(f"rank {rank} went away; exiting (engine dead)")
                    os._exit(1)

    for rank, conn in workers.items():
        threading.Thread(target=watch, args=(rank, conn), daemon=True).start()
    log(f"Starting vLLM server on http://{args.host or '0.0.0.0'}:{args.port}")
    log("Application startup complete.")
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    host_ip = check(args)
    if args.node_rank == 0:
        run_head(args, host_ip)
    else:
        run_worker(args, host_ip)


if __name__ == "__main__":
    main()
