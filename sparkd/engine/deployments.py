"""Deployments: create on the head, start every node's part in order, report evidence-based state.

The head validates the spec, assigns ranks (itself rank 0, connected workers by index),
persists the record (desired state) and asks each worker, through the peer layer, to
start its part, workers first, then starts its own. Each node starts only its own unit.
State is computed from evidence, never remembered: the unit's ActiveState and the head's
`/health` answer as the state loop last saw them (`Snapshot`), and the workers' unit
states from their last hello. Reads touch no D-Bus and no HTTP: records are kept in
memory and written through to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from sparkd.config import Config
from sparkd.engine.launch import MASTER_PORT, LocalFacts, plan_unit
from sparkd.engine.observer import Interests
from sparkd.engine.store import BrokenRecord, DeploymentStore
from sparkd.errors import AlreadyExists, InvalidSpec, NotFound, NotSupported, PeerUnavailable, PreconditionFailed
from sparkd.events import EventBus
from sparkd.host.protocols import Systemd
from sparkd.model.deployment import (
    Assignment,
    DeploymentRecord,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    Framework,
    NodePart,
    NodeStatus,
    PartSummary,
    WorkerInfo,
    is_unit_of,
    unit_name,
    unit_pattern,
)
from sparkd.model.observed import Snapshot
from sparkd.model.unit import UnitState

log = structlog.get_logger(__name__)


class Cluster(Protocol):
    """What the deployment engine needs from the peer layer (`sparkd.peer.manager.PeerManager`)."""

    def connected_workers(self) -> list[WorkerInfo]: ...

    async def start_part(self, node_id: str, spec: DeploymentSpec, assignment: Assignment) -> str: ...

    async def stop_part(self, node_id: str, name: str) -> str: ...

    def worker_unit_state(self, node_id: str, name: str) -> str: ...

    def head_state(self, name: str) -> DeploymentState | None: ...

    def consistency_blockers(self) -> list[str]:
        """Why the connected peers' software versions refuse a deployment (empty when they agree)."""
        ...


