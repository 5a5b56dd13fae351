"""Minimal HTTP probe for readiness (GET a path on the local node, status code only).

Runs from the daemon, inside the node's network namespace, against the framework's
own endpoint (vLLM `/health`). Plain asyncio streams: a probe needs no client library.
The whole exchange (connect, request, status line) is bounded by one timeout, and only
the status line is read (at most 256 bytes), so a hung or hostile endpoint costs at most
`timeout` seconds of one probe task, never a request path.
"""

from __future__ import annotations

import asyncio

_MAX_STATUS_LINE = 256


class AsyncioHttpProbe:
    """Implements `protocols.HttpProbe`."""

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        """The HTTP status code of GET http://host:port/path, or None when nothing answers in time."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_MAX_STATUS_LINE)
                try:
                    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            return None
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and len(parts[1]) == 3:
            return int(parts[1])
        return None
