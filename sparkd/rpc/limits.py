"""Bounds for both gRPC servers: message sizes, concurrency, connections, idle and keepalive.

A root daemon must not be exhausted by a local user or by anything on the cable: 1,100
idle TCP connections to the peer port once used up the daemon's file descriptors. The
peer port is small until callers are authenticated (mutual TLS comes with the peer
protocol): few connections, a short handshake deadline (a connection that never speaks
HTTP/2 is closed), small messages. `systemd/sparkd.service` sets a LimitNOFILE that fits
these numbers with room for units, netlink and D-Bus.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """One server's limits."""

    max_receive_bytes: int
    max_send_bytes: int
    max_concurrent_rpcs: int  # server-wide; more are refused with RESOURCE_EXHAUSTED
    max_streams: int  # long-lived streaming calls, server-wide; kept well below max_concurrent_rpcs
    max_streams_per_connection: int
    max_connections: int
    handshake_timeout_ms: int
    idle_timeout_ms: int
    keepalive_time_ms: int = 60_000
    keepalive_timeout_ms: int = 10_000

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_receive_bytes),
            ("grpc.max_send_message_length", self.max_send_bytes),
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", self.handshake_timeout_ms),
            ("grpc.max_connection_idle_ms", self.idle_timeout_ms),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.so_reuseport", 0),
        ]


#: The unix sockets: specs are at most 64 KiB; a status of many deployments fits in 4 MiB.
LOCAL = ServerLimits(
    max_receive_bytes=256 * 1024,
    max_send_bytes=4 * 1024 * 1024,
    max_concurrent_rpcs=128,
    max_streams=16,
    max_streams_per_connection=32,
    max_connections=256,
    handshake_timeout_ms=10_000,
    idle_timeout_ms=600_000,
)

#: The peer port, before callers are authenticated. A PreparePart answer carries a model manifest (up to
#: 4096 files) and config.json (up to 1 MiB): 4 MiB out. PartLogs streams one unit's journal per call.
PEER = ServerLimits(
    max_receive_bytes=256 * 1024,
    max_send_bytes=4 * 1024 * 1024,
    max_concurrent_rpcs=16,
    max_streams=4,  # PartLogs (the head's `deploy logs --follow`)
    max_streams_per_connection=8,
    max_connections=32,
    handshake_timeout_ms=3_000,
    idle_timeout_ms=60_000,
)
