"""Discovery between two namespaces cabled like two Sparks, before any IPv4 address exists.

Each namespace holds the two interconnect twins of the `pair` fixture (veth, joined twin to twin)
and a third veth pair, `mgmt0`, standing in for the management network. Each node's real
`Discovery` runs in a child process inside its namespace (`ip netns exec`, as the daemon would),
driven over stdin/stdout by JSON lines. Frames are captured with AF_PACKET sockets inside the
namespaces, so "nothing was sent there" is checked on the wire, not inferred from the code.
Nothing here sends a packet from the root namespace.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from sparkd.lab.fixtures import TWIN_A, TWIN_B
from sparkd.peer.announcement import Announcement, encode
from sparkd.peer.discovery import GROUP, PORT
from tests.integration.conftest import Pair
from tests.unit.test_discovery_codec import certificate

ROOT = Path(__file__).parents[2]
MGMT = "mgmt0"
ID_A, ID_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
INTERVAL_S, EXPIRE_S = 0.5, 2.0
REPLY_TIMEOUT_S = 30.0

# The node: a real Discovery, commanded by JSON lines on stdin; logs go to stderr.
NODE = """
import asyncio, dataclasses, json, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from sparkd.peer.announcement import Announcement
from sparkd.peer.discovery import Discovery

def out(obj):
    sys.stdout.write(json.dumps(obj) + "\\n")
    sys.stdout.flush()

def seen(s):
    if s is None:
        return None
    return {"announcement": dataclasses.asdict(s.announcement), "address": s.address, "netdev": s.netdev,
            "age": time.monotonic() - s.last_seen}

async def main():
    cfg = json.loads(sys.argv[1])
    netdevs, own = list(cfg["netdevs"]), Announcement(**cfg["announcement"])
    async def current():
        return list(netdevs)
    d = Discovery(current, lambda: own, interval_s=cfg["interval_s"], expire_s=cfg["expire_s"])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    t0 = time.monotonic()
    await d.start()
    out({"started": True})
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["op"] == "netdevs":
            netdevs[:] = cmd["value"]
            out({"ok": True})
        elif cmd["op"] == "wait":
            s = await d.wait_for(cmd["node_id"], cmd["timeout"])
            out({"sighting": seen(s), "elapsed": time.monotonic() - t0})
        elif cmd["op"] == "state":
            out({"sightings": [seen(s) for s in d.sightings()], "sockets": d.netdevs(),
                 "malformed": d.malformed, "ignored": d.ignored})
        else:
            break
    await d.stop()
    out({"stopped": True})

asyncio.run(main())
"""

# A capture on some interfaces until stdin closes: per interface, all frames, discovery UDP frames
# by direction (to PORT, no extension headers: what Discovery sends), and frames naming the group
# (its multicast MAC, or its address anywhere: MLD reports included).
CAPTURE = """
import json, select, socket, struct, sys
group, mac = socket.inet_pton(socket.AF_INET6, sys.argv[1]), bytes.fromhex("3333") + socket.inet_pton(
    socket.AF_INET6, sys.argv[1])[-4:]
port = struct.pack("!H", int(sys.argv[2]))
socks, counts = {}, {}
for name in sys.argv[3:]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((name, 3))
    s.setblocking(False)
    socks[s], counts[name] = name, {"frames": 0, "in": 0, "out": 0, "group": 0}
print("ready", flush=True)
while True:
    ready = select.select([sys.stdin, *socks], [], [])[0]
    for s in ready:
        if s is sys.stdin:
            continue
        while True:
            try:
                frame, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            c = counts[socks[s]]
            c["frames"] += 1
            if frame[:6] == mac or group in frame:
                c["group"] += 1
            if frame[12:14] == b"\\x86\\xdd" and len(frame) >= 58 and frame[20] == 17 and frame[56:58] == port:
                c["out" if addr[2] == socket.PACKET_OUTGOING else "in"] += 1
    if sys.stdin in ready:
        break
print(json.dumps(counts), flush=True)
"""

# Sends datagrams to the group out of one interface (optionally from a given source address); JSON on stdin.
INJECT = """
import json, socket, sys
cfg = json.load(sys.stdin)
index = socket.if_nametoindex(cfg["ifname"])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg["ifname"].encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
if cfg["source"]:
    s.bind((cfg["source"], 0, 0, index))
