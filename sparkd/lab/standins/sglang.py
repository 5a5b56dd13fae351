"""Lab stand-in for `sglang serve` (SGLang 0.5.23 multi-node), for the lab and the tests.

It accepts exactly the flags of `framework_flags.yaml` for `sglang serve` (`flags.py`: dashes only, as SGLang;
unknown flags, underscores and prefixes such as the seed's `--tp` fail with argparse's exit code 2), enforces
the rules that matter to sparkd (tp-size x pp-size = nnodes GPUs at one GPU per Spark, a node rank below
nnodes, `--dist-init-addr` for more than one node, naming this node on node-rank 0), needs SGLANG_HOST_IP,
GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME, and really rendezvouses at `--dist-init-addr` (`rendezvous.py`:
torch.distributed gloo where torch is importable; else the built-in TCP rendezvous on that port).

As SGLang (framework-facts.md section 2): node-rank 0 serves `/health`, `/health_generate` (a 1-token
generation through every stage), `/ready`, `/ping`, `/model_info`, `/v1/models`, `/v1/chat/completions`,
`/v1/completions` and, with `--enable-metrics` only, `/metrics` (SGLang's metric names), on `--host`
(default 127.0.0.1) `--port` (default 30000), and logs "The server is fired up and ready to roll!" after a
warm-up generation. Ranks >= 1 serve a dummy health server on the same `--host/--port`: `/ping`, `/health`,
`/health_generate`, 200 once the group has formed (and `/metrics`, empty, with `--enable-metrics`). When a
peer rank goes away the survivors exit 1. Fault switches as the vLLM stand-in's (`sparkd/lab/faults.py`), per
served model name (`--served-model-name`, else `--model-path`) and node rank.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

from sparkd.lab.standins import flags
from sparkd.lab.standins.console import fail, log
from sparkd.lab.standins.engine import Engine
from sparkd.lab.standins.rendezvous import RendezvousError, form, serve_stage
from sparkd.lab.standins.server import PROMETHEUS, Route, as_json, make_server, models
from sparkd.lab.standins.switch import Switch, open_switch

VERSION = "0.5.23+sparkd.lab"
READY = "The server is fired up and ready to roll!"
#: SGLang's defaults for what the stand-in reads (sglang/srt/arg_groups/fields/serving.py, parallel.py).
DEFAULTS = {"host": "127.0.0.1", "port": 30000, "tp_size": 1, "pp_size": 1, "nnodes": 1, "node_rank": 0}
ENV = ("SGLANG_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def parser() -> argparse.ArgumentParser:
    p = flags.TableParser(prog="sglang", allow_abbrev=False)
    sub = p.add_subparsers(dest="subcommand", required=True)
    serve = sub.add_parser("serve", allow_abbrev=False)
    flags.add_flags(serve, "sglang serve")
    serve.set_defaults(**DEFAULTS)
    sub.add_parser("version", allow_abbrev=False)
    return p


def check(args: argparse.Namespace) -> tuple[str, str, int]:
    """The host IP and the rendezvous address and port; exits 1 naming the first rule broken."""
    world = args.tp_size * args.pp_size
    if world != args.nnodes:
        fail(f"tp-size x pp-size = {world} GPUs but {args.nnodes} nodes with 1 GPU each")
    if not 0 <= args.node_rank < args.nnodes:
        fail(f"--node-rank {args.node_rank} is not below --nnodes {args.nnodes}")
    for var in ENV:
        if not os.environ.get(var):
            fail(f"{var} is not set: multi-node rendezvous would pick the wrong interface")
    host_ip = os.environ["SGLANG_HOST_IP"]
    try:
        with socket.socket() as probe:
            probe.bind((host_ip, 0))
    except OSError:
        fail(f"SGLANG_HOST_IP={host_ip} is not an address of this node")
    if args.nnodes == 1 and not args.dist_init_addr:
        return host_ip, host_ip, 0
    if not args.dist_init_addr:
        fail("--dist-init-addr HOST:PORT (node 0's address) is required with --nnodes > 1")
    addr, _, port = args.dist_init_addr.rpartition(":")
    if args.node_rank == 0 and args.nnodes > 1 and addr != host_ip:
        fail(f"--dist-init-addr {args.dist_init_addr} must be this node's SGLANG_HOST_IP {host_ip} on node-rank 0")
    return host_ip, addr, int(port)


def run_head(args: argparse.Namespace, host_ip: str, addr: str, port: int, switch: Switch) -> None:
    try:
        group = form(0, args.nnodes, addr, port, host_ip, args.model_path)
    except RendezvousError as e:
        fail(str(e))
    name = args.served_model_name or args.model_path
    engine = Engine(name, host_ip, group.workers, switch, "sglang")

    up = threading.Event()  # set after the warm-up: 503 until then, as SGLang's "Starting" state

    def health() -> tuple[int, bytes, str]:
        return (200 if up.is_set() else 503), b"", "text/plain"

    def health_generate() -> tuple[int, bytes, str]:
        if up.is_set():
            engine.generate("health", 1, record=False)  # a wedge anywhere holds it, as a real generation
        return health()

    routes: dict[str, Route] = {
        "/health": health,
        "/health_generate": health_generate,
        "/ready": health,
        "/ping": health,
        "/v1/models": models(name, "sglang"),
        "/model_info": lambda: as_json(200, {"model_path": args.model_path, "is_generation": True}),
    }
    if args.enable_metrics:
        routes["/metrics"] = lambda: (200, engine.metrics().encode(), PROMETHEUS)
    server = make_server(args.host, args.port, routes, engine)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log(f"Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
    engine.generate("warmup", 1, record=False)
    up.set()
    log(READY)
    threading.Event().wait()


def run_worker(args: argparse.Namespace, host_ip: str, addr: str, port: int, switch: Switch) -> None:
    log(f"node-rank {args.node_rank} of {args.nnodes}: joining node 0 at {addr}:{port}")
    try:
        group = form(args.node_rank, args.nnodes, addr, port, host_ip, args.model_path)
    except RendezvousError as e:
        fail(str(e))
    ok: Route = lambda: (200, b"", "text/plain")  # noqa: E731
    routes = {"/ping": ok, "/health": ok, "/health_generate": ok}
    if args.enable_metrics:
        routes["/metrics"] = lambda: (200, b"", PROMETHEUS)
    server = make_server(args.host, args.port, routes)
    threading.Thread(target=server.serve_forever, name="dummy-health", daemon=True).start()
    log(f"dummy health check server on http://{args.host}:{args.port} (node-rank {args.node_rank} serves no API)")
    serve_stage(group, host_ip, switch)


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.subcommand == "version":
        print(f"sglang version: {VERSION}")
        return
    if not args.model_path:
        p.error("the following arguments are required: --model-path/--model")
    host_ip, addr, port = check(args)
    switch = open_switch(args.served_model_name or args.model_path, args.node_rank)
    if args.node_rank == 0:
        run_head(args, host_ip, addr, port, switch)
    else:
        run_worker(args, host_ip, addr, port, switch)


if __name__ == "__main__":
    main()
