"""`deploy logs`: the journal of every rank's unit, the head's own and the workers' through the peer API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sparkd.engine.deployments import DeploymentManager
from sparkd.errors import InvalidSpec, NotFound
from sparkd.model.unit import JournalLine

Source = tuple[str, int, AsyncIterator[JournalLine]]
_END = object()


def sources(d: DeploymentManager, name: str, node_name: str, lines: int, follow: bool) -> list[Source]:
    """One journal source per rank of deployment `name` (only `node_name`'s when given): on the head every
    node's, on a worker its own."""
    record = d.records.get(name)
    if record is None:
        raise NotFound(f"no deployment named {name}", name=name)
    found: list[Source] = []
    if record.assignment.rank == 0:
        for part in record.parts:
            if node_name and part.node_name != node_name:
                continue
            if part.rank == 0:
                source = _local(d, record.unit, lines, follow)
            else:
                source = d.cluster.part_logs(part.node_id, name, lines, follow)
            found.append((part.node_name, part.rank, source))
    elif not node_name or node_name == d.config.node.name:
        found.append((d.config.node.name, record.assignment.rank, _local(d, record.unit, lines, follow)))
    if node_name and not found:
        nodes = ", ".join(p.node_name for p in record.parts) or d.config.node.name
        raise InvalidSpec.one("node_name", f"{node_name} has no part of {name} here; its nodes are {nodes}")
    return found


async def _local(d: DeploymentManager, unit: str, lines: int, follow: bool) -> AsyncIterator[JournalLine]:
    if follow:
        async for line in d.journal.follow(unit, lines):
            yield line
    else:
        for line in await d.journal.tail(unit, lines):
            yield line


async def merge(
    sources: list[Source],
) -> AsyncIterator[tuple[str, int, JournalLine]]:
    """Every source's lines as they come (history: each source's in order); a failing source ends with a line
    saying why, and the others go on."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1024)

    async def pump(node: str, rank: int, source: AsyncIterator[JournalLine]) -> None:
        try:
            async for line in source:
                await queue.put((node, rank, line))
        except Exception as e:
            text = getattr(e, "message", str(e))[:500]
            await queue.put((node, rank, JournalLine(0.0, "", f"sparkd: the journal of {node} cannot be read: {text}")))
        finally:
            await queue.put(_END)

    tasks = [asyncio.create_task(pump(*s)) for s in sources]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is _END:
                remaining -= 1
                continue
            assert isinstance(item, tuple)
            yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