for data in cfg["datagrams"]:
    s.sendto(bytes.fromhex(data), (cfg["group"], cfg["port"], 0, index))
"""


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, *argv]


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def announcement(node_id: str, name: str) -> Announcement:
    return Announcement(node_id, name, "", True, certificate(), "0.1.0")


class Node:
    """A Discovery in a child process inside `ns`."""

    def __init__(self, ns: str, ann: Announcement, netdevs: list[str], log: Path) -> None:
        self.ns, self.announcement, self.log = ns, ann, log
        cfg = {"netdevs": netdevs, "announcement": asdict(ann), "interval_s": INTERVAL_S, "expire_s": EXPIRE_S}
        self.proc = subprocess.Popen(
            in_ns(ns, "-c", NODE, json.dumps(cfg)),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        assert self.reply() == {"started": True}

    def reply(self) -> Any:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)[0]:
            pytest.fail(f"{self.ns}: no answer in {REPLY_TIMEOUT_S} s; log:\n{self.log.read_text()}")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"{self.ns}: the node exited; log:\n{self.log.read_text()}")
        return json.loads(line)

    def ask(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self.reply()

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.ask("state")
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.ask("stop") == {"stopped": True}
                self.proc.wait(5)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()  # by PID: Popen knows it
                    self.proc.wait()


class Capture:
    """AF_PACKET capture on some interfaces of `ns`, from construction until `result()`."""

    def __init__(self, ns: str, *ifnames: str) -> None:
        self.proc = subprocess.Popen(
            in_ns(ns, "-c", CAPTURE, GROUP, str(PORT), *ifnames),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def result(self) -> dict[str, dict[str, int]]:
        out, _ = self.proc.communicate("stop\n", timeout=10)
        counts: dict[str, dict[str, int]] = json.loads(out)
        return counts

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def inject(ns: str, ifname: str, datagrams: list[bytes], source: str = "") -> None:
    cfg = {"ifname": ifname, "datagrams": [d.hex() for d in datagrams], "source": source, "group": GROUP, "port": PORT}
    subprocess.run(
        in_ns(ns, "-c", INJECT), input=json.dumps(cfg), text=True, check=True, capture_output=True, timeout=10
    )


def link_local(ns: str, ifname: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "-6", "addr", "show", "dev", ifname], capture_output=True, text=True)
    return next((a["local"] for i in json.loads(out.stdout) for a in i["addr_info"] if a["scope"] == "link"), "")


def ipv4_addresses(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [f"{i['ifname']} {a['local']}" for i in json.loads(out) for a in i["addr_info"] if i["ifname"] != "lo"]


def until(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def cabled(pair: Pair) -> Pair:
    """The pair plus a management veth pair; every link up (twins get link-local addresses only)."""
    ip("-n", pair.a, "link", "add", MGMT, "type", "veth", "peer", "name", MGMT, "netns", pair.b)
    for ns in (pair.a, pair.b):
        for ifname in (TWIN_A, TWIN_B, MGMT):
            ip("-n", ns, "link", "set", ifname, "up")
    return pair


@pytest.fixture
def spawn(cabled: Pair, tmp_path: Path) -> Iterator[Any]:
    """Starts nodes and captures; stops them all before the namespaces go."""
    started: list[Node | Capture] = []

    def node(ns: str, ann: Announcement, netdevs: list[str]) -> Node:
        started.append(n := Node(ns, ann, netdevs, tmp_path / f"{ns}.log"))
        return n

    def capture(ns: str, *ifnames: str) -> Capture:
        started.append(c := Capture(ns, *ifnames))
        return c

    try:
        yield node, capture
    finally:
        for thing in reversed(started):
            thing.stop() if isinstance(thing, Node) else thing.close()


def test_each_finds_the_other_on_the_interconnect_before_ipv4(cabled: Pair, spawn: Any) -> None:
    node, _ = spawn
    a = node(cabled.a, announcement(ID_A, "spark-1"), [TWIN_A])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A])
    seen_by_a, seen_by_b = a.ask("wait", node_id=ID_B, timeout=15), b.ask("wait", node_id=ID_A, timeout=15)
    for seen, peer, peer_ns in ((seen_by_a, b, cabled.b), (seen_by_b, a, cabled.a)):
        sighting = seen["sighting"]
        assert sighting is not None, "not discovered within 15 s"
        assert Announcement(**sighting["announcement"]) == peer.announcement
        assert sighting["netdev"] == TWIN_A
        assert sighting["address"].startswith("fe80:") and sighting["address"] == link_local(peer_ns, TWIN_A)
    assert ipv4_addresses(cabled.a) == [] and ipv4_addresses(cabled.b) == []
    print(f"first sighting after start: a {seen_by_a['elapsed']:.2f} s, b {seen_by_b['elapsed']:.2f} s")


def test_nothing_leaves_on_the_management_pair(cabled: Pair, spawn: Any) -> None:
    node, capture = spawn
    cap_a, cap_b = capture(cabled.a, MGMT, TWIN_A), capture(cabled.b, MGMT)
    a = node(cabled.a, announcement(ID_A, "spark-1"), [TWIN_A])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A])
    assert a.ask("wait", node_id=ID_B, timeout=15)["sighting"] is not None
    assert b.ask("wait", node_id=ID_A, timeout=15)["sighting"] is not None
    time.sleep(4 * INTERVAL_S)
    assert a.state()["sockets"] == [TWIN_A] and b.state()["sockets"] == [TWIN_A]
    seen_a, seen_b = cap_a.result(), cap_b.result()
    assert seen_a[TWIN_A]["out"] >= 4 and seen_a[TWIN_A]["in"] >= 4 and seen_a[TWIN_A]["group"] >= 8  # it works
    for counts in (seen_a[MGMT], seen_b[MGMT]):
        assert counts["frames"] > 0  # the capture saw the kernel's own traffic (DAD, MLD, RS) there
        assert counts["in"] == counts["out"] == counts["group"] == 0


def test_a_netdev_removed_from_netdevs_is_no_longer_announced_on(cabled: Pair, spawn: Any) -> None:
    node, capture = spawn
    a = node(cabled.a, announcement(ID_A, "spark-1"), [TWIN_A, TWIN_B])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A, TWIN_B])

    def netdevs_seeing(n: Node, node_id: str) -> set[str]:
        return {s["netdev"] for s in n.state()["sightings"] if s["announcement"]["node_id"] == node_id}

    until("b to see a on both twins", lambda: netdevs_seeing(b, ID_A) == {TWIN_A, TWIN_B}, 15)
    assert a.ask("netdevs", value=[TWIN_A]) == {"ok": True}
    until("a to close its twin B socket", lambda: a.state()["sockets"] == [TWIN_A])
    cap = capture(cabled.a, TWIN_B)
    time.sleep(5 * INTERVAL_S)
    counts = cap.result()[TWIN_B]
    assert counts["out"] == 0 and counts["in"] >= 3  # b still announces there; a says nothing
    until("b's sighting of a on twin B to expire", lambda: netdevs_seeing(b, ID_A) == {TWIN_A}, 2 * EXPIRE_S)
    until("a to stop hearing b on twin B", lambda: netdevs_seeing(a, ID_B) == {TWIN_A}, 2 * EXPIRE_S)


def test_garbage_is_ignored_and_discovery_keeps_working(cabled: Pair, spawn: Any) -> None:
    node, _ = spawn
    a = node(cabled.a, announcement(ID_A, "spark-1"), [TWIN_A])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A])
    assert a.ask("wait", node_id=ID_B, timeout=15)["sighting"] is not None
    valid = json.loads(encode(announcement("cccccccccccccccc", "spark-3")))
    garbage = [
        b"",
        b"\xff" * 100,
        b"{not json",
        b"[" * 2000,
        json.dumps(valid | {"node_id": "NOT-BASE32"}).encode(),
        json.dumps(valid | {"role": "root"}).encode(),
        encode(announcement("cccccccccccccccc", "spark-3"))[:-1] + b" " * 3000 + b"}",  # oversize, fragmented
        b"\x00" * 60000,
    ]
    inject(cabled.b, TWIN_A, garbage)
    ip("-n", cabled.b, "addr", "add", "fd00:7472::2/64", "dev", TWIN_A, "nodad")
    inject(cabled.b, TWIN_A, [encode(announcement("dddddddddddddddd", "spoof"))], source="fd00:7472::2")
    until("a to count the garbage", lambda: a.state()["malformed"] >= len(garbage))
    inject(cabled.b, TWIN_A, [encode(announcement("eeeeeeeeeeeeeeee", "spark-5"))])
    assert a.ask("wait", node_id="eeeeeeeeeeeeeeee", timeout=5)["sighting"]["netdev"] == TWIN_A
    state = a.state()
    ids = {s["announcement"]["node_id"] for s in state["sightings"]}
    assert ID_B in ids and "cccccccccccccccc" not in ids and "dddddddddddddddd" not in ids  # nor the ULA source
    assert state["malformed"] == len(garbage) and state["ignored"] >= 1
    fresh = min(s["age"] for s in state["sightings"] if s["announcement"]["node_id"] == ID_B)
    assert fresh < 2 * INTERVAL_S  # b's announcements still arrive and are taken
    assert b.ask("wait", node_id=ID_A, timeout=5)["sighting"] is not None  # and a still announces


def test_own_announcement_is_not_listed(cabled: Pair, spawn: Any) -> None:
    node, _ = spawn
    own = announcement(ID_A, "spark-1")
    a = node(cabled.a, own, [TWIN_A])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A])
    assert a.ask("wait", node_id=ID_B, timeout=15)["sighting"] is not None
    ignored = a.state()["ignored"]
    inject(cabled.b, TWIN_A, [encode(own)] * 3)  # a's own announcement, reflected back to it (as a switch might)
    until("a to ignore its own announcement", lambda: a.state()["ignored"] >= ignored + 3)
    assert a.ask("wait", node_id=ID_A, timeout=2 * INTERVAL_S)["sighting"] is None
    assert [s["announcement"]["node_id"] for s in a.state()["sightings"]] == [ID_B]
    assert ID_B not in {s["announcement"]["node_id"] for s in b.state()["sightings"]}


def test_a_twin_that_loses_carrier_or_goes_away_comes_back_and_the_other_carries_on(cabled: Pair, spawn: Any) -> None:
    node, _ = spawn
    a = node(cabled.a, announcement(ID_A, "spark-1"), [TWIN_A, TWIN_B])
    b = node(cabled.b, announcement(ID_B, "spark-2"), [TWIN_A, TWIN_B])

    def ages(n: Node, node_id: str, address: str = "") -> dict[str, float]:
        return {
            s["netdev"]: s["age"]
            for s in n.state()["sightings"]
            if s["announcement"]["node_id"] == node_id and s["address"].startswith(address)
        }

    until("b to see a on both twins", lambda: set(ages(b, ID_A)) == {TWIN_A, TWIN_B}, 15)
    ip("-n", cabled.b, "link", "set", TWIN_B, "down")  # a's twin B loses carrier; b's loses its addresses
    until("the twin B sightings to expire", lambda: set(ages(b, ID_A)) == set(ages(a, ID_B)) == {TWIN_A}, 3 * EXPIRE_S)
    assert ages(b, ID_A)[TWIN_A] < 2 * INTERVAL_S  # twin A carried on
    ip("-n", cabled.b, "link", "set", TWIN_B, "up")
    until("both to see each other on twin B again", lambda: TWIN_B in ages(b, ID_A) and TWIN_B in ages(a, ID_B), 15)

    ip("-n", cabled.a, "link", "del", TWIN_B)  # the cable's twin B goes away on both ends (ENODEV)
    until("both to close twin B", lambda: a.state()["sockets"] == b.state()["sockets"] == [TWIN_A])
    assert ages(b, ID_A)[TWIN_A] < 2 * INTERVAL_S
    ip("-n", cabled.a, "link", "add", TWIN_B, "type", "veth", "peer", "name", TWIN_B, "netns", cabled.b)
    for ns in (cabled.a, cabled.b):
        ip("-n", ns, "link", "set", TWIN_B, "up")  # a new ifindex (and MAC) under the same name
    until("both to reopen twin B", lambda: a.state()["sockets"] == b.state()["sockets"] == sorted([TWIN_A, TWIN_B]))
    new_a, new_b = link_local(cabled.a, TWIN_B), link_local(cabled.b, TWIN_B)  # listed at once, while tentative
    assert new_a.startswith("fe80:") and new_b.startswith("fe80:")
    until("both to see each other on the new twin B", lambda: TWIN_B in ages(b, ID_A, new_a), 15)
    until("both to see each other on the new twin B", lambda: TWIN_B in ages(a, ID_B, new_b), 15)
