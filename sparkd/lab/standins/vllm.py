"""Lab stand-in for `vllm serve` (vLLM 0.33 native multi-node), for the lab and the tests.

It accepts exactly the flags of `framework_flags.yaml` for `vllm serve` (`flags.py`; unknown flags fail
with argparse's exit code 2, as vLLM's parser does; underscores are rewritten to dashes, as vLLM does),
and enforces vLLM's own rules that matter to sparkd (`--headless`
only on node-rank > 0, no `--nnodes > 1` with the Ray backend, tp x pp = nnodes GPUs at
one GPU per Spark), and really rendezvouses (`rendezvous.py`: torch.distributed gloo where torch is
importable, else the built-in TCP rendezvous): rank 0 listens on `--master-addr:--master-port`,
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

With `--distributed-executor-backend ray` the head joins a real Ray cluster instead (`vllm_ray.py`: a
placement group, one stage actor per rank; no `--nnodes`, `--node-rank` nor `--headless`) and serves the
same HTTP API; the worker nodes run `ray start`, no vLLM.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from sparkd.lab.standins import flags, vllm_ray
from sparkd.lab.standins.console import fail, log
from sparkd.lab.standins.engine import Engine
from sparkd.lab.standins.rendezvous import RendezvousError, form, serve_stage
from sparkd.lab.standins.server import PROMETHEUS, as_json, make_server, models
from sparkd.lab.standins.switch import Switch, open_switch

VERSION = "0.33.0+sparkd.lab"
#: vLLM's defaults for what the stand-in reads (vllm/config/parallel.py, cli_args.py, cache.py).
DEFAULTS = {
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
    "nnodes": 1,
    "node_rank": 0,
    "master_addr": "127.0.0.1",
    "master_port": 29501,
    "headless": False,
    "port": 8000,
    "gpu_memory_utilization": 0.92,
}


def parser() -> argparse.ArgumentParser:
    p = flags.TableParser(prog="vllm", allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", allow_abbrev=False)
    flags.add_flags(serve, "vllm serve")
    serve.set_defaults(**DEFAULTS)
    return p


def check(args: argparse.Namespace) -> str:
    if args.distributed_executor_backend == "ray":
        vllm_ray.check(args)  # the world is the Ray cluster's: its placement group says whether it fits
    else:
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


def run_worker(args: argparse.Namespace, host_ip: str, switch: Switch) -> None:
    log(
        f"Launching vLLM (v{VERSION}) headless multiproc executor, with head node address "
        f"{args.master_addr}:{args.master_port} for torch.distributed process group."
    )
    try:
        group = form(args.node_rank, args.nnodes, args.master_addr, args.master_port, host_ip, args.model)
    except RendezvousError as e:
        fail(str(e))
    serve_stage(group, host_ip, switch)


def run_head(args: argparse.Namespace, host_ip: str, switch: Switch) -> None:
    if args.master_addr != host_ip:
        fail(f"--master-addr {args.master_addr} must be this node's VLLM_HOST_IP {host_ip} on node-rank 0")
    try:
        group = form(0, args.nnodes, args.master_addr, args.master_port, host_ip, args.model)
    except RendezvousError as e:
        fail(str(e))
    serve(args, Engine(args.served_model_name or args.model, host_ip, group.workers, switch, "vllm"))


def serve(args: argparse.Namespace, engine: Engine) -> None:
    """The head's HTTP API (native or Ray mode alike), for ever."""
    name = engine.name
    routes = {
        "/health": lambda: as_json(200, {}),
        "/v1/models": models(name, "vllm"),
        "/metrics": lambda: (200, engine.metrics().encode(), PROMETHEUS),
    }
    host = args.host or "0.0.0.0"
    server = make_server(host, args.port, routes, engine)
    log(f"Starting vLLM server on http://{host}:{args.port}")
    log("Application startup complete.")
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    host_ip = check(args)
    switch = open_switch(args.served_model_name or args.model, args.node_rank)
    if args.distributed_executor_backend == "ray":
        serve(args, vllm_ray.ray_engine(args, host_ip, switch))
    elif args.node_rank == 0:
        run_head(args, host_ip, switch)
    else:
        run_worker(args, host_ip, switch)


if __name__ == "__main__":
    main()
