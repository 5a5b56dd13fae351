"""`sparkctl-client peer ...`: what each command prints from real response messages, the argument checks,
the refusal to reset everything without a terminal, and `peer status --watch` against a scripted client
(the daemon's side is tests/api/test_cli_peer.py)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from sparkctl_client.cli import main, parser
from sparkctl_client.client import ClientError
from sparkctl_client.commands import peer, render
from sparkd.v1 import event_pb2, event_service_pb2, peer_pb2, peer_service_pb2

NOW = 1_750_000_000.0
HEAD_ID, WORKER_ID = "abcdefghijklmnop", "qrstuvwxyz234567"
TOKEN = "abcde-fghij-klmno-pqrst"


def stamp(at: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(at * 1e9))
    return t


def local(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")


def worker(**fields: Any) -> peer_pb2.Peer:
    values: dict[str, Any] = {
        "node_id": WORKER_ID,
        "name": "spark2",
        "role": "NODE_ROLE_WORKER",
        "address": "192.168.100.2",
        "state": "PEER_STATE_CONNECTED",
        "sparkd_version": "0.1.0",
        "last_seen_time": stamp(NOW - 3),
        "rtt_us": 420,
        "index": 1,
        "epoch": 7,
        "protocol_version": 2,
        "boot_id": "0123456789abcdef",
        "key_fingerprint": "f" * 64,
        **fields,
    }
    return peer_pb2.Peer(**values)


def test_begin_prints_the_token_the_head_the_expiry_and_the_worker_command() -> None:
    join = f"sparkctl-client peer pair join --head {HEAD_ID} --token {TOKEN}"
    r = peer_service_pb2.BeginPairingResponse(
        token=TOKEN, node_id=HEAD_ID, expire_time=stamp(NOW + 900), join_command=join
    )
    assert render.pairing_begun(r, "spark1", 5, NOW) == (
        f"pairing open on spark1 until {local(NOW + 900)} (15 min, 5 tries)\n"
        f"  head node ID: {HEAD_ID}\n"
        f"  token:        {TOKEN}\n"
        "on the worker, run:\n"
        f"  {join}"
    )
    short = render.pairing_begun(peer_service_pb2.BeginPairingResponse(expire_time=stamp(NOW + 45)), now=NOW)
    assert short.splitlines()[0] == f"pairing open until {local(NOW + 45)} (45 s)"  # name and tries unknown


def test_join_prints_the_head_the_index_and_the_next_step() -> None:
    r = peer_service_pb2.JoinPairingResponse(head=peer_pb2.Peer(node_id=HEAD_ID, name="spark1"), index=2)
    assert render.paired(r) == (
        f"paired with head spark1 ({HEAD_ID}) as index 2\n"
        "next: sparkctl-client host apply (on this node and on the head), then sparkctl-client peer status"
    )
    bare = render.paired(peer_service_pb2.JoinPairingResponse(index=1), HEAD_ID)
    assert bare.splitlines()[0] == f"paired with head ? ({HEAD_ID}) as index 1"


def test_reset_names_what_was_forgotten() -> None:
    one = peer_service_pb2.ResetPairingResponse(forgotten=[WORKER_ID])
    assert render.forgotten(one, {WORKER_ID: "spark2"}, everything=False) == f"forgot 1 peer: spark2 ({WORKER_ID})"
    both = peer_service_pb2.ResetPairingResponse(forgotten=[WORKER_ID, HEAD_ID])
    assert render.forgotten(both, {}, everything=True) == (
        f"forgot 2 peers: {WORKER_ID}, {HEAD_ID}\n"
        "forgot this node's role: pair it again (`peer pair begin` on a head, `peer pair join` on a worker)"
    )
    assert render.forgotten(peer_service_pb2.ResetPairingResponse(), {}, everything=False) == "nothing forgotten"
    assert render.forgotten(peer_service_pb2.ResetPairingResponse(), {}, everything=True).startswith(
        "no paired peers to forget\nforgot this node's role"
    )


def test_peer_status_shows_pairing_the_table_versions_and_differences_blocking_first() -> None:
    versions = peer_pb2.PeerVersions(
        sparkd="0.1.0",
        frameworks=["torch==2.9.0", "vllm==0.10.0"],
        nccl_sha256="0123456789abcdef" * 4,
        driver="580.95.05",
        cuda="13.0",
        kernel="6.11.0-1016-nvidia",
    )
    differences = [
        peer_pb2.VersionDifference(field="kernel", local="6.11.0-1016-nvidia", remote="6.11.0-1015-nvidia"),
        peer_pb2.VersionDifference(
            field="frameworks.vllm", local="0.10.1", remote="0.10.0", blocking=True, message="spark2 differs; align"
        ),
    ]
    changed = peer_pb2.Peer(
        node_id=HEAD_ID, name="spark3", role="NODE_ROLE_WORKER", address="192.168.100.3", index=2,
        state="PEER_STATE_KEY_CHANGED", last_error="presents another key",
    )  # fmt: skip
    r = peer_service_pb2.ListPeersResponse(
        peers=[worker(versions=versions, differences=differences), changed],
        pairing=peer_service_pb2.Pairing(
            role="NODE_ROLE_HEAD", open=True, expire_time=stamp(NOW + 600), tries_left=4, paired_peers=2
        ),
    )
    assert render.peer_status(r, NOW) == "\n".join(
        [
            f"pairing: HEAD index 0, open until {local(NOW + 600)} (in 10 min, 4 tries left), 2 paired peers",
            "",
            "PEER    INDEX  ADDRESS        ROLE    STATE        EPOCH  VERSION  RTT    LAST SEEN  LAST ERROR",
            "spark2  1      192.168.100.2  WORKER  CONNECTED    7      0.1.0    0.4ms  3s ago     -",
            "spark3  2      192.168.100.3  WORKER  KEY_CHANGED  -      -        -      never      presents another key",
            "",
            f"spark2: node {WORKER_ID}, key ffffffffffffffff, protocol 2, boot 01234567",
            "  versions: sparkd 0.1.0, torch==2.9.0, vllm==0.10.0, driver 580.95.05, CUDA 13.0, "
            "kernel 6.11.0-1016-nvidia, nccl 0123456789ab",
            "  BLOCKING frameworks.vllm: this node 0.10.1, spark2 0.10.0: spark2 differs; align",
            "  warning  kernel: this node 6.11.0-1016-nvidia, spark2 6.11.0-1015-nvidia",
            "",
            f"spark3: node {HEAD_ID}",
            "  KEY CHANGED: it presents a key other than the one pinned at pairing; refused. If it was reinstalled, "
            f"run `sparkctl-client peer pair reset {HEAD_ID}` here and pair again; otherwise find out who answers "
            "on its address",
        ]
    )


def test_the_pairing_line_of_an_unpaired_and_of_a_pinned_node() -> None:
    unpaired = render.pairing_line(peer_service_pb2.Pairing(), NOW)
    assert unpaired == (
        "pairing: not paired (no role yet), 0 paired peers: `peer pair begin` on the head, then `peer pair join` "
        "on each worker"
    )
    pinned = peer_service_pb2.Pairing(role="NODE_ROLE_WORKER", index=1, pinned=True, paired_peers=1)
    assert render.pairing_line(pinned, NOW) == "pairing: WORKER index 1 (pinned in the config), 1 paired peer"


def test_the_peers_table_of_status_and_lab_status_still_takes_a_bare_list() -> None:
    assert render.peers([]) == "no peers"
    (row,) = render.peers([peer_pb2.Peer(address="192.168.100.2")]).splitlines()[1:]
    assert row.split() == ["?", "0", "192.168.100.2", "UNSPECIFIED", "UNSPECIFIED", "-", "-", "-", "never", "-"]
    unknown = render.peers([worker(state=99, last_seen_time=stamp(NOW - 600))], NOW)  # a newer daemon's state
    assert unknown.splitlines()[1].split()[4] == "99" and "10 min ago" in unknown


def test_text_a_peer_sends_cannot_reach_the_terminal() -> None:
    sneaky = worker(name="x\x1b[2J", last_error="bad\nline", versions=peer_pb2.PeerVersions(kernel="6\x07"))
    text = render.peer_status(peer_service_pb2.ListPeersResponse(peers=[sneaky]), NOW)
    assert "\x1b" not in text and "\x07" not in text
    assert "x\\x1b[2J" in text and "bad\\nline" in text and "kernel 6\\x07" in text


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_reset_of_everything_without_a_terminal_or_yes_is_refused_before_calling_the_daemon(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", NotATerminal("y\n"))
    with pytest.raises(SystemExit) as e:
        main(["--socket", "/nonexistent/sparkd.sock", "peer", "pair", "reset"])
    assert e.value.code == 2  # not 3: it never tried the (absent) socket
    err = capsys.readouterr().err
    assert "forgets every peer and this node's role" in err and "pass --yes" in err


@pytest.mark.parametrize(
    "argv,complaint",
    [
        (["join", "--head", "tooshort", "--token", TOKEN], "--head: must be a 16-character node ID"),
        (["join", "--head", HEAD_ID, "--token", "abcde-fghij"], "--token: must be the 20-character token"),
        (["join", "--head", HEAD_ID, "--token", "abcde-fghij-klmno-pqrs1"], "--token: must be the 20-character"),
        (["join", "--head", HEAD_ID], "the following arguments are required: --token"),
        (["join", "--head", HEAD_ID, "--token", TOKEN, "--timeout", "0"], "must be from 1 to 60 seconds, got 0"),
        (["join", "--head", HEAD_ID, "--token", TOKEN, "--timeout", "61"], "must be from 1 to 60 seconds, got 61"),
        (["begin", "--ttl", "901"], "--ttl: must be from 1 to 900 seconds, got 901"),
        (["begin", "--ttl", "ten"], "--ttl: must be a whole number of seconds, got 'ten'"),
        (["reset", "abcdefghijklmno1"], "NODE_ID: must be a 16-character node ID"),
        ([], "required: step"),
    ],
)
def test_bad_arguments_are_usage_errors_naming_the_argument(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["peer", "pair", *argv])
    assert e.value.code == 2
    assert complaint in capsys.readouterr().err


def test_good_arguments_are_normalised_and_defaulted() -> None:
    args = parser().parse_args(["peer", "pair", "join", "--head", HEAD_ID.upper(), "--token", TOKEN.upper()])
    assert (args.head, args.token, args.timeout) == (HEAD_ID, TOKEN.upper(), 10)  # the daemon takes either case
    assert parser().parse_args(["peer", "pair", "begin"]).ttl == 0  # 0: the daemon's default, 15 minutes
    assert parser().parse_args(["peer", "pair", "reset"]).node_id is None
    assert parser().parse_args(["peer", "status", "-w"]).watch is True


class Scripted:
    """A stand-in for Client: ListPeers answers `listed` in turn; WatchEvents plays `streams` in turn (a
    list of responses, or a ClientError to raise); when either runs out the watch is interrupted (Ctrl-C)."""

    socket_path = "/run/sparkd/sparkd.sock"

    def __init__(self, listed: list[peer_service_pb2.ListPeersResponse], streams: list[Any]) -> None:
        self.listed, self.streams = listed, streams
        self.peers = type("Peers", (), {"ListPeers": "ListPeers"})()
        self.events = type("Events", (), {"WatchEvents": "WatchEvents"})()
        self.requests: list[event_service_pb2.WatchEventsRequest] = []

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if not self.listed:
            raise KeyboardInterrupt
        return self.listed.pop(0)

    def stream(self, method: str, request: Any, timeout: float | None = None) -> Iterator[Any]:
        self.requests.append(request)
        if not self.streams:
            raise KeyboardInterrupt
        step = self.streams.pop(0)
        if isinstance(step, ClientError):
            raise step
        yield from step


def event(position: int, kind: str = "peer") -> event_service_pb2.WatchEventsResponse:
    return event_service_pb2.WatchEventsResponse(
        event=event_pb2.Event(position=position, stream_id="s1", kind=kind, subject="spark2", state="CONNECTED")
    )


def listed(state: str) -> peer_service_pb2.ListPeersResponse:
    return peer_service_pb2.ListPeersResponse(peers=[worker(state=state)])


def watch(client: Scripted, json: bool = False) -> list[str]:
    out = NotATerminal()
    with pytest.raises(KeyboardInterrupt):
        peer.Watch(client, json, out).run()  # type: ignore[arg-type]
    return [block for block in out.getvalue().split("peer status at ") if block]


def test_watch_renders_at_start_on_each_event_and_after_reconnecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)  # the backoff and the poll interval
    states = ["CONNECTING", "CONNECTED", "DISCONNECTED", "CONNECTED"]
    client = Scripted(
        [listed(f"PEER_STATE_{s}") for s in states],
        [
            [event(3)],  # the catch-up: skip what is retained
            [event(5), event(6, "pairing")],  # following: one render each
            ClientError(grpc.StatusCode.UNAVAILABLE, "socket closed"),  # the daemon went away
            [],  # back: catch up (nothing new), render, follow
        ],
    )
    blocks = watch(client)
    assert [b.split("\n")[5].split()[4] for b in blocks] == states
    assert [(r.after_position, r.stream_id, r.follow, list(r.kinds)) for r in client.requests] == [
        (0, "", False, ["peer", "pairing"]),
        (3, "s1", True, ["peer", "pairing"]),
        (6, "s1", False, ["peer", "pairing"]),
        (6, "s1", False, ["peer", "pairing"]),
        (6, "s1", True, ["peer", "pairing"]),
    ]
    assert "unreachable (UNAVAILABLE: socket closed); reconnecting" in capsys.readouterr().err


def test_watch_falls_back_to_polling_list_peers_where_the_daemon_has_no_watch_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)  # the backoff and the poll interval
    states = ["CONNECTED", "CONNECTED", "DISCONNECTED"]
    client = Scripted(
        [listed(f"PEER_STATE_{s}") for s in states], [ClientError(grpc.StatusCode.UNIMPLEMENTED, "unknown method")]
    )
    out = NotATerminal()
    with pytest.raises(KeyboardInterrupt):
        peer.Watch(client, True, out).run()  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()  # -o json: one response a line, and off a terminal only the changes
    assert len(lines) == 2 and '"PEER_STATE_CONNECTED"' in lines[0] and '"PEER_STATE_DISCONNECTED"' in lines[1]
    assert len(client.requests) == 1
