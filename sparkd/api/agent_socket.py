"""The launch agents' socket: one JSON line in, one out, per connection (`sparkd.launch_agent`).

Any local process may connect (0666, in a directory of its own that deployment units can see);
the caller is known by the kernel, never by what it says: SO_PEERCRED gives its PID, and its
cgroup its systemd unit (`Proc.unit_of`), which `LaunchAgentService` checks. Requests are bounded
(16 KiB and a few seconds to send one); each connection gets one answer and is closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path

import structlog

from sparkd.engine.agent import LaunchAgentService
from sparkd.host.protocols import Proc

log = structlog.get_logger(__name__)

MAX_REQUEST = 20 * 1024
READ_TIMEOUT_S = 5.0
#: Connections served at once; more are closed at once (a flood of idle ones must not eat the daemon's fds).
MAX_CONNECTIONS = 8


def peer_pid(sock: socket.socket) -> int:
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid)


class AgentSocket:
    """Serves `LaunchAgentService` on a unix socket."""

    def __init__(self, path: Path, service: LaunchAgentService, proc: Proc) -> None:
        self.path, self.service, self.proc = path, service, proc
        self.server: asyncio.Server | None = None
        self.open = 0

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o755)
        self.path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o666)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= MAX_CONNECTIONS:
            writer.close()
            return
        self.open += 1
        try:
            unit = self.proc.unit_of(peer_pid(writer.get_extra_info("socket")))
            if not self.service.knows(unit):  # refused before a byte is read: no one else holds a connection
                writer.write(json.dumps(await self.service.handle(unit, None)).encode() + b"\n")
                await writer.drain()
                return
            try:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
                request = json.loads(line) if line.endswith(b"\n") else None
            except (TimeoutError, ValueError, asyncio.LimitOverrunError):
                request = None
            answer = await self.service.handle(unit, request)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, ConnectionError) as e:
            log.warning("agent.connection_failed", error=str(e)[:200])
        finally:
            self.open -= 1
            writer.close()
