"""Walking-skeleton figures on a two-node lab (root): bring-up, deploy-to-READY, API latency, daemon idle cost.

    sudo .venv/bin/python benchmarks/lab_skeleton.py [--calls 300] [--idle 10]

Prints one line per figure. Figures are measurements of this machine at this moment, never assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from status_load import cpu_ticks, host_pids, rss_kib  # this directory: the benchmarks share their probes

from sparkctl_client.client import Client
from sparkd.lab import lab
from sparkd.v1 import deployment_pb2, deployment_service_pb2, status_service_pb2

ROOT = Path(__file__).parents[1]
CLK = os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    if lab.STATE.exists():
        sys.exit("a lab is up; run `sparkd lab down` first")
    try:
        t0 = time.monotonic()
        lab.up(2, bare=False, log=lambda _: None)
        print(f"lab_up_to_peers_connected_s {time.monotonic() - t0:.2f}")

        head = Client(str(lab.admin_socket("spark1")))
        spec = (ROOT / "examples/demo.yaml").read_text()
        t0 = time.monotonic()
        head.call(head.deployments.CreateDeployment, deployment_service_pb2.CreateDeploymentRequest(spec_yaml=spec))
        while True:
            d = head.call(head.deployments.GetDeployment, deployment_service_pb2.GetDeploymentRequest(name="demo"))
            if d.deployment.state == deployment_pb2.DEPLOYMENT_STATE_READY:
                break
            time.sleep(0.05)
        print(f"deploy_to_ready_s {time.monotonic() - t0:.2f}")

        latencies = []
        for _ in range(args.calls):
            t = time.perf_counter()
            head.call(head.status.GetStatus, status_service_pb2.GetStatusRequest())
            latencies.append((time.perf_counter() - t) * 1000)
        latencies.sort()
        print(
            f"get_status_ms p50 {statistics.median(latencies):.2f} p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} "
            f"(n={args.calls}, with a READY deployment: includes a /health probe)"
        )

        time.sleep(2)  # let the burst above settle
        for node in lab.LabState.load().nodes:  # type: ignore[union-attr]
            pids = host_pids(lab.daemon_unit(node))
            before = cpu_ticks(pids)
            time.sleep(args.idle)
            after = cpu_ticks(pids)
            cpu = (after - before) / CLK / args.idle * 100
            print(
                f"daemon_idle_{node} rss_mib {rss_kib(pids) / 1024:.1f} cpu_percent {cpu:.2f} "
                f"(over {args.idle:.0f} s, heartbeat every 2 s, one READY deployment)"
            )
        head.close()
    finally:
        lab.down(log=lambda _: None)


if __name__ == "__main__":
    main()
