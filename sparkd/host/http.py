"""Minimal HTTP probe for readiness (GET a path on the local node, status code only).

Runs from the daemon, inside the node's network namespace, against the framework's
own endpoint (vLLM `/health`). Plain asyncio streams: a probe needs no client library.
"""

from __future__ import annotations

import asyncio


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """The HTTP status code of GET http://host:port/path, or None when nothing answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    parts = line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None
