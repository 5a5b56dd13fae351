"""Time to the first answered completion, three ways, on one two-node lab (root):

    sudo .venv/bin/python benchmarks/frameworks_startup.py [--trials 1]

The same deployment each time (examples/demo.yaml's model, pipeline 2 across spark1 and spark2, the lab's
stand-ins on a real Ray 2.60 cluster or a real gloo rendezvous), timed from the first step to the first chat
completion answered through the head, asked from spark2 every 0.1 s:
- seed: the seed guide's procedure by hand: `ray start --head ... --block` on spark1, `sleep 15`,
  `ray start --address ... --block` on spark2, `sleep 20`, then `vllm serve ... --distributed-executor-backend
  ray` on spark1 (each Ray node with a --temp-dir of its own: the lab's nodes share this machine's /tmp);
- sparkd-ray: `deploy up` of examples/vllm-ray.yaml (Ray head, Ray worker, sparkd waits for Ray's GPUs,
  vllm serve);
- sparkd-native: `deploy up` of examples/demo.yaml (vLLM's native multi-node launcher, no Ray).
For sparkd it also prints its own share: the request to the first unit's start (gates, plans, the peer
calls) and the spread of the units' starts. Figures are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sparkctl_client.client import Client
from sparkd.lab import lab
from sparkd.v1 import deployment_service_pb2

ROOT = Path(__file__).parents[1]
POLL = """
import json, sys, time, urllib.request
url, model = sys.argv[1], sys.argv[2]
body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
while True:
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=2)
        if json.load(r)["choices"]:
            print(time.monotonic(), flush=True)
            break
    except Exception:
        time.sleep(0.1)
"""
LAB_ENV = {"GLOO_SOCKET_IFNAME": "enp1s0f1np1", "NCCL_SOCKET_IFNAME": "=enp1s0f1np1"}


def in_node(node: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`argv` in `node`'s namespace, as its own process group (ended by its PID at the end)."""
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    return subprocess.Popen(
        ["ip", "netns", "exec", node, "env", *pairs, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def first_answer(port: int, model: str) -> subprocess.Popen[str]:
    return in_node("spark2", [sys.executable, "-c", POLL, f"http://192.168.100.1:{port}/v1/chat/completions", model])


def answered_at(poller: subprocess.Popen[str], timeout: float = 300) -> float:
    assert poller.stdout is not None
    out, _ = poller.communicate(timeout=timeout)
    return float(out.strip())


def end(procs: list[subprocess.Popen[str]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def seed(port: int = 8030) -> float:
    ray = str(lab.LAB_DIR / "frameworks/vllm/bin/ray")
    vllm = str(lab.LAB_DIR / "frameworks/vllm/bin/vllm")
    drain = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    procs = []
    t0 = time.monotonic()
    poller = first_answer(port, "demo-seed")
    try:
        head = ["start", "--head", "--node-ip-address=192.168.100.1", "--port=6379", "--num-gpus=1"]
        head += ["--disable-usage-stats", "--temp-dir=/tmp/sbseed1", "--block"]
        procs.append(in_node("spark1", [ray, *head], {"VLLM_HOST_IP": "192.168.100.1", **LAB_ENV, **drain}))
        time.sleep(15)
        worker = ["start", "--address=192.168.100.1:6379", "--node-ip-address=192.168.100.2", "--num-gpus=1"]
        worker += ["--disable-usage-stats", "--temp-dir=/tmp/sbseed2", "--block"]
        procs.append(in_node("spark2", [ray, *worker], {"VLLM_HOST_IP": "192.168.100.2", **LAB_ENV, **drain}))
        time.sleep(20)
        serve = ["serve", "/models/demo", "--served-model-name", "demo-seed", "--tensor-parallel-size", "1"]
        serve += ["--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray", "--port", str(port)]
        env = {"VLLM_HOST_IP": "192.168.100.1", "RAY_ADDRESS": "192.168.100.1:6379", **LAB_ENV}
        procs.append(in_node("spark1", [vllm, *serve], env))
        return answered_at(poller) - t0
    finally:
        poller.kill()
        end(procs)


def unit_start(unit: str) -> float:
    out = subprocess.run(
        ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", unit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return int(out or 0) / 1e6  # CLOCK_MONOTONIC: the same clock as time.monotonic() (one kernel)


def sparkd_way(head: Client, example: str, name: str, port: int, units: list[str]) -> tuple[float, float, float]:
    spec = (ROOT / "examples" / example).read_text()
    t0 = time.monotonic()
    poller = first_answer(port, name)
    try:
        create = deployment_service_pb2.CreateDeploymentRequest(spec_yaml=spec)
        head.call(head.deployments.CreateDeployment, create, timeout=300)
        total = answered_at(poller) - t0
    finally:
        poller.kill()
    starts = sorted(unit_start(u) for u in units)
    delete = deployment_service_pb2.DeleteDeploymentRequest(name=name)
    head.call(head.deployments.DeleteDeployment, delete, timeout=300)
    return total, starts[0] - t0, starts[-1] - starts[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the lab)")
    if lab.STATE.exists():
        sys.exit("a lab is up; run `sparkd lab down` first")
    try:
        lab.up(2, bare=False, log=lambda _: None)
        head = Client(str(lab.admin_socket("spark1")))
        ray_units = [
            "sparkd-demo-ray-rank0-ray.service",
            "sparkd-demo-ray-rank1.service",
            "sparkd-demo-ray-rank0.service",
        ]
        native_units = ["sparkd-demo-rank1.service", "sparkd-demo-rank0.service"]
        for trial in range(args.trials):
            print(f"trial {trial + 1}: seed procedure (sleep 15, sleep 20) ...", flush=True)
            print(f"seed_to_first_completion_s {seed():.2f}", flush=True)
            for way, example, name, port, units in (
                ("sparkd_ray", "vllm-ray.yaml", "demo-ray", 8010, ray_units),
                ("sparkd_native", "demo.yaml", "demo", 8000, native_units),
            ):
                total, before, spread = sparkd_way(head, example, name, port, units)
                print(
                    f"{way}_to_first_completion_s {total:.2f} (sparkd before the first unit {before:.2f} s, "
                    f"units started over {spread:.2f} s)",
                    flush=True,
                )
        head.close()
    finally:
        lab.down(log=lambda _: None)


if __name__ == "__main__":
    main()
