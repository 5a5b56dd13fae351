"""The vLLM stand-in's Ray mode: `vllm serve ... --distributed-executor-backend ray` on a real Ray cluster.

As vLLM 0.33 does (vllm/v1/executor/ray_utils.py, ray_executor.py), the head's `vllm serve` is a Ray driver:
it joins the running cluster (RAY_ADDRESS, else the local `ray start`'s; never a new one, nor any other
cluster running on the machine: `cluster_address`), asks for a placement group of world-size bundles
`{"GPU": 1}`, the first pinned to this node (`node:<VLLM_HOST_IP>`: 0.001, so a VLLM_HOST_IP that is not the
Ray node's IP never gets its group, and says so every wait), and creates one actor per rank in its bundle
(`num_gpus=1`, `num_cpus=0`). vLLM packs the group (PACK); the stand-in asks for STRICT_SPREAD, one bundle
per node, the lab's one GPU per Spark. vLLM logs `Waiting for creating a placement group of specs for N
seconds ...` after each unanswered wait (10 s, then doubled) and gives up after 1800 s;
SPARKD_LAB_RAY_PG_TIMEOUT shortens that for tests.

Stage 0 is the actor on the head's node, the others follow by IP (vLLM sorts its workers so); each reports
its VLLM_HOST_IP, which it has from its own node's `ray start` (Ray does not copy the driver's
environment), else Ray's node IP. Every completion passes through every actor in order, so the answer
names the route (`stage 0 (192.168.100.1) -> stage 1 (192.168.100.2)`). One call per actor never returns
(`watch`): when it fails, the actor is gone (its node's Ray stopped, or it crashed), and the head exits 1,
engine dead, as vLLM's does.

Fault switches: the head process reads rank 0's (vllm.py, as in native mode). A worker node runs no vLLM
process in Ray mode, so each stage actor of rank N > 0 reads rank N's switch, from its node's
SPARKD_LAB_FAULTS_DIR (the lab's `ray` wrapper exports it): crash ends the actor (exit 3) and so the head
(exit 1); wedge holds the actor's answers (completions hang, `/health` stays 200); slow_start delays the
actor's start and so the head's; crash_on_start fails the actor's start and so the head's. The worker
node's `ray start` unit itself never fails from a switch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from sparkd.lab.standins.console import engine_dead, fail, log
from sparkd.lab.standins.engine import Engine, Stage
from sparkd.lab.standins.switch import Switch, open_switch

NEEDS_RAY = "the vLLM stand-in's Ray mode needs ray (pip install ray==2.60.0)"
#: vLLM's placement-group wait (ray_utils.py PG_WAIT_TIMEOUT) and its first interval between log lines.
PG_WAIT_TIMEOUT = 1800.0
PG_WAIT_INTERVAL = 10.0
#: Seconds to wait for the placement group instead of vLLM's 1800 (for tests).
PG_TIMEOUT_ENV = "SPARKD_LAB_RAY_PG_TIMEOUT"
STRATEGY = "STRICT_SPREAD"
#: vLLM's message for Ray with --nnodes > 1 (vllm/config/parallel.py).
NNODES = "nnodes > 1 can only be set when distributed executor backend is mp, uni or external_launcher."
#: Concurrent calls per actor: `watch` holds one for ever; pipeline calls come one at a time.
ACTOR_CONCURRENCY = 4


def check(args: argparse.Namespace) -> None:
    """vLLM's rules for the Ray backend: one `vllm serve`, on the head; workers are Ray nodes."""
    worker = "with the ray backend only the head runs vllm serve: a worker node runs `ray start --address HEAD:PORT`"
    if args.nnodes > 1:
        fail(NNODES)
    if args.node_rank != 0:
        fail(f"--node-rank {args.node_rank} needs --nnodes > 1, and {NNODES} ({worker})")
    if args.headless:
        fail(f"--headless is for the mp backend's worker nodes; {worker}")


