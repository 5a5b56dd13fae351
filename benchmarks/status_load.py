"""GetStatus under open-loop load, and each daemon's idle cost against a bare gRPC floor, on a two-node lab (root).

    sudo .venv/bin/python benchmarks/status_load.py [--rate 200] [--headroom-rate 400] [--seconds 20] [--idle 30]
                                                    [--no-control]

1. A two-node lab and the demo deployment (examples/demo.yaml), READY.
2. The floor: a separate process of the same interpreter that imports grpc, pyroute2 and structlog and
   serves a grpc.aio server with health and reflection on a unix socket in a temporary directory, doing
   nothing else; its RSS 3 s after it serves.
3. GetStatus on the head's read-only socket, open loop: request i is sent at t0 + i/rate whatever happened
   to the ones before it (one grpc.aio channel, one asyncio task per request), and its latency is its
   completion time minus its scheduled send time, so queueing in a slow daemon shows as latency instead of
   lowering the offered rate. Once at --rate, once at --headroom-rate. `send_lag` is how late this client
   launched requests (a client-side bottleneck, not the daemon's).
4. The control: the same open loop at --rate on the floor's grpc.health.v1 Check, i.e. what this client,
   grpc.aio and this machine cost without sparkd (subtract it from the GetStatus figures).
5. Idle cost: VmRSS and utime+stime of each daemon's host PIDs (its unit's cgroup.procs) over --idle s,
   with the READY deployment up and no requests; each daemon's RSS over the floor's, and the floor's CPU
   over the same window.

Prints one `name value unit` line per figure; figures are measurements of this machine now, never
assertions. The lab is brought down at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sparkctl_client.client import Client
from sparkd.lab import lab
from sparkd.v1 import deployment_pb2, deployment_service_pb2, status_service_pb2, status_service_pb2_grpc

ROOT = Path(__file__).parents[1]
CLK = os.sysconf("SC_CLK_TCK")
NODES = ("spark1", "spark2")
FLOOR = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
import pyroute2, structlog

async def main():
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    reflection.enable_server_reflection([health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    server.add_insecure_port("unix:" + sys.argv[1])
    await server.start()
    print("serving", flush=True)
    await asyncio.sleep(86400)

asyncio.run(main())
"""


def figure(name: str, value: float, unit: str, digits: int = 2) -> None:
    print(f"{name} {value:.{digits}f} {unit}", flush=True)


def ro_socket(node: str) -> Path:
    return lab.sysroot(node) / "run/sparkd/sparkd-ro.sock"


def host_pids(unit: str) -> list[int]:
    """Host PIDs of a unit: its cgroup.procs (the sandbox's MainPID is a PID of the sandbox's namespace)."""
    cg = subprocess.run(
        ["systemctl", "show", "-p", "ControlGroup", "--value", unit], capture_output=True, text=True, check=True
    ).stdout.strip()
    for base in ("/sys/fs/cgroup/unified/sparkd-lab", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        procs = Path(base + cg) / "cgroup.procs"
        if cg and procs.exists():
            return [int(p) for p in procs.read_text().split()]
    return []


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def deploy_demo() -> None:
    head = Client(str(lab.admin_socket("spark1")))
    try:
        spec = (ROOT / "examples/demo.yaml").read_text()
        t0 = time.monotonic()
        head.call(head.deployments.CreateDeployment, deployment_service_pb2.CreateDeploymentRequest(spec_yaml=spec))
        state = deployment_pb2.DEPLOYMENT_STATE_UNSPECIFIED
        while time.monotonic() - t0 < 120:
            d = head.call(head.deployments.GetDeployment, deployment_service_pb2.GetDeploymentRequest(name="demo"))
            state = d.deployment.state
            if state == deployment_pb2.DEPLOYMENT_STATE_READY:
                figure("deploy_to_ready_s", time.monotonic() - t0, "s")
                return
            time.sleep(0.05)
        name = deployment_pb2.DeploymentState.Name(state)
        print(f"deploy_to_ready_s nan s (not READY after 120 s: {name}; the figures below lack it)", flush=True)
    finally:
        head.close()


def status_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    stub = status_service_pb2_grpc.StatusServiceStub(channel)
    return lambda: stub.GetStatus(status_service_pb2.GetStatusRequest(), timeout=10)


def health_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    stub = health_pb2_grpc.HealthStub(channel)
    return lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10)


