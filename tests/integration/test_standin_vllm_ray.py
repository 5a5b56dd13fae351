"""The vLLM stand-in's Ray mode (sparkd/lab/standins/vllm_ray.py) on a real two-node Ray 2.60 cluster.

Two namespaces of this test's own, cabled by one veth pair (192.168.100.1 and .2, no default route), each a
node: a Ray node (`ray start --block` through the lab's wrapper of the real Ray CLI, as the lab's units run
it) in a PID namespace of its own, so that stopping a node ends all its processes and nothing else; on the
head, the stand-in (`vllm serve ... --distributed-executor-backend ray` through the lab's vllm wrapper) joins
the head node's PID namespace, as it shares the head's machine. Both run as an unprivileged user (nobody),
as the lab's units run as a dynamic user. HTTP goes to 127.0.0.1 inside the head's namespace. Nothing here
sends a packet from the root namespace; the finalizer kills every process (by PID) and removes the
namespaces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkd.lab import faults
from sparkd.lab import lab as lab_mod
from sparkd.lab.faults import Fault

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (pip install ray==2.60.0)")

HEAD_IP, WORKER_IP = "192.168.100.1", "192.168.100.2"
GCS_PORT, HTTP_PORT = 29501, 8010
SERVED = "meta/demo-ray"
#: The lab's deployment units run as a non-root (dynamic) user: so do the Ray nodes and the stand-in here.
NOBODY = 65534
AS_NOBODY = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
#: What the test's Ray nodes get: small, no dashboard (head only: a worker refuses the flag), no usage stats.
RAY_SMALL = ["--num-cpus", "1", "--object-store-memory", "200000000", "--disable-usage-stats"]
# One HTTP request from inside a namespace: argv method, path, JSON body or "", timeout; prints status, body.
CLIENT = """
import http.client, json, sys
method, path, body, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[5]), timeout=timeout)
try:
    conn.request(method, path, body=body.encode() or None, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    print(json.dumps({"status": r.status, "body": text}))
except (OSError, http.client.HTTPException) as e:
    print(json.dumps({"status": 0, "body": type(e).__name__}))
"""


def _children_by_stat(pid: int) -> list[str]:
    """Processes whose parent is `pid`, from every /proc/N/stat (field 4, after the command's parentheses)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            kids.append(stat.parent.name)
    return sorted(kids, key=int)


def child_of(pid: int, timeout: float = 10) -> int:
    """The first child of `pid` (the process an `unshare --fork` or `nsenter` runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            kids = []
        kids = kids or _children_by_stat(pid)  # where the children file is empty (seen in a fresh chroot)
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started no child within {timeout} s")


class Lab:
    """Two namespaces, the lab's wrappers, and the processes this test started (each ended by its PID)."""

    def __init__(self, tmp: Path) -> None:
        tag = f"rtest{os.getpid() % 100000}"
        self.head_ns, self.worker_ns = f"{tag}-a", f"{tag}-b"
        self.tmp = tmp  # the logs
        # What the units' user reads and writes, in a short path (Ray's unix sockets: 107 bytes at most):
        # the lab directory (wrappers, faults), each node's Ray temp dir and HOME.
        self.root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
        self.root.chmod(0o755)
        self.lab_dir, self.faults = self.root / "lab", self.root / "lab/faults"
        self.bin = self.lab_dir / "frameworks/vllm/bin"
        # The head's Ray temp dir is <root>/ray, as /tmp/ray in the lab's units: RAY_TMPDIR=<root> finds it.
        self.ray_tmp = {self.head_ns: self.root / "ray", self.worker_ns: self.root / "ray-worker"}
        for d in (*self.ray_tmp.values(), self.root / "home-head", self.root / "home-worker"):
            d.mkdir()
            os.chown(d, NOBODY, NOBODY)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.ray_pid: dict[str, int] = {}  # namespace -> its `ray start` (PID 1 of its PID namespace)
        self.inner: dict[int, int] = {}  # unshare's or nsenter's PID -> the PID of the process it runs

    def network(self) -> None:
        for ns in (self.head_ns, self.worker_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            ["ip", "link", "add", "rta0", "netns", self.head_ns, "type", "veth"]
            + ["peer", "name", "rtb0", "netns", self.worker_ns],
            check=True,
        )
        for ns, dev, ip in ((self.head_ns, "rta0", HEAD_IP), (self.worker_ns, "rtb0", WORKER_IP)):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev], check=True)
            for link in ("lo", dev):
                subprocess.run(["ip", "-n", ns, "link", "set", link, "up"], check=True)

    def env(self, host_ip: str, dev: str, **extra: str) -> dict[str, str]:
        """A unit's environment as sparkd gives it (per node), plus `extra`."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM")}
        home = self.root / ("home-head" if host_ip == HEAD_IP else "home-worker")
        env = dict(keep, HOME=str(home), VLLM_HOST_IP=host_ip, GLOO_SOCKET_IFNAME=dev, NCCL_SOCKET_IFNAME=dev)
        return dict(env, **extra)

    def _start(self, what: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        with (self.tmp / f"{n}-{what}.log").open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((what, proc))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = [p for _, p in self.procs].index(proc)
        return (self.tmp / f"{n}-{self.procs[n][0]}.log").read_text(errors="replace")

    def ray_node(self, ns: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        """`ray start ... --block` in `ns`, in a PID namespace of its own (killing the unshare ends it all)."""
        host_ip, dev = (HEAD_IP, "rta0") if ns == self.head_ns else (WORKER_IP, "rtb0")
        temp = self.ray_tmp[ns]
        argv = ["ip", "netns", "exec", ns, "unshare", "--pid", "--fork", "--mount-proc", *AS_NOBODY]
        argv += [str(self.bin / "ray"), "start", *args, "--node-ip-address", host_ip, "--num-gpus", "1"]
        proc = self._start(
            f"ray-{ns}", argv + [*RAY_SMALL, "--temp-dir", str(temp), "--block"], self.env(host_ip, dev, **env)
        )
        self.ray_pid[ns] = self.inner[proc.pid] = child_of(proc.pid)
        return proc

    def head(self, **env: str) -> subprocess.Popen[bytes]:
        return self.ray_node(self.head_ns, ["--head", "--port", str(GCS_PORT), "--include-dashboard", "false"], **env)

    def worker(self, **env: str) -> subprocess.Popen[bytes]:
        return self.ray_node(self.worker_ns, ["--address", f"{HEAD_IP}:{GCS_PORT}"], **env)

    def vllm(self, pp: int = 2, address: bool = True, **env: str) -> subprocess.Popen[bytes]:
        """The stand-in on the head: in the head's network and PID namespaces, as unit B of sparkd's plan;
        with RAY_ADDRESS, as sparkd sets it, or else with the head's Ray temp dir (RAY_TMPDIR)."""
        # --root, --wd=/: the target's root, and its / as the directory (entering a mount namespace otherwise leaves
        # them at the namespace's, which in a chroot are not the chroot's: under freshroot the driver's getcwd()
        # failed, and so did Ray's client).
        argv = [
            "nsenter",
            "-t",
            str(self.ray_pid[self.head_ns]),
            "--net",
            "--pid",
            "--mount",
            "--root",
            "--wd=/",
            "--",
            *AS_NOBODY,
        ]
        argv += [str(self.bin / "vllm"), "serve", "/models/demo", "--served-model-name", SERVED]
        argv += ["--tensor-parallel-size", "1", "--pipeline-parallel-size", str(pp)]
        argv += ["--distributed-executor-backend", "ray", "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
        where = {"RAY_ADDRESS": f"{HEAD_IP}:{GCS_PORT}"} if address else {"RAY_TMPDIR": str(self.root)}
        proc = self._start("vllm", argv, self.env(HEAD_IP, "rta0", **where, **env))
        self.inner[proc.pid] = child_of(proc.pid)
        return proc

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
        """(status, body) of one request to the head's 127.0.0.1 (status 0: no answer, e.g. a timeout)."""
        data = json.dumps(body) if body is not None else ""
        argv = ["ip", "netns", "exec", self.head_ns, sys.executable, "-c", CLIENT]
        out = subprocess.run(
            argv + [method, path, data, str(timeout), str(HTTP_PORT)], capture_output=True, timeout=timeout + 20
        )
        answer = json.loads(out.stdout)
        text = answer["body"]
        return answer["status"], (json.loads(text) if text.startswith("{") else text)

    def chat(self, timeout: float = 10) -> Any:
        body = {"model": SERVED, "messages": [{"role": "user", "content": "hello there"}]}
        return self.request("POST", "/v1/chat/completions", body, timeout)

    def wait_health(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.request("GET", "/health", timeout=1)[0] != 200:
            assert proc.poll() is None, f"the stand-in exited {proc.returncode}:\n{self.output(proc)}"
            assert time.monotonic() < deadline, f"no /health 200 within {timeout} s:\n{self.output(proc)}"
            time.sleep(0.1)

    def close(self) -> None:
        """Kills every process started here by its PID, newest first: what each unshare or nsenter runs, then
        it. Killing a Ray node's `ray start`, PID 1 of its PID namespace, kills every process in there (its
        unshare's --kill-child would not do: the death signal is cleared when setpriv changes the user).
        Then removes the namespaces."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:  # so its child is ours still (unshare and nsenter wait for theirs)
                try:
                    os.kill(self.inner[proc.pid], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.kill()
            proc.wait(timeout=10)
        for ns in (self.head_ns, self.worker_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        monkeypatch.setattr(lab_mod, "LAB_DIR", lab.lab_dir)
        lab_mod._write_standins()  # the lab's own wrappers: bin/vllm (the stand-in) and bin/ray (the real CLI)
        lab.network()
        yield lab
    finally:
        lab.close()


def wait_exit(lab: Lab, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until `proc` exits (it must, within `timeout`)."""
    t0 = time.monotonic()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout} s:\n{lab.output(proc)}") from None
    return time.monotonic() - t0


def test_vllm_on_ray_serves_through_both_nodes_and_dies_with_the_worker_node(cluster: Lab) -> None:
    t0 = time.monotonic()
    cluster.head()
    worker = cluster.worker(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # stops at once, not after 30 s
    vllm = cluster.vllm()
    cluster.wait_health(vllm)
    status, answer = cluster.chat()
    first = time.monotonic() - t0
    assert status == 200, answer
    content = answer["choices"][0]["message"]["content"]
    assert f"pipeline stage 0 ({HEAD_IP}) -> stage 1 ({WORKER_IP})." in content
    out = cluster.output(vllm)
    assert "placement group of 2 GPU bundle(s) ready (STRICT_SPREAD)" in out
    assert f"Ray stage actors: stage 0 on {HEAD_IP}, stage 1 on {WORKER_IP}" in out
    assert "Starting vLLM server on http://0.0.0.0:8010" in out
    status, listed = cluster.request("GET", "/v1/models")
    assert status == 200 and listed["data"][0]["id"] == SERVED
    body = {"model": SERVED, "prompt": "one two", "max_tokens": 3}
    status, completion = cluster.request("POST", "/v1/completions", body)
    assert status == 200 and completion["usage"]["completion_tokens"] == 3
    assert completion["choices"][0]["finish_reason"] == "length"
    status, metrics = cluster.request("GET", "/metrics")
    assert (
        status == 200
        and f'vllm:request_success_total{{model_name="{SERVED}",engine="0",finished_reason="stop"}} 1.0' in metrics
    )
    # The worker node's Ray stops (as `systemctl stop` would: SIGTERM to `ray start --block`).
    os.kill(cluster.ray_pid[cluster.worker_ns], signal.SIGTERM)
    died = wait_exit(cluster, vllm, 60)
    assert vllm.returncode == 1, cluster.output(vllm)
    assert f"Ray stage actor 1 ({WORKER_IP}) went away" in cluster.output(vllm)
    assert "exiting (engine dead)" in cluster.output(vllm)
    wait_exit(cluster, worker, 30)
    print(
        f"\nray start -> first answered completion: {first:.1f} s; worker's Ray stopped -> stand-in exit: {died:.2f} s"
    )


def test_a_placement_group_that_cannot_be_placed_times_out_with_vllms_wait_line(cluster: Lab) -> None:
    cluster.head()
    # Two bundles, one GPU in the cluster (no worker node).
    vllm = cluster.vllm(pp=2, SPARKD_LAB_RAY_PG_TIMEOUT="2")
    wait_exit(cluster, vllm, 60)
    out = cluster.output(vllm)
    assert vllm.returncode == 1, out
    assert "The number of required GPUs exceeds the total number of available GPUs" in out
    assert re.search(r"Waiting for creating a placement group of specs for \d+ seconds\. specs=", out)
    assert "are the same as VLLM_HOST_IP environment variable" in out
    assert "Cannot provide a placement group of placement_group_specs=[{'GPU': 1.0, 'node:192.168.100.1'" in out
    # One bundle, but VLLM_HOST_IP is not the Ray node's IP: bundle 0 (node:127.0.0.1) is never placed.
    vllm = cluster.vllm(pp=1, SPARKD_LAB_RAY_PG_TIMEOUT="2", VLLM_HOST_IP="127.0.0.1")
    wait_exit(cluster, vllm, 60)
    assert vllm.returncode == 1 and "'node:127.0.0.1': 0.001" in cluster.output(vllm)


def test_the_rank_1_fault_switch_acts_on_the_worker_nodes_stage_actor(cluster: Lab) -> None:
    cluster.head()
    worker = cluster.worker()
    rank1 = faults.fault_path(cluster.faults, SERVED, 1)
    faults.write_fault(rank1, Fault("crash_on_start"))
    vllm = cluster.vllm()
    wait_exit(cluster, vllm, 60)
    assert vllm.returncode == 1 and "a Ray stage actor failed to start" in cluster.output(vllm)
    faults.write_fault(rank1, Fault("none"))
    vllm = cluster.vllm(address=False)  # finds the cluster as `ray.init()` does: what the head's `ray start` recorded
    cluster.wait_health(vllm)
    assert f"connecting to the Ray cluster at {HEAD_IP}:{GCS_PORT}" in cluster.output(vllm)
    assert cluster.chat()[0] == 200
    faults.write_fault(rank1, Fault("wedge"))
    time.sleep(0.5)
    assert cluster.chat(timeout=2)[0] == 0  # held by the wedged actor
    assert cluster.request("GET", "/health")[0] == 200
    faults.write_fault(rank1, Fault("none"))
    assert cluster.chat()[0] == 200
    faults.write_fault(rank1, Fault("crash"))
    wait_exit(cluster, vllm, 30)
    assert vllm.returncode == 1 and "Ray stage actor 1 (192.168.100.2) went away" in cluster.output(vllm)
    logs = (cluster.ray_tmp[cluster.worker_ns] / "session_latest/logs").glob("worker-*.err")  # the actors' stderr
    assert any("EngineCore died unexpectedly (lab fault switch crash)" in p.read_text() for p in logs)
    assert worker.poll() is None  # the worker node's Ray lives on: only its actor crashed
