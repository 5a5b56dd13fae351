"""Lab stand-ins for TensorRT-LLM 1.2.1: `trtllm-serve` and `trtllm-llmapi-launch`, for the lab and the tests.

`python -m sparkd.lab.standins.trtllm serve MODEL [flags]` is `trtllm-serve` (also `trtllm-serve serve MODEL`,
as its click DefaultGroup takes): exactly the flags of `framework_flags.yaml` for trtllm-serve (`flags.py`:
underscores only, as click's options are named; `--tp-size` fails with exit code 2). Its MPI rank and world
come from OpenMPI (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE), else from `trtllm-llmapi-launch`'s
`tllm_mpi_size` (rank 0, whose MPI variables the launcher removed), else it is a single rank, allowed only when
tp_size x pp_size is 1. The world must be tp_size x pp_size (one GPU per Spark, `--gpus_per_node` 1). The
ranks rendezvous (`rendezvous.py`) at MASTER_ADDR:MASTER_PORT from the environment, from the IPv4 address of
the interface NCCL_SOCKET_IFNAME names (`=name` exact, else a prefix, as NCCL reads it); each is required.

Rank 0 serves, on `--host` (default localhost) `--port` (default 8000): `/health`, `/health_generate`,
`/v1/models`, `/version`, `/v1/chat/completions`, `/v1/completions`, `/metrics` as JSON iteration stats (a
list, each entry handed out once, not Prometheus) and, only when the `--config` YAML has
`return_perf_metrics: true`, `/prometheus/metrics` with `trtllm_` names; then logs uvicorn's
"Application startup complete.". The other ranks are pipeline stages. When a peer goes away the survivors
exit 1. Fault switches as the vLLM stand-in's, per model (the served name) and MPI rank.

`python -m sparkd.lab.standins.trtllm launch COMMAND...` is `trtllm-llmapi-launch` (a bash script in the real
wheel): it reads the rank as the real one (SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK, PMI_ID; else 0) and
the world (SLURM_NTASKS, OMPI_COMM_WORLD_SIZE; else 1), exports `tllm_mpi_size` and
TLLM_SPAWN_PROXY_PROCESS=1, and runs COMMAND: on rank 0 with the MPI variables removed (as the real one, whose
trtllm-serve then drives the other ranks over MPI), on the others as is (the real ones run
`mgmn_worker_node`; here the command's own trtllm-serve becomes that rank's stage).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import struct
import sys
from pathlib import Path

import yaml

from sparkd.lab.standins import flags
from sparkd.lab.standins.console import error, fail, log
from sparkd.lab.standins.engine import Engine
from sparkd.lab.standins.rendezvous import RendezvousError, Worker, form, serve_stage
from sparkd.lab.standins.server import PROMETHEUS, Route, as_json, make_server, models
from sparkd.lab.standins.switch import Switch, open_switch

VERSION = "1.2.1+sparkd.lab"
#: trtllm-serve's defaults for what the stand-in reads (tensorrt_llm/commands/serve.py).
DEFAULTS = {"host": "localhost", "port": 8000, "tp_size": 1, "pp_size": 1, "log_level": "info", "backend": "pytorch"}
#: The prefixes of the variables the real launcher removes before running the command on rank 0.
MPI_PREFIXES = (
    "OMPI_",
    "PMIX_",
    "PMI_",
    "SLURM_",
    "MPI_",
    "UCX_",
    "I_MPI_",
    "HYDRA_",
    "KMP_",
    "MPICH_",
    "MV2_",
    "CRAY_",
)
SIOCGIFADDR = 0x8915


def serve_parser() -> argparse.ArgumentParser:
    p = flags.parser("trtllm-serve")
    p.set_defaults(**DEFAULTS)
    return p


def mpi_world(environ: dict[str, str]) -> tuple[int, int]:
    """(rank, world size) of this trtllm-serve."""
    try:
        if environ.get("OMPI_COMM_WORLD_SIZE"):
            return int(environ.get("OMPI_COMM_WORLD_RANK", "")), int(environ["OMPI_COMM_WORLD_SIZE"])
        if environ.get("tllm_mpi_size"):
            return 0, int(environ["tllm_mpi_size"])
    except ValueError:
        fail("OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE and tllm_mpi_size must be integers")
    return 0, 1


def interface_ipv4(spec: str) -> tuple[str, str]:
    """(netdev, its IPv4 address) for an NCCL_SOCKET_IFNAME value: `=name` is that name, else the first
    netdev starting with the (first) prefix. OSError when there is none, or it has no IPv4 address."""
    first = spec.split(",", maxsplit=1)[0]
    exact = first.startswith("=")
    name = first.lstrip("=")
    if not name or name.startswith("^"):
        raise OSError(f"cannot pick an interface from {spec!r}")
    names = [n for _, n in socket.if_nameindex()]
    if name not in names and not exact:
        name = next((n for n in sorted(names) if n.startswith(name)), name)
    if name not in names:
        raise OSError(f"no interface {name!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        data = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
    return name, socket.inet_ntoa(data[20:24])


def perf_metrics(config: str | None) -> bool:
    """Whether the --config YAML turns on return_perf_metrics (and so /prometheus/metrics)."""
    if config is None:
        return False
    try:
        doc = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError) as e:
        fail(f"cannot read --config {config}: {e}")
    if doc is not None and not isinstance(doc, dict):
        fail(f"--config {config} is not a YAML mapping")
    return bool((doc or {}).get("return_perf_metrics", False))


def serve(argv: list[str]) -> None:
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    args = serve_parser().parse_args(argv)
    rank, world = mpi_world(dict(os.environ))
    want = args.tp_size * args.pp_size
    if world == 1 and want != 1:
        fail(f"tp_size x pp_size = {want} needs {want} MPI ranks: run it under mpirun, with trtllm-llmapi-launch")
    if world != want:
        fail(f"the MPI world has {world} ranks but tp_size x pp_size = {want}")
    if not 0 <= rank < world:
        fail(f"MPI rank {rank} is not below the world size {world}")
    if args.gpus_per_node not in (None, 1):
        fail(f"--gpus_per_node {args.gpus_per_node}, but a Spark has 1 GPU")
    prometheus = perf_metrics(args.config)
    host_ip, addr, port = "127.0.0.1", "127.0.0.1", 0
    if world > 1:
        for var in ("NCCL_SOCKET_IFNAME", "MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                fail(f"{var} is not set: the ranks cannot find each other over the interconnect")
        try:
            netdev, host_ip = interface_ipv4(os.environ["NCCL_SOCKET_IFNAME"])
            addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        except (OSError, ValueError) as e:
            fail(f"NCCL_SOCKET_IFNAME={os.environ['NCCL_SOCKET_IFNAME']} or MASTER_PORT: {e}")
        log(f"MPI rank {rank} of {world} on {netdev} ({host_ip}); rendezvous at {addr}:{port}")
    switch = open_switch(args.model, rank)
    try:
        group = form(rank, world, addr, port, host_ip, args.model)
    except RendezvousError as e:
        fail(str(e))
    if rank > 0:
        serve_stage(group, host_ip, switch)
    run_server(args, host_ip, group.workers, switch, prometheus)


def run_server(
    args: argparse.Namespace, host_ip: str, workers: dict[int, Worker], switch: Switch, prometheus: bool
) -> None:
    engine = Engine(args.model, host_ip, workers, switch, "trtllm")

    def health_generate() -> tuple[int, bytes, str]:
        engine.generate("health", 1, record=False)
        return 200, b"", "text/plain"

    routes: dict[str, Route] = {
        "/health": lambda: (200, b"", "text/plain"),
        "/health_generate": health_generate,
        "/v1/models": models(args.model, "tensorrt_llm"),
        "/version": lambda: as_json(200, {"version": VERSION}),
        "/metrics": lambda: as_json(200, engine.drain_iterations()),
    }
    if prometheus:
        routes["/prometheus/metrics"] = lambda: (200, engine.metrics().encode(), PROMETHEUS)
    server = make_server(args.host, args.port, routes, engine)
    log(f"Started server process [{os.getpid()}]")
    log("Waiting for application startup.")
    log("Application startup complete.")
    log(f"Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
    server.serve_forever()


def launch(argv: list[str]) -> None:
    if not argv:
        error("usage: trtllm-llmapi-launch COMMAND [ARGS...]")
        sys.exit(2)
    env = dict(os.environ)
    rank = next((env[v] for v in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMI_ID") if env.get(v)), "0")
    size = next((env[v] for v in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE") if env.get(v)), "1")
    env.update(tllm_mpi_size=size, TLLM_SPAWN_PROXY_PROCESS="1")
    print(f"mpi_rank: {rank}\ntllm_mpi_size: {size}", file=sys.stderr, flush=True)
    if rank == "0":
        env = {k: v for k, v in env.items() if not k.startswith(MPI_PREFIXES)}
        print(f"rank0 run {' '.join(argv)}", file=sys.stderr, flush=True)
    else:
        print(f"rank{rank} run mgmn worker node with mpi_world_size: {size} ...", file=sys.stderr, flush=True)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        fail(f"cannot run {argv[0]}: {e.strerror}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:
        launch(argv[1:])
    elif argv[:1] == ["serve"]:
        serve(argv[1:])
    else:
        error("usage: python -m sparkd.lab.standins.trtllm {serve|launch} ...")
        sys.exit(2)


if __name__ == "__main__":
    main()