class DeploymentManager:
    """Creates, reports and deletes deployments on this node."""

    def __init__(
        self,
        config: Config,
        store: DeploymentStore,
        systemd: Systemd,
        facts: Callable[[], Awaitable[LocalFacts]],
        cluster: Cluster,
        snapshot: Snapshot,
        bus: EventBus,
        poke: Callable[[], None] = lambda: None,
        role: Callable[[], str] | None = None,
    ) -> None:
        """`role` is this node's role from pairing (`Membership.role`); tests that pin it in the config leave
        it out."""
        self.role = role or (lambda: config.node.role)
        self.config, self.store, self.systemd, self.facts, self.cluster = config, store, systemd, facts, cluster
        self.snapshot, self.bus, self.poke = snapshot, bus, poke
        self._lock = asyncio.Lock()
        self._starting: set[str] = set()  # created here, parts still being started
        records, broken = store.load_all()
        self._records = {r.spec.name: r for r in records}
        self._broken = {b.name: b for b in broken if b.name not in self._records}

    @property
    def is_head(self) -> bool:
        return self.role() == "head"

    # --- what the state loop watches ---------------------------------------------------------

    def interests(self) -> Interests:
        records = sorted(self._records.values(), key=lambda r: r.spec.name)
        ports = tuple(r.spec.port for r in records if r.assignment.rank == 0) if self.is_head else ()
        return Interests(units=tuple(r.unit for r in records), health_ports=ports)

    def refresh(self) -> None:
        """Turns the latest evidence into states: publishes transitions, updates hello summaries."""
        statuses = self.list()
        for s in statuses:
            self.bus.transition("deployment", s.name, s.state.value, s.message)
        self.snapshot.deployments = tuple(
            PartSummary(s.name, s.state, s.unit, s.unit_active_state) for s in statuses if s.spec is not None
        )

    def _remember_unit(self, state: UnitState) -> None:
        """Fresh evidence from a mutation; a unit probe that was already under way is discarded."""
        self.snapshot.units = {**self.snapshot.units, state.name: state}
        self.snapshot.units_generation += 1

    # --- head --------------------------------------------------------------------------------

    async def create(self, spec: DeploymentSpec) -> DeploymentStatus:
        """Validates against the cluster, persists, and starts every node's part (workers first)."""
        if not self.is_head:
            raise PreconditionFailed("deployments are created on the head; run this against the head's sparkd")
        if spec.framework is not Framework.VLLM:
            raise NotSupported(f"framework {spec.framework.value} cannot be launched yet; use vllm", field="framework")
        if spec.port == self.config.peer.port:
            raise InvalidSpec.one("port", f"{spec.port} is this cluster's sparkd peer port (peer.port); choose another")
        async with self._lock:
            if spec.name in self._broken:
                raise AlreadyExists(
                    f"deployment {spec.name} has an unreadable record; delete it first "
                    f"(sparkctl-client deploy down {spec.name})",
                    name=spec.name,
                )
            existing = self._records.get(spec.name)
            if existing is not None:
                if existing.spec == spec:
                    return self.status(existing)
                raise AlreadyExists(
                    f"deployment {spec.name} exists with a different spec; delete it first "
                    f"(sparkctl-client deploy down {spec.name})",
                    name=spec.name,
                )
            taken = [r.spec.name for r in self._records.values() if r.spec.port == spec.port]
            if taken:
                raise AlreadyExists(
                    f"port {spec.port} is the API port of deployment {taken[0]}; choose another port",
                    field="port",
                    name=taken[0],
                )
            workers = sorted(self.cluster.connected_workers(), key=lambda w: w.index)
            if len(workers) + 1 < spec.world_size:
                have = ", ".join(w.name for w in workers) or "none"
                raise PreconditionFailed(
                    f"deployment {spec.name} needs {spec.world_size} nodes (pipeline x tensor) but only "
                    f"{len(workers) + 1} are connected (workers: {have}); check `sparkctl-client peer status`",
                    field="parallelism",
                )
            blockers = self.cluster.consistency_blockers()
            if blockers:
                raise PreconditionFailed(
                    f"deployment {spec.name} is refused: the nodes' software differs: " + " | ".join(blockers[:4]),
                    field="versions",
                )
            facts = await self.facts()
            workers = workers[: spec.world_size - 1]
            parts = [NodePart(self.config.node.name, "", 0, facts.host_ip)] + [
                NodePart(w.name, w.node_id, rank, w.address) for rank, w in enumerate(workers, start=1)
            ]
            record = DeploymentRecord(
                spec=spec,
                assignment=self._assignment(0, spec, facts.host_ip),
                parts=tuple(parts),
                create_time=time.time(),
            )
            self.store.save(record)
            self._records[spec.name] = record
            self._starting.add(spec.name)
            log.info("deployment.created", deployment=spec.name, nodes=len(parts))
            started: list[NodePart] = []
            try:
                for part in reversed(parts[1:]):
                    await self.cluster.start_part(part.node_id, spec, self._assignment(part.rank, spec, facts.host_ip))
                    started.append(part)
                await self._start_local(spec, record.assignment)
            except Exception:
                log.warning("deployment.start_failed", deployment=spec.name)
                for part in started:
                    try:
                        await self.cluster.stop_part(part.node_id, spec.name)
                    except Exception as e:
                        log.error("deployment.cleanup_failed", deployment=spec.name, node=part.node_name, error=str(e))
                self._forget(spec.name)
                raise
            finally:
                self._starting.discard(spec.name)
            self.poke()
            return self.status(record)

    def _assignment(self, rank: int, spec: DeploymentSpec, master: str) -> Assignment:
        return Assignment(rank=rank, nnodes=spec.world_size, master_addr=master, master_port=MASTER_PORT)

    def _forget(self, name: str) -> None:
        self.store.delete(name)
        self._records.pop(name, None)
        self._broken.pop(name, None)
        self.bus.forget("deployment", name)

    async def delete(self, name: str) -> list[str]:
        """Stops the deployment on every node (workers first) and forgets it.

        A worker that cannot be reached keeps the record (so `deploy down` can be retried when it is
        back); everything reachable, the head's own unit included, is stopped anyway.
        """
        async with self._lock:
            if name in self._broken:
                return await self._delete_broken(self._broken[name])
            record = self._records.get(name)
            if record is None:
                raise NotFound(f"no deployment named {name}", name=name)
            stopped, unreachable = [], []
            for part in record.parts[1:]:
                try:
                    stopped.append(await self.cluster.stop_part(part.node_id, name))
                except PeerUnavailable:
                    unreachable.append(part.node_name)
            if unreachable:
                await self.systemd.stop(record.unit)
                raise PeerUnavailable(
                    f"stopped {', '.join([*filter(None, stopped), record.unit])}; could not reach "
                    f"{', '.join(unreachable)}: run `sparkctl-client deploy down {name}` again when it is back",
                    peer=unreachable[0],
                )
            stopped.append(await self._stop_local(name))
            return [u for u in stopped if u]

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

    # --- every node ---------------------------------------------------------------------------

    async def start_part(self, spec: DeploymentSpec, assignment: Assignment) -> UnitState:
        """Starts this worker's part, as the head asked through the peer API. Idempotent."""
        if self.is_head:
            raise PreconditionFailed("the head starts its own part; only workers take parts from the peer API")
        async with self._lock:
            old = self._records.get(spec.name)
            if old is not None and (old.spec, old.assignment) != (spec, assignment):
                # The head re-assigned this deployment: the old part (maybe another rank) goes first.
                await self.systemd.stop(old.unit)
                log.info("deployment.part_replaced", deployment=spec.name, unit=old.unit)
            record = DeploymentRecord(spec, assignment, (), time.time())
            self.store.save(record)
            self._records[spec.name] = record
            self._broken.pop(spec.name, None)
            state = await self._start_local(spec, assignment)
            self.poke()
            return state

    async def _start_local(self, spec: DeploymentSpec, assignment: Assignment) -> UnitState:
        unit = plan_unit(spec, assignment, await self.facts())
        state = await self.systemd.state(unit.name)
        if state.running:
            log.info("deployment.unit_adopted", unit=unit.name)
            self._remember_unit(state)
            return state
        if state.active_state == "failed":
            await self.systemd.stop(unit.name)  # resets the failed state
        await self.systemd.start(unit)
        log.info("deployment.unit_started", unit=unit.name, argv=" ".join(unit.argv))
        state = await self.systemd.state(unit.name)
        self._remember_unit(state)
        return state

    async def stop_part(self, name: str) -> str:
        """Stops this node's part of deployment `name` (as the head asked) and forgets it. Idempotent."""
        if self.is_head:
            raise PreconditionFailed("the head stops its own part; only workers take parts from the peer API")
        async with self._lock:
            if name in self._broken:
                return ", ".join(await self._delete_broken(self._broken[name]))
            return await self._stop_local(name)

    async def _stop_local(self, name: str) -> str:
        record = self._records.get(name)
        if record is None:
            return ""
        await self.systemd.stop(record.unit)
        self._forget(name)
        log.info("deployment.unit_stopped", unit=record.unit)
        return record.unit

    # --- reads (no I/O) -----------------------------------------------------------------------

    def get(self, name: str) -> DeploymentStatus:
        if name in self._broken:
            return self._broken_status(self._broken[name])
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"no deployment named {name}", name=name)
        return self.status(record)

    def list(self) -> list[DeploymentStatus]:
        statuses = [self.status(r) for r in self._records.values()]
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

    def status(self, record: DeploymentRecord) -> DeploymentStatus:
        """The deployment's state, from the latest evidence."""
        own = self.snapshot.unit(record.unit)
        name = record.spec.name
        nodes: list[NodeStatus] = []
        for part in record.parts:
            active = (
                own.active_state
                if part.rank == 0
                else (self.cluster.worker_unit_state(part.node_id, name) or "unknown")
            )
            nodes.append(NodeStatus(part.node_name, part.rank, part.address, unit_name(name, part.rank), active))
        if name in self._starting:
            state, message = DeploymentState.PENDING, "starting the nodes' parts (workers first)"
        elif own.active_state == "unknown":
            state, message = DeploymentState.PENDING, f"waiting for the first observation of unit {record.unit}"
        elif not own.running:
            state, message = DeploymentState.FAILED, f"unit {record.unit} is {own.active_state}"
        elif record.assignment.rank == 0:
            dead = [n for n in nodes if n.unit_active_state in ("failed", "inactive")]
            if dead:
                state = DeploymentState.FAILED
                message = (
                    f"rank {dead[0].rank} unit {dead[0].unit} on {dead[0].node_name} is {dead[0].unit_active_state}"
                )
            elif self.snapshot.health.get(record.spec.port) == 200:
                state, message = DeploymentState.READY, f"serving on port {record.spec.port}"
            else:
                state, message = DeploymentState.STARTING, f"waiting for /health on port {record.spec.port}"
        else:
            head = self.cluster.head_state(name)
            if head is DeploymentState.READY:
                state, message = DeploymentState.READY, "unit active; the head is serving"
            else:
                state, message = DeploymentState.STARTING, "unit active; waiting for the head"
        return DeploymentStatus(
            name, record.spec, state, message, tuple(nodes), record.create_time, record.unit, own.active_state
        )
