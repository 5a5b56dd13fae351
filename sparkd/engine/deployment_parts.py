"""Every node's side of the deployment manager: its own part of each deployment, as units of its own.

A worker takes its part from the head through the peer API (`sparkd.peer.server.LocalParts`): it plans
it, starts it (a unit that runs already is adopted) and stops it, and says which unit is its part and
where its journal is. The head starts and stops its own part with the same steps (`launch`, `halt` and
`delete` in `sparkd.engine.deployments`). Each node starts only its own units, and what it sees of
them after a mutation is fresh evidence for the read side (`remember_unit`). `DeploymentManager`
inherits these; the attributes below are its.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import structlog

from sparkd.engine.deployment_views import DeploymentViews
from sparkd.engine.gates import Gates
from sparkd.engine.launch import LocalFacts, plan_remote_rank, plan_units
from sparkd.engine.launchers.mpi import OrtedRefused
from sparkd.engine.store import BrokenRecord, DeploymentStore
from sparkd.errors import InvalidSpec, NotFound, PeerUnavailable, PreconditionFailed
from sparkd.host.protocols import Journal, Systemd
from sparkd.model.deployment import (
    Assignment,
    DeploymentRecord,
    DeploymentSpec,
    Framework,
    PartPlan,
    is_unit_of,
    unit_name,
    unit_pattern,
)
from sparkd.model.unit import UnitSpec, UnitState

log = structlog.get_logger(__name__)


class DeploymentParts(DeploymentViews):
    """This node's part of each deployment: its plan, and its units started, adopted, stopped and forgotten."""

    store: DeploymentStore
    systemd: Systemd
    facts: Callable[[], Awaitable[LocalFacts]]
    gates: Gates
    lock: asyncio.Lock
    poke: Callable[[], None]

    # --- the peer API: a worker's part, as the head asks --------------------------------------

    async def prepare_part(self, spec: DeploymentSpec, assignment: Assignment) -> PartPlan:
        """This worker's plan for a part, as the head asked through the peer API; starts nothing."""
        if self.is_head:
            raise PreconditionFailed("the head prepares its own part; only workers take parts from the peer API")
        plan = await self.gates.local_plan(spec, assignment)
        record = self.records.get(spec.name)
        if record is not None and record.assignment.master_port == assignment.master_port:
            # The deployment's own rank holds its ports: not a conflict for a restart that stops it first.
            plan = dataclasses.replace(plan, busy_ports=())
        return plan

    async def start_part(self, spec: DeploymentSpec, assignment: Assignment, launch_command: str = "") -> UnitState:
        """Starts this worker's part, as the head asked through the peer API. Idempotent. `launch_command`:
        the orted that the head's TensorRT-LLM mpirun asked for, run as this rank's unit (checked here
        again: `launchers.mpi`)."""
        if self.is_head:
            raise PreconditionFailed("the head starts its own part; only workers take parts from the peer API")
        remote = None
        if launch_command:
            if spec.framework is not Framework.TRTLLM:
                raise InvalidSpec.one("launch_command", "is for a TensorRT-LLM rank only")
            try:
                remote = plan_remote_rank(spec, assignment, await self.facts(), launch_command)
            except OrtedRefused as e:
                raise InvalidSpec.one("launch_command", str(e)) from None
        async with self.lock:
            old = self.records.get(spec.name)
            if remote is not None and (old is None or (old.spec, old.assignment) != (spec, assignment)):
                # Only the rank the head armed in this run (a late request from a run that was stopped since
                # must not leave an orted, and a record, that the head no longer knows).
                raise PreconditionFailed(
                    f"rank {assignment.rank} of deployment {spec.name} is not armed on this node; the head's "
                    "mpirun is from a run that has been stopped",
                    name=spec.name,
                )
            if old is not None and (old.spec, old.assignment) != (spec, assignment):
                # The head re-assigned this deployment: the old part (maybe another rank) goes first.
                await self._stop_units(old)
                log.info("deployment.part_replaced", deployment=spec.name, unit=old.unit)
            if old is None or (old.spec, old.assignment) != (spec, assignment):
                record = DeploymentRecord(spec, assignment, (), time.time())
                self.store.save(record)
                self.records[spec.name] = record
            self._broken.pop(spec.name, None)
            if remote is not None:
                state = await self._start_remote(remote)
            else:
                state = await self._start_local(spec, assignment)
            self.poke()
            return state

    async def stop_part(self, name: str) -> str:
        """Stops this node's part of deployment `name` (as the head asked) and forgets it. Idempotent."""
        if self.is_head:
            raise PreconditionFailed("the head stops its own part; only workers take parts from the peer API")
        async with self.lock:
            if name in self._broken:
                return ", ".join(await self._delete_broken(self._broken[name]))
            return await self._stop_local(name)

    def part_unit(self, name: str) -> str:
        """This node's unit of deployment `name`."""
        record = self.records.get(name)
        if record is None:
            raise NotFound(f"{self.config.node.name} has no part of deployment {name}", name=name)
        return record.unit

    @property
    def journal(self) -> Journal:
        """This node's journal, where the peer API reads the lines of a part's unit."""
        return self.host.journal

    # --- this node's units --------------------------------------------------------------------

    async def _start_local(
        self, spec: DeploymentSpec, assignment: Assignment, peers: tuple[str, ...] = (), roles: tuple[str, ...] = ()
    ) -> UnitState:
        """Starts this node's units of `spec` in order (only those of `roles`, if given); each one that
        runs already is adopted. Returns the last one's state."""
        units = plan_units(spec, assignment, await self.facts(), peers)
        if roles:
            units = tuple(u for u in units if any(u.name.endswith(f"-{r}.service") for r in roles))
        state = UnitState.unknown(unit_name(spec.name, assignment.rank))
        for unit in units:
            state = await self.systemd.state(unit.name)
            if state.running:
                log.info("deployment.unit_adopted", unit=unit.name)
                self.remember_unit(state)
                continue
            if state.active_state == "failed":
                await self.systemd.stop(unit.name)  # resets the failed state
            await self.systemd.start(unit)
            log.info("deployment.unit_started", unit=unit.name, argv=" ".join(unit.argv))
            state = await self.systemd.state(unit.name)
            self.remember_unit(state)
        return state

    async def _start_remote(self, unit: UnitSpec) -> UnitState:
        """A TensorRT-LLM rank for a new mpirun job: an orted still up from an earlier job goes first."""
        await self.systemd.stop(unit.name)
        await self.systemd.start(unit)
        log.info("deployment.remote_rank_started", unit=unit.name, argv=" ".join(unit.argv)[:2000])
        state = await self.systemd.state(unit.name)
        self.remember_unit(state)
        return state

    async def _stop_units(self, record: DeploymentRecord, main_only: bool = False) -> list[str]:
        """Stops this node's units of `record`, the main (serving) unit first, then what it ran on."""
        stopped = []
        for unit in reversed(record.units[-1:] if main_only else record.units):
            await self.systemd.stop(unit)
            self.remember_unit(await self.systemd.state(unit))
            stopped.append(unit)
        return stopped

    async def _stop_local(self, name: str) -> str:
        """Stops this node's units of deployment `name` and forgets it: the units stopped, comma-separated
        ("" when this node has no part of it)."""
        record = self.records.get(name)
        if record is None:
            return ""
        stopped = await self._stop_units(record)
        self._forget(name)
        log.info("deployment.unit_stopped", units=stopped)
        return ", ".join(stopped)

    # --- this node's records ------------------------------------------------------------------

    def _forget(self, name: str) -> None:
        """Drops deployment `name` from the store, from memory and from the event bus."""
        self.store.delete(name)
        self.records.pop(name, None)
        self._broken.pop(name, None)
        self.served.discard(name)
        self.bus.forget("deployment", name)

    async def _delete_broken(self, broken: BrokenRecord) -> list[str]:
        """A record that could not be read: stop whatever units of that name run here (and, on the
        head, ask every connected worker to stop its part), then remove the record."""
        name = broken.name
        stopped = []
        if self.is_head:
            for worker in self.cluster.connected_workers():
                try:
                    stopped.append(await self.cluster.stop_part(worker.node_id, name))
                except PeerUnavailable as e:
                    log.warning("deployment.broken_stop_failed", deployment=name, node=worker.name, error=e.message)
        for unit in await self.systemd.list_units(unit_pattern(name)):
            if not is_unit_of(name, unit):
                continue  # another deployment's ("a-rank1" for "a"): the glob matches too much
            await self.systemd.stop(unit)
            stopped.append(unit)
        self._forget(name)
        log.info("deployment.broken_record_deleted", deployment=name, path=broken.path)
        return [u for u in stopped if u]
