"""The read side of the deployment manager: states from the latest evidence, and hello summaries.

Reads touch no D-Bus and no HTTP: they turn what the state loop last saw (`Snapshot`) and the workers'
last reports into a `Verdict` (`sparkd.engine.health`) and a `DeploymentStatus`. `DeploymentManager`
(`sparkd.engine.deployments`) inherits them, through `DeploymentParts`; the attributes below are its.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable

import structlog

from sparkd.config import Config
from sparkd.engine import health
from sparkd.engine.cluster import Cluster
from sparkd.engine.launchers import launcher_for
from sparkd.engine.observer import Interests
from sparkd.engine.store import BrokenRecord
from sparkd.errors import NotFound
from sparkd.events import EventBus
from sparkd.host.protocols import Host
from sparkd.model.deployment import (
    DEAD_STATES,
    WAITING,
    DeploymentRecord,
    DeploymentState,
    DeploymentStatus,
    PartSummary,
    unit_name,
)
from sparkd.model.observed import Snapshot
from sparkd.model.unit import JournalLine, UnitState

log = structlog.get_logger(__name__)

TAIL_LINES = 10


class DeploymentViews:
    """States, statuses and summaries of this node's deployments."""

    config: Config
    host: Host
    cluster: Cluster
    snapshot: Snapshot
    bus: EventBus
    role: Callable[[], str]
    records: dict[str, DeploymentRecord]
    _broken: dict[str, BrokenRecord]
    busy: dict[str, tuple[DeploymentState, str]]
    served: set[str]
    supervisor_view: Callable[[DeploymentStatus], DeploymentStatus]
    _tails: dict[tuple[str, float], tuple[str, ...]]
    _tail_tasks: set[asyncio.Task[None]]

    @property
    def is_head(self) -> bool:
        return self.role() == "head"

    # --- what the state loop watches ---------------------------------------------------------

    def interests(self) -> Interests:
        records = sorted(self.records.values(), key=lambda r: r.spec.name)
        serving = (
            tuple(
                (r.spec.port, r.spec.served_model_name, launcher_for(r.spec).token_metric)
                for r in records
                if r.assignment.rank == 0
            )
            if self.is_head
            else ()
        )
        return Interests(units=tuple(u for r in records for u in r.units), serving=serving)

    def refresh(self) -> None:
        """Turns the latest evidence into states: publishes transitions, updates hello summaries."""
        statuses = self.list()
        for s in statuses:
            self.bus.transition("deployment", s.name, s.state.value, s.message)
            if s.state is DeploymentState.READY:
                self.served.add(s.name)
        summaries = []
        for s in statuses:
            if s.spec is None:
                continue
            record = self.records.get(s.name)
            own = self.part_state(record) if record is not None else self.snapshot.unit(s.unit)
            failure, tail = "", tuple[str, ...]()
            if own.active_state in ("failed", "inactive") and own.load_state != "unknown":
                failure = own.exit_description or f"unit {s.unit} is {own.active_state}"
                tail = self._tail(own)
            summaries.append(PartSummary(s.name, s.state, s.unit, s.unit_active_state, failure, tail, own.exit_time))
        self.snapshot.deployments = tuple(summaries)

    def _tail(self, state: UnitState) -> tuple[str, ...]:
        """The last journal lines of a failed unit, read once per run (its exit time) in the background."""
        key = (state.name, state.exit_time)
        if key not in self._tails:
            self._tails = {k: v for k, v in self._tails.items() if k[0] != state.name}
            self._tails[key] = ()
            task = asyncio.get_running_loop().create_task(self._read_tail(key))
            self._tail_tasks.add(task)  # referenced until done: the loop keeps only weak references
            task.add_done_callback(self._tail_tasks.discard)
        return self._tails[key]

    async def _read_tail(self, key: tuple[str, float]) -> None:
        try:
            lines = await self.host.journal.tail(key[0], TAIL_LINES)
        except Exception as e:
            log.warning("deployment.journal_unreadable", unit=key[0], error=str(e)[:200])
            return
        if key in self._tails:
            self._tails[key] = tuple(line.message[:512] for line in lines)
            self.refresh()  # the next hello carries them

    async def journal_tail(self, record: DeploymentRecord, rank: int) -> tuple[str, ...]:
        """The last journal lines of a rank's unit: this node's own journal, or the worker's through the peer
        API (bounded by a few seconds: a failure's record never waits long for them)."""
        try:
            async with asyncio.timeout(5):
                if rank == record.assignment.rank:
                    lines = await self.host.journal.tail(record.unit, TAIL_LINES)
                else:
                    part = record.parts[rank]
                    tail: deque[JournalLine] = deque(maxlen=TAIL_LINES)  # a worker may send more than asked
                    async for line in self.cluster.part_logs(part.node_id, record.spec.name, TAIL_LINES, False):
                        tail.append(line)
                    lines = list(tail)
        except Exception as e:
            log.warning("deployment.journal_unreadable", deployment=record.spec.name, rank=rank, error=str(e)[:200])
            return ()
        return tuple(line.message[:512] for line in lines[-TAIL_LINES:])

    def remember_unit(self, state: UnitState) -> None:
        """Fresh evidence from a mutation; a unit probe that was already under way is discarded."""
        self.snapshot.units = {**self.snapshot.units, state.name: state}
        self.snapshot.units_generation += 1

    # --- reads (no I/O) -----------------------------------------------------------------------

    def get(self, name: str) -> DeploymentStatus:
        if name in self._broken:
            return self._broken_status(self._broken[name])
        record = self.records.get(name)
        if record is None:
            raise NotFound(f"no deployment named {name}", name=name)
        return self.status(record)

    def list(self) -> list[DeploymentStatus]:
        statuses = [self.status(r) for r in self.records.values()]
        statuses += [self._broken_status(b) for b in self._broken.values()]
        return sorted(statuses, key=lambda s: s.name)

    def _broken_status(self, broken: BrokenRecord) -> DeploymentStatus:
        unit = unit_name(broken.name, 0) if self.is_head else ""
        return DeploymentStatus(
            name=broken.name,
            spec=None,
            state=DeploymentState.FAILED,
            message=(
                f"the record could not be read ({broken.error}); it was moved to {broken.path}. "
                f"Delete the deployment with `sparkctl-client deploy down {broken.name}`"
            ),
            nodes=(),
            create_time=0.0,
            unit=unit,
            unit_active_state="unknown",
        )

    def part_state(self, record: DeploymentRecord) -> UnitState:
        """This node's part, as one unit: the main unit's state, unless a unit it runs on (the Ray node under
        `vllm serve`) has died, which then speaks for the part."""
        for unit in record.units[:-1]:
            state = self.snapshot.unit(unit)
            if state.load_state != "unknown" and state.active_state in DEAD_STATES:
                return state
        main = self.snapshot.unit(record.unit)
        if record.assignment.rank > 0 and launcher_for(record.spec).order.workers_by_framework:
            # Not started yet by the head's launcher (TensorRT-LLM's mpirun, through the launch agent): no unit,
            # or only what an earlier run of the same name left (the snapshot may still hold its last state
            # until the next probe: a dead unit that exited before this deployment was created is not its own).
            earlier = main.active_state in DEAD_STATES and main.exit_time < record.create_time
            if main.load_state == "not-found" or earlier:
                return dataclasses.replace(main, active_state=WAITING, sub_state=WAITING)
        return main

    def verdict(self, record: DeploymentRecord) -> health.Verdict:
        """The deployment's state from the latest evidence (`sparkd.engine.health`)."""
        own = self.part_state(record)
        name = record.spec.name
        if record.assignment.rank > 0:
            return health.evaluate_worker(record, own, self.cluster.head_state(name))
        reports = {p.rank: self.cluster.part_report(p.node_id, name) for p in record.parts[1:]}
        return health.evaluate_head(
            record,
            own,
            self.snapshot.serving.get(record.spec.port),
            reports,
            served_before=name in self.served,
            now=time.time(),
        )

    def status(self, record: DeploymentRecord) -> DeploymentStatus:
        v = self.verdict(record)
        state, message = v.state, v.message
        name = record.spec.name
        if name in self.busy:
            state, message = self.busy[name]
        elif record.supervision.deleting:
            state = DeploymentState.STOPPING
            message = f"`deploy down {name}` could not reach every node; run it again"
        own = self.snapshot.unit(record.unit)
        s = DeploymentStatus(
            name,
            record.spec,
            state,
            message,
            v.nodes,
            record.create_time,
            record.unit,
            own.active_state,
            record.supervision,
            master_port=record.assignment.master_port,
        )
        return self.supervisor_view(s)