class StageActor:
    """One rank of the pipeline: a Ray actor in its placement-group bundle (one GPU, one node)."""

    def __init__(self) -> None:
        ray = importlib.import_module("ray")
        self.node_ip = str(ray.util.get_node_ip_address())
        self.host_ip = os.environ.get("VLLM_HOST_IP") or self.node_ip
        self.rank = -1
        self.switch = Switch(None)

    def ip(self) -> str:
        return self.host_ip

    def start(self, rank: int, served: str) -> str:
        """Takes rank `rank`; a rank above 0 starts its fault switch (crash_on_start exits, slow_start sleeps)."""
        self.rank = rank
        if self.host_ip != self.node_ip:
            log(f"stage {rank}: VLLM_HOST_IP={self.host_ip} but Ray's node IP is {self.node_ip}")
        if rank > 0:
            self.switch = open_switch(served, rank)
        log(f"stage {rank} ready on {self.host_ip} (pid {os.getpid()})")
        return self.host_ip

    def forward(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        self.switch.running.wait()  # a wedge holds the answer
        return {"stage": self.rank, "host_ip": self.host_ip, "tokens": len(str(msg.get("prompt", "")).split())}

    def watch(self) -> None:
        """Never returns: the head learns that this actor is gone when this call fails."""
        threading.Event().wait()


class RayStage:
    """The head's side of one stage actor (engine.Stage): a dead actor is a dead engine."""

    def __init__(self, ray: Any, rank: int, ip: str, actor: Any) -> None:
        self.ray, self.rank, self.ip, self.actor = ray, rank, ip, actor

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self.ray.get(self.actor.forward.remote(obj)))
        except self.ray.exceptions.RayError as e:
            self.dead(e)

    def dead(self, e: BaseException) -> NoReturn:
        engine_dead(f"Ray stage actor {self.rank} ({self.ip}) went away: {type(e).__name__}: {str(e)[:300]}")

    def watch(self) -> None:
        try:
            self.ray.get(self.actor.watch.remote())
        except Exception as e:  # RayActorError, ActorDiedError, ActorUnavailableError...
            self.dead(e)
        engine_dead(f"Ray stage actor {self.rank} ({self.ip}) returned from watch")


def load_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        fail(NEEDS_RAY)


def pg_timeout() -> float:
    raw = os.environ.get(PG_TIMEOUT_ENV, "")
    if not raw:
        return PG_WAIT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= PG_WAIT_TIMEOUT:
        fail(f"{PG_TIMEOUT_ENV} must be seconds from 0 to {PG_WAIT_TIMEOUT:g}, not {raw[:40]!r}")
    return value


def cluster_address() -> str:
    """RAY_ADDRESS, else the address this machine's last `ray start` recorded (`<RAY_TMPDIR or TMPDIR or /tmp>
    /ray/ray_current_cluster`; a unit sharing the head's Ray unit's PrivateTmp sees it): Ray's own "auto",
    less its legacy fallback to any gcs_server process it finds running, which may be another cluster's, even
    one in another network namespace."""
    address = os.environ.get("RAY_ADDRESS", "")
    if address and address != "auto":
        return address
    path = Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp", "ray", "ray_current_cluster")
    try:
        address = path.read_text().strip()
    except OSError:
        address = ""
    if not address:
        fail(
            f"Could not find any running Ray instance: RAY_ADDRESS is not set and no `ray start` recorded one in "
            f"{path}. Start the cluster first (ray start --head), or set RAY_ADDRESS to its GCS address."
        )
    return address


def connect(ray: Any) -> str:
    address = cluster_address()
    log(f"connecting to the Ray cluster at {address}")
    try:
        ray.init(address=address)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError...
        fail(f"cannot connect to the Ray cluster at {address}: {type(e).__name__}: {str(e).strip()[:300]}")
    return address


