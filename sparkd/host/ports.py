"""Which TCP ports are taken, by trying to bind them (in the daemon's network namespace).

A bind is the truth a framework will meet: it fails for a port that any socket listens on, on any
address, IPv4 or IPv6 (the API binds the wildcard address), while SO_REUSEADDR lets it pass over
connections in TIME_WAIT, as a restarting server's own bind does. The probe sockets are closed at
once and never listen, so nothing can connect to them.
"""

from __future__ import annotations

import socket


def _taken(family: socket.AddressFamily, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    except OSError as e:
        # EADDRINUSE: someone listens. EADDRNOTAVAIL/EAFNOSUPPORT: no IPv6 here, which takes nothing.
        return e.errno == 98
    return False


class BindPorts:
    """Implements `protocols.Ports`."""

    def busy(self, ports: list[int]) -> list[int]:
        return [p for p in ports if _taken(socket.AF_INET, p) or (socket.has_ipv6 and _taken(socket.AF_INET6, p))]
