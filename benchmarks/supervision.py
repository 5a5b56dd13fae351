"""Supervision on a two-node lab (root): from a rank's death to READY again, and from a wedge to its detection.

    sudo .venv/bin/python benchmarks/supervision.py [--trials 10]

Brings up its own lab, deploys examples/demo.yaml and then, `--trials` times each:
- crash: the worker's rank is told to crash (`sparkd lab fault spark2 demo 1 crash`: it exits with status
  3, the head's rank follows it down); timed from the fault to the head reporting demo READY again after
  one more restart: detection, the supervisor's backoff (1 s for a first failure), the ordered restart
  (every rank stopped, the gates, the worker started, then the head) and the stand-in's own start-up.
- wedge: the head's rank is told to wedge (alive, `/health` 200, completions hang); timed from the fault
  to the head recording a failure whose cause is "wedged" (its serving probe: 2 failed one-token
  completions, one every 3 s, each given 3 s). The switch is cleared once the restart began (a wedge that
  clears itself before its restart is due is left serving) and READY awaited.
Between trials the deployment runs READY for 61 s once every 4 trials, so that the failures-in-a-row count
starts afresh (`Policy.stable_s`) and the circuit breaker never opens during the benchmark.

The head's status is polled every 50 ms through its admin socket. Prints min, median, p95 and max per
figure. Figures are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from sparkctl_client.client import Client
from sparkd.lab import faults, lab
from sparkd.v1 import deployment_pb2, deployment_service_pb2

POLL_S = 0.05
DEMO = Path(__file__).parents[1] / "examples/demo.yaml"
READY = deployment_pb2.DEPLOYMENT_STATE_READY


def demo(head: Client) -> deployment_pb2.Deployment:
    request = deployment_service_pb2.GetDeploymentRequest(name="demo")
    result: deployment_pb2.Deployment = head.call(head.deployments.GetDeployment, request, timeout=2).deployment
    return result


def until(what: str, probe: object, timeout: float) -> float:
    """Seconds until `probe()` is true (a poll that fails counts as false); raises on the timeout."""
    assert callable(probe)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if probe():
                return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"{what} not within {timeout} s")


def figure(name: str, values: list[float]) -> None:
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    print(
        f"{name} n={len(v)} min={v[0]:.3f} median={statistics.median(v):.3f} p95={p95:.3f} max={v[-1]:.3f}",
        flush=True,
    )


def settle(head: Client) -> int:
    """READY now and, when 3 failures in a row are counted, READY long enough (61 s) that the count starts
    again from 0, so that the breaker never opens. Returns the restarts so far."""
    until("demo READY", lambda: demo(head).state == READY, 120)
    if demo(head).supervision.failures_in_row >= 3:
        time.sleep(61)
        until("the failure count reset", lambda: demo(head).supervision.failures_in_row == 0, 30)
    return demo(head).supervision.restarts


def restarted(head: Client, count: int) -> bool:
    d = demo(head)
    return d.state == READY and d.supervision.restarts > count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the lab)")
    if lab.STATE.exists():
        sys.exit("a lab is up; run `sparkd lab down` first")
    try:
        lab.up(2, bare=False, log=lambda _: None)
        head = Client(str(lab.admin_socket("spark1")))
        request = deployment_service_pb2.CreateDeploymentRequest(spec_yaml=DEMO.read_text())
        head.call(head.deployments.CreateDeployment, request, timeout=120)

        crashes, ordinals = [], []
        for _ in range(args.trials):
            count = settle(head)
            ordinals.append(demo(head).supervision.failures_in_row + 1)
            t0 = time.monotonic()
            lab.fault("spark2", "demo", 1, faults.Fault("crash"), log=lambda _: None)
            until("demo READY after the crash", lambda c=count: restarted(head, c), 120)
            crashes.append(time.monotonic() - t0)
        figure("rank_death_to_ready_s", crashes)
        print(
            "rank_death_to_ready_s by failure in a row (backoff 1, 2, 4 s): "
            + ", ".join(f"#{n}: {t:.2f}" for n, t in zip(ordinals, crashes, strict=True)),
            flush=True,
        )

        wedges = []
        for _ in range(args.trials):
            count = settle(head)
            since = time.time()

            def wedged(since: float = since) -> bool:
                f = demo(head).supervision.last_failure
                return f.cause.startswith("wedged") and f.time.ToNanoseconds() / 1e9 >= since

            lab.fault("spark1", "demo", 0, faults.Fault("wedge"), log=lambda _: None)
            wedges.append(until("the wedge detected", wedged, 60))
            # Cleared once the restart began (a wedge that clears itself before its restart is left serving).
            until("the restart", lambda c=count: demo(head).supervision.restarts > c, 60)
            lab.fault("spark1", "demo", 0, faults.Fault("none"), log=lambda _: None)
            until("demo READY after the wedge", lambda c=count: restarted(head, c), 120)
        figure("wedge_to_detection_s", wedges)
        print(f"restarts_total {demo(head).supervision.restarts}", flush=True)
        head.close()
    finally:
        lab.down(log=lambda _: None)


if __name__ == "__main__":
    main()
