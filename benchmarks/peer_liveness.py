"""Peer liveness on a two-node lab (root): how fast a dead peer is noticed, how fast a returning one is back,
and whether short blips ever raise a false alarm.

    sudo .venv/bin/python benchmarks/peer_liveness.py [--trials 20]

Faults, each `--trials` times, all inside the lab's namespaces:
- flap: twin A of spark2 goes down (`ip link set ... down` in spark2's namespace), held until the head
  declares spark2 DISCONNECTED, then up again: detection time, and re-rendezvous time after the link returns.
- stop: spark2's daemon is paused (SIGSTOP) until the head declares it down, then resumed (SIGCONT):
  detection time, and the time to be CONNECTED again after the resume.
- kill: spark2's daemon is killed (SIGKILL; systemd restarts it): the time until the head sees the new
  daemon's session (a new epoch), and how often the head declared the peer down meanwhile.
- blips that must never declare a peer down: a 1 s SIGSTOP of spark2's daemon, and 1 s of 50 % loss on
  spark2's twin A (nftables `numgen random mod 2 == 0 drop` inside spark2's namespace; this kernel has no
  netem). The false peer-down events are counted.

Times are measured from the fault to the head's ListPeers showing the new state, polled every 10 ms.
Prints one line per figure: min, median, p95, max. Figures are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sparkctl_client.client import Client
from sparkd.lab import fixtures, lab
from sparkd.v1 import peer_pb2, peer_service_pb2

POLL_S = 0.01
CONNECTED, DISCONNECTED = peer_pb2.PEER_STATE_CONNECTED, peer_pb2.PEER_STATE_DISCONNECTED


def state(head: Client, name: str = "spark2") -> int:
    peers = head.call(head.peers.ListPeers, peer_service_pb2.ListPeersRequest(), timeout=2).peers
    return next((p.state for p in peers if p.name == name), 0)


def wait_for(head: Client, wanted: int, timeout: float) -> float:
    """Seconds until spark2 is in `wanted` state on the head (polling), or raises."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if state(head) == wanted:
                return time.monotonic() - t0
        except Exception:  # a poll that failed is a poll that did not see it
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"spark2 not {peer_pb2.PeerState.Name(wanted)} within {timeout} s")


def epoch(head: Client, name: str = "spark2") -> int:
    peers = head.call(head.peers.ListPeers, peer_service_pb2.ListPeersRequest(), timeout=2).peers
    return next((int(p.epoch) for p in peers if p.name == name), 0)


def daemon_pid(node: str) -> int:
    """The lab daemon of `node`: the process in its namespace running its config (this lab started it)."""
    config = str(lab.node_dir(node) / "sparkd.toml")
    pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True, check=True).stdout.split()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sparkd" in argv and config.encode() in argv and b"run" in argv:
            return int(pid)
    raise RuntimeError(f"no sparkd daemon found in namespace {node}")


def ns(node: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", node, *argv], check=True, capture_output=True)


def figure(name: str, values: list[float]) -> None:
    if not values:
        print(f"{name} n=0")
        return
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    print(
        f"{name} n={len(v)} min={v[0]:.3f} median={statistics.median(v):.3f} p95={p95:.3f} max={v[-1]:.3f}",
        flush=True,
    )


def trial(fault: Callable[[], None], heal: Callable[[], None], head: Client) -> tuple[float, float]:
    """(detection s, recovery s): fault, wait for DISCONNECTED, heal, wait for CONNECTED."""
    wait_for(head, CONNECTED, 30)
    time.sleep(1.0)  # a settled session
    t0 = time.monotonic()
    fault()
    wait_for(head, DISCONNECTED, 15)
    detect = time.monotonic() - t0
    t1 = time.monotonic()
    heal()
    wait_for(head, CONNECTED, 30)
    return detect, time.monotonic() - t1


def count_false_downs(head: Client, blip: Callable[[], None], trials: int) -> int:
    false = 0
    for _ in range(trials):
        wait_for(head, CONNECTED, 30)
        time.sleep(1.0)
        blip()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:  # the blip, then a whole timeout afterwards
            if state(head) != CONNECTED:
                false += 1
                wait_for(head, CONNECTED, 30)
                break
            time.sleep(POLL_S)
    return false


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the lab)")
    if lab.STATE.exists():
        sys.exit("a lab is up; run `sparkd lab down` first")
    n = args.trials
    try:
        lab.up(2, bare=False, log=lambda _: None)
        head = Client(str(lab.admin_socket("spark1")))
        twin = fixtures.TWIN_A

        def link(up: bool) -> Callable[[], None]:
            return lambda: ns("spark2", "ip", "link", "set", twin, "up" if up else "down")

        only = os.environ.get("ONLY", "")
        flaps = [trial(link(False), link(True), head) for _ in range(0 if only else n)]
        figure("flap_detect_s", [d for d, _ in flaps])
        figure("flap_rerendezvous_s", [r for _, r in flaps])

        stops = []
        for _ in range(0 if only else n):
            pid = daemon_pid("spark2")
            stops.append(
                trial(
                    functools.partial(os.kill, pid, signal.SIGSTOP),
                    functools.partial(os.kill, pid, signal.SIGCONT),
                    head,
                )
            )
        figure("stop_detect_s", [d for d, _ in stops])
        figure("stop_reconnect_after_resume_s", [r for _, r in stops])

        # A killed daemon is restarted by systemd (Restart=on-failure) and rendezvous again, usually before
        # the head's 3 s timeout: the head then sees a new session (a new epoch), not a peer down.
        new_session, seen_down = [], 0
        for _ in range(n):
            wait_for(head, CONNECTED, 30)
            time.sleep(2.5)  # under systemd's start limit (5 starts in 10 s) for the restarts
            before = epoch(head)
            t0 = time.monotonic()
            os.kill(daemon_pid("spark2"), signal.SIGKILL)
            down = False
            while epoch(head) == before or state(head) != CONNECTED:
                down = down or state(head) == DISCONNECTED
                if time.monotonic() - t0 > 30:
                    raise TimeoutError("the killed daemon never came back")
                time.sleep(POLL_S)
            new_session.append(time.monotonic() - t0)
            seen_down += down
        figure("kill_to_new_session_s", new_session)
        print(f"kill_seen_as_peer_down {seen_down} of {n}", flush=True)

        def pause_1s() -> None:
            pid = daemon_pid("spark2")
            os.kill(pid, signal.SIGSTOP)
            time.sleep(1.0)
            os.kill(pid, signal.SIGCONT)

        print(f"false_downs_1s_pause {count_false_downs(head, pause_1s, n)} of {n}", flush=True)

        rules = lab.LAB_DIR / "loss.nft"
        rules.write_text(
            "table inet sparkbench {\n"
            f'  chain o {{ type filter hook output priority 0; oifname "{twin}" numgen random mod 2 == 0 drop; }}\n'
            f'  chain i {{ type filter hook input priority 0; iifname "{twin}" numgen random mod 2 == 0 drop; }}\n'
            "}\n"
        )

        def loss_1s() -> None:
            ns("spark2", "nft", "-f", str(rules))
            time.sleep(1.0)
            ns("spark2", "nft", "delete", "table", "inet", "sparkbench")

        print(f"false_downs_1s_50pct_loss {count_false_downs(head, loss_1s, n)} of {n}", flush=True)
        head.close()
    finally:
        lab.down(log=lambda _: None)


if __name__ == "__main__":
    main()
