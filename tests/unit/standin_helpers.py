"""What the SGLang and TensorRT-LLM stand-in tests share: processes on 127.0.0.1, started and killed by handle."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVED = "meta/demo-8b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPARKD_LAB_FAULTS_DIR=str(tmp / "faults"))
    env.update(GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo")
    return dict(env, **extra)


class Procs:
    """Stand-in processes of one test; `close` kills those still running, each by its handle."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], module: str = "") -> subprocess.Popen[bytes]:
        """Runs `python -m <module> argv` (or argv itself, without a module)."""
        n = len(self.procs)
        cmd = [sys.executable, "-m", module, *argv] if module else argv
        with (self.tmp / f"out{n}").open("wb") as out, (self.tmp / f"err{n}").open("wb") as err:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = self.procs.index(proc)
        return (self.tmp / f"out{n}").read_text() + (self.tmp / f"err{n}").read_text()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait(timeout=5)


def request(port: int, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    """(status, body): JSON decoded when the answer says it is JSON, else text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read().decode()
        return r.status, (json.loads(text) if r.getheader("Content-Type", "").startswith("application/json") else text)
    finally:
        conn.close()


def chat(port: int, timeout: float = 5, **extra: Any) -> Any:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hello there"}], **extra}
    status, answer = request(port, "POST", "/v1/chat/completions", body, timeout)
    assert status == 200, answer
    return answer


def wait_status(procs: Procs, proc: subprocess.Popen[bytes], port: int, path: str, timeout: float = 20) -> float:
    """Seconds until GET path answers 200; fails if `proc` exits first or it takes too long."""
    t0 = time.monotonic()
    while True:
        try:
            if request(port, "GET", path, timeout=1)[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        assert proc.poll() is None, f"stand-in exited {proc.returncode}:\n{procs.output(proc)}"
        assert time.monotonic() - t0 < timeout, f"no 200 from {path} within {timeout} s:\n{procs.output(proc)}"
        time.sleep(0.05)


def eventually(what: str, check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
