"""Frame capture inside a lab namespace, for tests: a compact summary of every frame that crossed an interface.

`Capture(netns, ifname, out).start()` runs this file as a child process inside the namespace
(`ip netns exec NETNS python tests/capture.py IFNAME OUT`). The child binds an AF_PACKET raw socket
to the interface (both directions, every ethertype) and writes one JSON line per frame to OUT: the
direction, ethertype, IP protocol, source and destination address, ports (TCP/UDP), ICMP type, the
frame's length and whether the frame carries `PROBE` (the marker of a test's deliberate datagram).
`stop()` ends the child by its PID (SIGTERM; it drains what the socket still holds) and returns the
frames. Only the first bytes of each frame are read: headers, not payloads.

`sparkd_frames()` picks the frames that are sparkd's (its ports 7471-7473, TCP or UDP, and any UDP to
an IPv6 multicast group: discovery) or a deployment's (the lab demo's API and rendezvous ports); what
the kernel sends by itself (ARP, IPv6 neighbour discovery, router solicitations, MLD) is not.

The child half uses the standard library only: it runs as a plain script, not through the test tree.
"""

from __future__ import annotations

import ipaddress
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The marker a test's deliberate datagram starts its payload with (see tests/e2e: excluded from checks).
PROBE = b"sparkd-test-capture-probe"
SPARKD_PORTS = frozenset({7471, 7472, 7473})  # peer, discovery, pairing
DEPLOYMENT_PORTS = frozenset({8000, 29501})  # the lab demo's API port and the vLLM rendezvous port
ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q = 0x0003, 0x0800, 0x0806, 0x86DD, 0x8100
ICMP, TCP, UDP, ICMPV6 = 1, 6, 17, 58
PACKET_OUTGOING = 4
SNAPLEN = 256
IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop (MLD carries one), routing, destination options


@dataclass(frozen=True)
class Frame:
    """One captured frame, summarised."""

    node: str
    ifname: str
    direction: str  # "out" (sent from this interface) or "in"
    ethertype: int
    length: int
    proto: int | None = None  # IP protocol number; None when not IP (e.g. ARP)
    src: str = ""  # IP source (ARP: sender protocol address)
    dst: str = ""
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    probe: bool = False

    def kind(self) -> str:
        """A short name of what the frame is: `arp`, `icmpv6/135`, `udp/7472`, `ethertype 0x88cc`."""
        if self.ethertype == ETH_P_ARP:
            return "arp"
        names = {ICMP: "icmp", TCP: "tcp", UDP: "udp", ICMPV6: "icmpv6"}
        if self.proto is None:
            return f"ethertype {self.ethertype:#06x}"
        name = names.get(self.proto, f"ip proto {self.proto}")
        if self.icmp_type is not None:
            return f"{name}/{self.icmp_type}"
        if self.dport is not None:
            return f"{name}/{min(self.sport or 0, self.dport)}"
        return name

    def describe(self) -> str:
        def end(addr: str, port: int | None) -> str:
            if port is None:
                return addr
            return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

        probe = " (probe)" if self.probe else ""
        return (
            f"{self.node}/{self.ifname} {self.direction} {self.kind()} "
            f"{end(self.src, self.sport)} -> {end(self.dst, self.dport)}{probe}"
        )


def summarize(data: bytes, length: int, pkttype: int) -> dict[str, Any]:
    """The summary of one Ethernet frame (`data`: its first bytes; `length`: its real length)."""
    out: dict[str, Any] = {"direction": "out" if pkttype == PACKET_OUTGOING else "in", "length": length}
    if len(data) < 14:
        out["ethertype"] = 0
        return out
    ethertype, off = struct.unpack_from("!H", data, 12)[0], 14
    while ethertype == ETH_P_8021Q and len(data) >= off + 4:
        ethertype, off = struct.unpack_from("!H", data, off + 2)[0], off + 4
    out["ethertype"] = ethertype
    l4: int | None = None
    try:
        if ethertype == ETH_P_ARP:
            out["src"] = str(ipaddress.IPv4Address(data[off + 14 : off + 18]))
            out["dst"] = str(ipaddress.IPv4Address(data[off + 24 : off + 28]))
        elif ethertype == ETH_P_IP:
            ihl = (data[off] & 0x0F) * 4
            proto = data[off + 9]
            out.update(
                proto=proto,
                src=str(ipaddress.IPv4Address(data[off + 12 : off + 16])),
                dst=str(ipaddress.IPv4Address(data[off + 16 : off + 20])),
            )
            fragment_offset = struct.unpack_from("!H", data, off + 6)[0] & 0x1FFF
            l4 = None if fragment_offset else off + ihl
        elif ethertype == ETH_P_IPV6:
            nh = data[off + 6]
            out.update(
                src=str(ipaddress.IPv6Address(data[off + 8 : off + 24])),
                dst=str(ipaddress.IPv6Address(data[off + 24 : off + 40])),
            )
            l4 = off + 40
            while nh in IPV6_EXTENSIONS or nh == 44:  # 44: fragment header
                if nh == 44:
                    later = struct.unpack_from("!H", data, l4 + 2)[0] & 0xFFF8
                    nh, next_header = data[l4], l4 + 8
                    if later:  # a later fragment: no transport header in it
                        l4 = None
                        break
                    l4 = next_header
                else:
                    nh, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
            out["proto"] = nh
        transport = out.get("proto")
        if l4 is not None and transport in (TCP, UDP):
            out["sport"], out["dport"] = struct.unpack_from("!HH", data, l4)
            payload = l4 + (8 if transport == UDP else (data[l4 + 12] >> 4) * 4)
            out["probe"] = data[payload : payload + len(PROBE)] == PROBE
        elif l4 is not None and transport in (ICMP, ICMPV6):
            out["icmp_type"] = data[l4]
    except (IndexError, struct.error, ValueError):
        out["truncated"] = True  # a header shorter than it claims: keep what was read
    return out