async def open_loop(
    tag: str,
    socket: Path,
    make_call: Callable[[grpc.aio.Channel], Callable[[], Awaitable[object]]],
    rate: float,
    seconds: float,
) -> None:
    """`rate` calls per second for `seconds` on one channel, call i launched at t0 + i/rate whatever happened
    to the calls before it; its latency runs from that scheduled time to its completion."""
    n = round(rate * seconds)
    latencies: list[float] = []
    lags: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        call = make_call(channel)
        await asyncio.wait_for(channel.channel_ready(), 10)
        for _ in range(50):  # warm the channel and the server's handler path
            await call()

        async def one(scheduled: float) -> None:
            try:
                await call()
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1
            else:
                latencies.append((time.perf_counter() - scheduled) * 1000)

        tasks: list[asyncio.Task[None]] = []
        t0 = time.perf_counter() + 0.1
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append((time.perf_counter() - scheduled) * 1000)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    latencies.sort()
    lags.sort()
    tag = f"{tag}_{rate:g}rps"
    for label, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        figure(f"{tag}_{label}", quantile(latencies, q), "ms")
    figure(f"{tag}_max", latencies[-1] if latencies else math.nan, "ms")
    figure(f"{tag}_achieved_rate", len(latencies) / elapsed, "req/s", 1)
    detail = f" ({', '.join(f'{k}={v}' for k, v in sorted(errors.items()))})" if errors else ""
    print(f"{tag}_errors {sum(errors.values())} count{detail}", flush=True)
    figure(f"{tag}_send_lag_p99", quantile(lags, 0.99), "ms")


@contextmanager
def floor_process() -> Iterator[tuple[int, Path]]:
    """The bare floor (see FLOOR), serving; yields its PID and socket, and ends it by its PID."""
    with tempfile.TemporaryDirectory(prefix="sparkd-floor-") as tmp:
        socket = Path(tmp) / "floor.sock"
        floor = subprocess.Popen([sys.executable, "-c", FLOOR, str(socket)], stdout=subprocess.PIPE, text=True)
        try:
            if floor.stdout is None or floor.stdout.readline().strip() != "serving":
                raise RuntimeError(f"the floor process did not serve (exit status {floor.poll()})")
            yield floor.pid, socket
        finally:
            floor.terminate()  # Popen signals floor.pid, and only it
            try:
                floor.wait(5)
            except subprocess.TimeoutExpired:
                floor.kill()
                floor.wait()


def idle_cost(idle: float, floor_pid: int, floor_rss: float) -> None:
    """Each daemon's RSS and CPU over `idle` s, and the floor process's CPU over the same window."""
    pids = {node: host_pids(lab.daemon_unit(node)) for node in NODES}
    everyone = {**pids, "floor": [floor_pid]}
    before = {name: cpu_ticks(p) for name, p in everyone.items()}
    t0 = time.monotonic()
    time.sleep(idle)
    after = {name: cpu_ticks(p) for name, p in everyone.items()}
    window = time.monotonic() - t0
    for node, p in pids.items():
        rss = rss_kib(p) / 1024
        figure(f"{node}_rss_mib", rss, "MiB", 1)
        figure(f"{node}_cpu_percent", (after[node] - before[node]) / CLK / window * 100, "%")
        figure(f"{node}_rss_over_floor_mib", rss - floor_rss, "MiB", 1)
        print(f"{node}_pids {len(p)} count", flush=True)
    figure("floor_cpu_percent", (after["floor"] - before["floor"]) / CLK / window * 100, "%")
    figure("idle_window_s", window, "s", 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, first pass")
    parser.add_argument("--headroom-rate", type=float, default=400.0, help="requests per second, second pass")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each pass")
    parser.add_argument("--idle", type=float, default=30.0, help="idle window for CPU, in seconds")
    parser.add_argument(
        "--no-control", dest="control", action="store_false", help="skip the control pass (Health.Check on the floor)"
    )
    args = parser.parse_args()
    if lab.STATE.exists():
        sys.exit("a lab is up; run `sparkd lab down` first")
    try:
        t0 = time.monotonic()
        lab.up(2, bare=False, log=lambda _: None)
        figure("lab_up_s", time.monotonic() - t0, "s")
        deploy_demo()
        with floor_process() as (floor_pid, floor_socket):
            time.sleep(3)
            floor_rss = rss_kib([floor_pid]) / 1024
            figure("floor_rss_mib", floor_rss, "MiB", 1)
            for rate in (args.rate, args.headroom_rate):
                asyncio.run(open_loop("get_status", ro_socket("spark1"), status_call, rate, args.seconds))
                time.sleep(2)  # let the pass settle
            if args.control:
                asyncio.run(open_loop("floor_health", floor_socket, health_call, args.rate, args.seconds))
                time.sleep(2)
            idle_cost(args.idle, floor_pid, floor_rss)
    finally:
        lab.down(log=lambda _: None)


if __name__ == "__main__":
    main()
