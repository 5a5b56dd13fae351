"""Deployments: create on the head, start every node's part in order, report evidence-based state.

The head validates the spec, assigns ranks (itself rank 0, connected workers by index),
persists the record (desired state) and asks each worker, through the peer layer, to
start its part, workers first, then starts its own. Each node starts only its own unit.
State is computed from evidence, not remembered: the unit's ActiveState from systemd,
the workers' unit states from their last hello, and the head's `/health` answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from sparkd.config import Config
from sparkd.engine.launch import MASTER_PORT, LocalFacts, plan_unit, unit_name
from sparkd.engine.store import DeploymentStore
from sparkd.errors import AlreadyExists, NotFound, NotSupported, PeerUnavailable, PreconditionFailed
from sparkd.host.http import http_status
from sparkd.host.systemd import Systemd, UnitState
from sparkd.model.deployment import (
    Assignment,
    DeploymentRecord,
    DeploymentSpec,
    DeploymentState,
    Framework,
    NodePart,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    """A connected worker, as the peer layer knows it."""

    node_id: str
    name: str
    index: int
    address: str


class Cluster(Protocol):
    """What the deployment engine needs from the peer layer."""

    def connected_workers(self) -> list[WorkerInfo]: ...

    async def start_part(self, node_id: str, spec: DeploymentSpec, assignment: Assignment) -> str: ...

    async def stop_part(self, node_id: str, name: str) -> str: ...

    def worker_unit_state(self, node_id: str, name: str) -> str: ...

    def head_state(self, name: str) -> DeploymentState | None: ...


@dataclass(frozen=True)
class NodeStatus:
    """One node's part, observed."""

    node_name: str
    rank: int
    address: str
    unit: str
    unit_active_state: str


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment and its observed state."""

    spec: DeploymentSpec
    state: DeploymentState
    message: str
    nodes: tuple[NodeStatus, ...]
    create_time: float
    unit: str
    unit_active_state: str


class DeploymentManager:
    """Creates, reports and deletes deployments on this node."""

    def __init__(
        self,
        config: Config,
        store: DeploymentStore,
        systemd: Systemd,
        facts: Callable[[], Awaitable[LocalFacts]],
        cluster: Cluster,
    ) -> None:
        self.config, self.store, self.systemd, self.facts, self.cluster = config, store, systemd, facts, cluster
        self._lock = asyncio.Lock()
        self._last_state: dict[str, DeploymentState] = {}

    @property
    def is_head(self) -> bool:
        return self.config.node.role == "head"

    # --- head --------------------------------------------------------------------------------

    async def create(self, spec: DeploymentSpec) -> DeploymentStatus:
        """Validates against the cluster, persists, and starts every node's part (workers first)."""
        if not self.is_head:
            raise PreconditionFailed("deployments are created on the head; run this against the head's sparkd")
        if spec.framework is not Framework.VLLM:
            raise NotSupported(f"framework {spec.framework.value} cannot be launched yet; use vllm", field="framework")
        async with self._lock:
            existing = self.store.load(spec.name)
            if existing is not None:
                if existing.spec == spec:
                    return await self.status(existing)
                raise AlreadyExists(
                    f"deployment {spec.name} exists with a different spec; delete it first "
                    f"(sparkctl-client deploy down {spec.name})",
                    name=spec.name,
                )
            workers = sorted(self.cluster.connected_workers(), key=lambda w: w.index)
            if len(workers) + 1 < spec.world_size:
                have = ", ".join(w.name for w in workers) or "none"
                raise PreconditionFailed(
                    f"deployment {spec.name} needs {spec.world_size} nodes (pipeline x tensor) but only "
                    f"{len(workers) + 1} are connected (workers: {have}); check `sparkctl-client peer status`",
                    field="parallelism",
                )
            facts = await self.facts()
            workers = workers[: spec.world_size - 1]
            parts = [NodePart(self.config.node.name, "", 0, facts.host_ip, unit_name(spec.name, 0))] + [
                NodePart(w.name, w.node_id, rank, w.address, unit_name(spec.name, rank))
                for rank, w in enumerate(workers, start=1)
            ]
            record = DeploymentRecord(
                spec=spec,
                assignment=self._assignment(0, spec, facts.host_ip),
                unit=parts[0].unit,
                parts=tuple(parts),
                create_time=time.time(),
            )
            self.store.save(record)
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
                self.store.delete(spec.name)
                raise
            return await self.status(record)

    def _assignment(self, rank: int, spec: DeploymentSpec, master: str) -> Assignment:
        return Assignment(rank=rank, nnodes=spec.world_size, master_addr=master, master_port=MASTER_PORT)

    async def delete(self, name: str) -> list[str]:
        """Stops the deployment on every node (workers first) and forgets it.

        A worker that cannot be reached keeps the record (so `deploy down` can be retried when it is
        back); everything reachable, the head's own unit included, is stopped anyway.
        """
        async with self._lock:
            record = self.store.load(name)
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
            stopped.append(await self.stop_part(name))
            self._last_state.pop(name, None)
            return [u for u in stopped if u]

    # --- every node ---------------------------------------------------------------------------

    async def start_part(self, spec: DeploymentSpec, assignment: Assignment) -> UnitState:
        """Starts this worker's part, as the head asked through the peer API. Idempotent."""
        if self.is_head:
            raise PreconditionFailed("the head starts its own part; only workers take parts from the peer API")
        async with self._lock:
            self.store.save(DeploymentRecord(spec, assignment, unit_name(spec.name, assignment.rank), (), time.time()))
            return await self._start_local(spec, assignment)

    async def _start_local(self, spec: DeploymentSpec, assignment: Assignment) -> UnitState:
        unit = plan_unit(spec, assignment, await self.facts())
        state = await self.systemd.state(unit.name)
        if state.running:
            log.info("deployment.unit_adopted", unit=unit.name)
            return state
        if state.active_state == "failed":
            await self.systemd.stop(unit.name)  # resets the failed state
        await self.systemd.start(unit)
        log.info("deployment.unit_started", unit=unit.name, argv=" ".join(unit.argv))
        return await self.systemd.state(unit.name)

    async def stop_part(self, name: str) -> str:
        """Stops this node's unit of deployment `name` and forgets the record. Idempotent."""
        record = self.store.load(name)
        if record is None:
            return ""
        await self.systemd.stop(record.unit)
        self.store.delete(name)
        log.info("deployment.unit_stopped", unit=record.unit)
        return record.unit

    async def get(self, name: str) -> DeploymentStatus:
        record = self.store.load(name)
        if record is None:
            raise NotFound(f"no deployment named {name}", name=name)
        return await self.status(record)

    async def list(self) -> list[DeploymentStatus]:
        return [await self.status(r) for r in self.store.all()]

    async def status(self, record: DeploymentRecord) -> DeploymentStatus:
        """The deployment's state, from evidence."""
        own = await self.systemd.state(record.unit)
        name = record.spec.name
        nodes: list[NodeStatus] = []
        for part in record.parts:
            active = (
                own.active_state
                if part.rank == 0
                else (self.cluster.worker_unit_state(part.node_id, name) or "unknown")
            )
            nodes.append(NodeStatus(part.node_name, part.rank, part.address, part.unit, active))
        if not own.running:
            state, message = DeploymentState.FAILED, f"unit {record.unit} is {own.active_state}"
        elif record.assignment.rank == 0:
            dead = [n for n in nodes if n.unit_active_state in ("failed", "inactive")]
            if dead:
                state = DeploymentState.FAILED
                message = (
                    f"rank {dead[0].rank} unit {dead[0].unit} on {dead[0].node_name} is {dead[0].unit_active_state}"
                )
            elif await http_status("127.0.0.1", record.spec.port, "/health") == 200:
                state, message = DeploymentState.READY, f"serving on port {record.spec.port}"
            else:
                state, message = DeploymentState.STARTING, f"waiting for /health on port {record.spec.port}"
        else:
            head = self.cluster.head_state(name)
            if head is DeploymentState.READY:
                state, message = DeploymentState.READY, "unit active; the head is serving"
            else:
                state, message = DeploymentState.STARTING, "unit active; waiting for the head"
        if self._last_state.get(name) is not state:
            self._last_state[name] = state
            (log.warning if state is DeploymentState.FAILED else log.info)(
                "deployment.state_changed", deployment=name, state=state.value, reason=message
            )
        return DeploymentStatus(
            record.spec, state, message, tuple(nodes), record.create_time, record.unit, own.active_state
        )