def placement_group(ray: Any, world: int, host_ip: str, timeout: float) -> Any:
    """vLLM's initialize_ray_cluster: world bundles of one GPU, the first on this node; waits until placed."""
    if world > ray.cluster_resources().get("GPU", 0):
        log("The number of required GPUs exceeds the total number of available GPUs in the placement group.")
    node_id = ray.get_runtime_context().get_node_id()
    resources: dict[str, float] = next((n.get("Resources", {}) for n in ray.nodes() if n.get("NodeID") == node_id), {})
    if resources.get("GPU", 0) < 1:
        fail(
            f"Current node has no GPU available. current_node_resource={resources}. vLLM engine cannot start "
            f"without GPU. Make sure you have at least 1 GPU available in a node current_node_id={node_id!r} "
            f"current_ip={host_ip!r}."
        )
    specs: list[dict[str, float]] = [{"GPU": 1.0} for _ in range(world)]
    specs[0][f"node:{host_ip}"] = 0.001
    group = ray.util.placement_group(specs, strategy=STRATEGY)
    start = time.monotonic()
    ready_ref = group.ready()
    interval = PG_WAIT_INTERVAL
    while (left := timeout - (time.monotonic() - start)) > 0:
        ready, _ = ray.wait([ready_ref], timeout=min(interval, left))
        if ready:
            break
        interval *= 2
        log(
            f"Waiting for creating a placement group of specs for {int(time.monotonic() - start)} seconds. "
            f"specs={specs}. Check `ray status` and `ray list nodes` to see if you have enough resources, and "
            "make sure the IP addresses used by ray cluster are the same as VLLM_HOST_IP environment variable "
            "specified in each node if you are running on a multi-node."
        )
    try:
        ray.get(ready_ref, timeout=0)
    except ray.exceptions.GetTimeoutError:
        fail(
            f"Cannot provide a placement group of placement_group_specs={specs} within {timeout:g} seconds. "
            "See `ray status` and `ray list nodes` to make sure the cluster has enough resources."
        )
    log(f"placement group of {world} GPU bundle(s) ready ({STRATEGY}) in {time.monotonic() - start:.2f} s")
    return group


def stage_actors(ray: Any, group: Any, world: int, served: str) -> dict[int, RayStage]:
    """One actor per bundle; stage 0 is bundle 0's (this node), the others follow by IP. Each is started."""
    strategy = importlib.import_module("ray.util.scheduling_strategies").PlacementGroupSchedulingStrategy
    remote = ray.remote(StageActor)
    actors = [
        remote.options(
            num_cpus=0,
            num_gpus=1,
            max_concurrency=ACTOR_CONCURRENCY,
            max_restarts=0,
            scheduling_strategy=strategy(
                placement_group=group, placement_group_bundle_index=i, placement_group_capture_child_tasks=True
            ),
        ).remote()
        for i in range(world)
    ]
    try:
        ips = [str(ip) for ip in ray.get([a.ip.remote() for a in actors])]
    except ray.exceptions.RayError as e:
        fail(f"the Ray stage actors did not start: {type(e).__name__}: {str(e)[:300]}")
    order = [0, *sorted(range(1, world), key=lambda i: ips[i])]
    stages = {rank: RayStage(ray, rank, ips[i], actors[i]) for rank, i in enumerate(order)}
    try:
        ray.get([s.actor.start.remote(rank, served) for rank, s in stages.items()])
    except ray.exceptions.RayError as e:
        fail(f"a Ray stage actor failed to start (engine dead): {type(e).__name__}: {str(e)[:300]}")
    for stage in stages.values():
        threading.Thread(target=stage.watch, name=f"watch-stage{stage.rank}", daemon=True).start()
    log("Ray stage actors: " + ", ".join(f"stage {r} on {s.ip}" for r, s in stages.items()))
    return stages


def ray_engine(args: argparse.Namespace, host_ip: str, switch: Switch) -> Engine:
    """Joins the Ray cluster, places the world's stage actors and returns the head's engine over them."""
    timeout = pg_timeout()
    ray = load_ray()
    t0 = time.monotonic()
    address = connect(ray)
    world = args.tensor_parallel_size * args.pipeline_parallel_size
    group = placement_group(ray, world, host_ip, timeout)
    name = args.served_model_name or args.model
    workers: dict[int, Stage] = dict(stage_actors(ray, group, world, name))
    log(f"Ray executor ready: {world} stage actor(s) on the cluster at {address} in {time.monotonic() - t0:.2f} s")
    return Engine(name, host_ip, workers, switch, "vllm")
