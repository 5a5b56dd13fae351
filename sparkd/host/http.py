"""Minimal HTTP client for the framework's local endpoints (`/health`, `/v1/models`, `/metrics`, a probe
completion), from the daemon, inside the node's network namespace.

Plain asyncio streams and HTTP/1.0 with `Connection: close`: a probe needs no client library,
and reading to EOF needs no chunked decoding. The whole exchange (connect, request, answer) is
bounded by one timeout, and at most `limit` bytes of the body (and 16 KiB of headers) are read,
so a hung or hostile endpoint costs at most `timeout` seconds of one probe task, never a request path.
"""

from __future__ import annotations

import asyncio

from sparkd.host.protocols import HttpAnswer

_MAX_HEADERS = 16 * 1024


class AsyncioHttpProbe:
    """Implements `protocols.HttpProbe`."""

    async def status(self, host: str, port: int, path: str, timeout: float) -> int | None:
        """The HTTP status code of GET http://host:port/path, or None when nothing answers in time."""
        answer = await self.request(host, port, path, timeout, limit=0)
        return answer.status if answer else None

    async def request(
        self, host: str, port: int, path: str, timeout: float, *, body: bytes | None = None, limit: int = 65536
    ) -> HttpAnswer | None:
        method = "GET" if body is None else "POST"
        head = f"{method} {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEADERS)
                try:
                    writer.write(head.encode() + b"\r\n" + (body or b""))
                    await writer.drain()
                    headers = await reader.readuntil(b"\r\n\r\n")
                    data = b""
                    while len(data) < limit and (chunk := await reader.read(limit - len(data))):
                        data += chunk
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return None
        parts = headers.split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() and len(parts[1]) == 3:
            return HttpAnswer(int(parts[1]), data)
        return None