def _child(ifname: str, out_path: str) -> int:
    """Captures on `ifname` until SIGTERM, one JSON line per frame to `out_path`."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((ifname, 0))
    buf = bytearray(SNAPLEN)
    with open(out_path, "w") as out:
        print("ready", flush=True)
        sock.settimeout(0.1)
        while True:
            if stopping:
                sock.setblocking(False)  # drain what arrived before the stop, then end
            try:
                length, addr = sock.recvfrom_into(buf, SNAPLEN, socket.MSG_TRUNC)
            except TimeoutError:
                continue
            except BlockingIOError:
                break
            out.write(json.dumps(summarize(bytes(buf[: min(length, SNAPLEN)]), length, addr[2])) + "\n")
            out.flush()
    return 0


class Capture:
    """Captures every frame on `ifname` inside network namespace `netns` (a child process, root only)."""

    def __init__(self, netns: str, ifname: str, out: Path) -> None:
        self.netns, self.ifname, self.out = netns, ifname, out
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Capture:
        """Starts the child; see `ready()` for waiting until it captures."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, __file__, self.ifname, str(self.out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def ready(self, timeout: float = 10) -> Capture:
        """Waits until the child's socket is bound (frames from now on are captured)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable = select.select([self.proc.stdout], [], [], 0.1)[0]
            if readable and self.proc.stdout.readline().strip() == "ready":
                return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"capture on {self.netns}/{self.ifname} did not start: {self._stderr()}")

    def _stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.proc.poll() is None:
            return "still starting"
        return self.proc.stderr.read().strip()[-500:] or f"exit status {self.proc.returncode}"

    def stop(self) -> list[Frame]:
        """Ends the child (by its PID) and returns what it captured."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
            self.proc = None
        return self.frames()

    def frames(self) -> list[Frame]:
        """The frames captured so far."""
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        frames = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            record.pop("truncated", None)
            frames.append(Frame(node=self.netns, ifname=self.ifname, **record))
        return frames


def capture_all(netns: Iterable[str], ifname: str, directory: Path) -> list[Capture]:
    """Starts a capture on `ifname` in each namespace (in parallel) and waits until all are ready."""
    captures = [Capture(ns, ifname, directory / f"{ns}-{ifname}.jsonl").start() for ns in netns]
    try:
        for c in captures:
            c.ready()
    except BaseException:
        for c in captures:
            c.stop()
        raise
    return captures


def is_sparkd(frame: Frame) -> bool:
    """Whether a frame is sparkd's or a deployment's: TCP/UDP on their ports, or UDP to an IPv6 multicast group."""
    if frame.proto not in (TCP, UDP):
        return False
    ports = {frame.sport, frame.dport}
    if ports & (SPARKD_PORTS | DEPLOYMENT_PORTS):
        return True
    return frame.proto == UDP and frame.ethertype == ETH_P_IPV6 and ipaddress.ip_address(frame.dst).is_multicast


def sparkd_frames(frames: Iterable[Frame], include_probes: bool = False) -> list[Frame]:
    """The frames that are sparkd's (see `is_sparkd`), leaving out test probes unless `include_probes`."""
    return [f for f in frames if is_sparkd(f) and (include_probes or not f.probe)]


def summary(frames: list[Frame]) -> str:
    """One line: how many frames, of which kinds."""
    kinds = Counter(f.kind() for f in frames)
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(frames)} frames" + (f" ({parts})" if parts else "")


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
