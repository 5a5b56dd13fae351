"""`sparkctl-client peer pair ...` and `peer status` through the CLI's own entry point, against in-thread
daemons paired on loopback (real pairing listener, mutual TLS, FakeHost under the engine)."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkctl_client.cli import main
from sparkd.v1 import peer_pb2, peer_service_pb2
from tests.api.conftest import Daemon, _free_port, close_all, loopback_cluster, loopback_node
from tests.api.test_events_stream import lines

ROOT = Path(__file__).parents[2]
#: A log line of a daemon (they run in this process and log to its stdout).
LOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What the CLI printed on stdout, without the daemons' log lines."""
    return "".join(line for line in capsys.readouterr().out.splitlines(keepends=True) if not LOG.match(line))


def cli(d: Daemon, *argv: str, ro: bool = False) -> int:
    socket = d.system.ro_socket if ro else d.system.admin_socket
    return main(["--socket", str(socket), *argv])


def connected(head: Daemon, timeout: float = 10) -> peer_service_pb2.ListPeersResponse:
    """The head's ListPeers once it has every peer CONNECTED."""
    deadline = time.monotonic() + timeout
    while True:
        r: peer_service_pb2.ListPeersResponse = head.admin.peers.ListPeers(peer_service_pb2.ListPeersRequest())
        if r.peers and all(p.state == peer_pb2.PEER_STATE_CONNECTED for p in r.peers):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"the head does not see its peers CONNECTED: {r}")
        time.sleep(0.05)


@pytest.fixture
def pair() -> Iterator[list[Daemon]]:
    """An unpaired head-to-be and worker-to-be on loopback."""
    peer_port, pairing_port = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    nodes = [loopback_node(i, peer_port, pairing_port) for i in range(2)]
    try:
        yield nodes
    finally:
        close_all(nodes)


def test_begin_on_the_head_and_join_on_the_worker_then_status_shows_it_connected(
    pair: list[Daemon], capsys: pytest.CaptureFixture[str]
) -> None:
    head, worker = pair
    capsys.readouterr()
    assert cli(head, "peer", "pair", "begin", "--ttl", "120") == 0
    begun = printed(capsys)
    found = re.search(r"head node ID: (\S+)\n  token: +(\S+)\non the worker, run:\n  (.+)\n", begun)
    assert found, begun
    node_id, token, command = found.groups()
    assert node_id == head.system.identity.node_id
    assert begun.startswith("pairing open on spark1 until ") and "(2 min, 5 tries)" in begun.splitlines()[0]
    assert command == f"sparkctl-client peer pair join --head {node_id} --token {token}"

    # The worker hears the head's announcement on its twin (what FakeDiscovery stands in for), then joins
    # with the command exactly as printed.
    worker.discovery.heard.append((head.system.peer.announcement, head.peer_target.split(":")[0], "enp1s0f1np1"))
    argv = command.split()[1:]
    assert cli(worker, *argv, "--timeout", "5") == 0
    assert printed(capsys) == (
        f"paired with head spark1 ({node_id}) as index 1\n"
        "next: sparkctl-client host apply (on this node and on the head), then sparkctl-client peer status\n"
    )

    connected(head)
    assert cli(head, "peer", "status", ro=True) == 0  # a read: the read-only socket serves it
    out = printed(capsys)
    assert out.startswith("pairing: HEAD index 0, 1 paired peer\n")  # the token was used up
    (row,) = [line for line in out.splitlines() if line.startswith("spark2 ")]
    assert row.split()[:5] == ["spark2", "1", "127.0.0.2", "WORKER", "CONNECTED"]
    assert f"spark2: node {worker.system.identity.node_id}, key " in out

    assert cli(worker, "-o", "json", "peer", "status") == 0
    listed = json.loads(printed(capsys))
    assert listed["pairing"]["role"] == "NODE_ROLE_WORKER" and listed["pairing"]["index"] == 1
    assert [(p["name"], p["index"], p["node_id"]) for p in listed["peers"]] == [("spark1", 0, node_id)]


def test_pairing_is_refused_on_the_read_only_socket(pair: list[Daemon], capsys: pytest.CaptureFixture[str]) -> None:
    head, _ = pair
    capsys.readouterr()
    assert cli(head, "peer", "pair", "begin", ro=True) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    r = head.admin.peers.ListPeers(peer_service_pb2.ListPeersRequest())
    assert not r.pairing.open and r.pairing.role == 0  # nothing happened


def test_begin_in_json_prints_the_response(pair: list[Daemon], capsys: pytest.CaptureFixture[str]) -> None:
    head, _ = pair
    capsys.readouterr()
    assert cli(head, "-o", "json", "peer", "pair", "begin") == 0
    r = json.loads(printed(capsys))
    assert r["node_id"] == head.system.identity.node_id and re.fullmatch(r"([a-z2-7]{5}-){3}[a-z2-7]{5}", r["token"])
    assert r["join_command"].endswith(f"--token {r['token']}") and r["expire_time"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reset_asks_before_forgetting_everything_and_forgets_one_peer_by_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = loopback_cluster(1)
    try:
        head, worker = nodes
        worker_id = worker.system.identity.node_id
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", Terminal("n\n"))
        with pytest.raises(SystemExit) as e:
            cli(head, "peer", "pair", "reset")
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert "forget every paired peer (spark2) and this node's role (HEAD)? It must be paired again. [y/N]" in err
        assert "nothing forgotten" in err
        assert head.admin.peers.ListPeers(peer_service_pb2.ListPeersRequest()).pairing.paired_peers == 1

        assert cli(head, "peer", "pair", "reset", worker_id) == 0  # one peer: no question
        assert printed(capsys) == f"forgot 1 peer: spark2 ({worker_id})\n"
        assert cli(head, "peer", "pair", "reset", "--yes") == 0
        assert printed(capsys).startswith("no paired peers to forget\nforgot this node's role")
        pairing = head.admin.peers.ListPeers(peer_service_pb2.ListPeersRequest()).pairing
        assert (pairing.role, pairing.paired_peers) == (0, 0)
    finally:
        close_all(nodes)


def test_watch_renders_again_on_a_pairing_event_and_exits_0_on_ctrl_c(pair: list[Daemon]) -> None:
    head, _ = pair
    argv = ["--socket", str(head.system.ro_socket), "-o", "json", "peer", "status", "--watch"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "sparkctl_client", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = lines(watcher.stdout)
        first = json.loads(out.get(timeout=20))
        assert first["pairing"]["open"] is False
        head.admin.peers.BeginPairing(peer_service_pb2.BeginPairingRequest(ttl_seconds=60))
        opened = json.loads(out.get(timeout=20))
        assert opened["pairing"]["open"] is True and opened["pairing"]["tries_left"] == 5
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=20) == 0
        assert watcher.stderr is not None and "Traceback" not in watcher.stderr.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
