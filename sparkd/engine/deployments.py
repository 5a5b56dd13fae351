"""Deployments: create on the head, start every node's part in order, report evidence-based state.

The head validates the spec, gives it a rendezvous port of its own, assigns ranks (itself rank
0, connected workers by index), runs the gates (`sparkd.engine.gates`), persists the record
(desired state) and asks each worker, through the peer layer, to start its part, workers first,
then starts its own. Each node starts only its own units. State is computed from evidence, never
remembered (`sparkd.engine.health`): the units and serving probes as the state loop last saw
them (`Snapshot`) and the workers' reports from their last hellos. Reads touch no D-Bus and no
HTTP: records are kept in memory and written through to the store. The head's supervisor
(`sparkd.engine.supervisor`) restarts what fails; this module holds the steps it takes. What each
node does with its own part is `sparkd.engine.deployment_parts`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import structlog

from sparkd.config import Config
from sparkd.engine import ray_wait
from sparkd.engine.cluster import Cluster
from sparkd.engine.deployment_parts import DeploymentParts
from sparkd.engine.gates import Gates, Preflight
from sparkd.engine.launch import LocalFacts, runtime_for
from sparkd.engine.launchers import launcher_for
from sparkd.engine.runtimes.container import container_name
from sparkd.engine.store import DeploymentStore
from sparkd.errors import AlreadyExists, InvalidSpec, NotFound, NotSupported, PeerUnavailable, PreconditionFailed
from sparkd.events import EventBus
from sparkd.host.protocols import Host
from sparkd.model.deployment import (
    RENDEZVOUS_PORTS,
    Assignment,
    DeploymentRecord,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    NodePart,
    unit_name,
)
from sparkd.model.observed import Snapshot

log = structlog.get_logger(__name__)

TAIL_LINES = 10


class DeploymentManager(DeploymentParts):
    """Creates, reports and deletes deployments on this node.

    The head's side is here; every node's own part is `DeploymentParts` (`sparkd.engine.deployment_parts`),
    and the read side under it is `DeploymentViews` (`sparkd.engine.deployment_views`).
    """

    def __init__(
        self,
        config: Config,
        store: DeploymentStore,
        host: Host,
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
        self.config, self.store, self.host, self.facts, self.cluster = config, store, host, facts, cluster
        self.systemd = host.systemd
        self.snapshot, self.bus, self.poke = snapshot, bus, poke
        self.gates = Gates(config, host, facts, snapshot)
        self.lock = asyncio.Lock()
        self.busy: dict[str, tuple[DeploymentState, str]] = {}  # deployment -> what is being done to it
        self._reserved: dict[str, tuple[int, int]] = {}  # being created: name -> (API port, rendezvous port)
        self.served: set[str] = set()  # deployments READY at least once since they were last (re)started
        self.supervisor_view: Callable[[DeploymentStatus], DeploymentStatus] = lambda s: s
        self._tails: dict[tuple[str, float], tuple[str, ...]] = {}  # (unit, exit time) -> its journal's last lines
        self._tail_tasks: set[asyncio.Task[None]] = set()
        records, broken = store.load_all()
        self.records = {r.spec.name: r for r in records}
        self._broken = {b.name: b for b in broken if b.name not in self.records}

    # --- head --------------------------------------------------------------------------------

    def _check_creatable(self, spec: DeploymentSpec) -> None:
        if not self.is_head:
            raise PreconditionFailed(
                f"deployments are created on the head ({self.cluster.head_name or 'the paired head'}); "
                "run this against the head's sparkd"
            )
        if spec.port == self.config.peer.port:
            raise InvalidSpec.one("port", f"{spec.port} is this cluster's sparkd peer port (peer.port); choose another")

    def _layout(self, spec: DeploymentSpec, facts: LocalFacts) -> tuple[NodePart, ...]:
        workers = sorted(self.cluster.connected_workers(), key=lambda w: w.index)
        if len(workers) + 1 < spec.world_size:
            have = ", ".join(w.name for w in workers) or "none"
            raise PreconditionFailed(
                f"deployment {spec.name} needs {spec.world_size} nodes (pipeline x tensor) but only "
                f"{len(workers) + 1} are connected (workers: {have}); check `sparkctl-client peer status`",
                field="parallelism",
            )
        workers = workers[: spec.world_size - 1]
        return (NodePart(self.config.node.name, "", 0, facts.host_ip),) + tuple(
            NodePart(w.name, w.node_id, rank, w.address) for rank, w in enumerate(workers, start=1)
        )

    def _master_port(self, name: str) -> int:
        taken = {r.assignment.master_port for r in self.records.values() if r.spec.name != name}
        taken |= {ports[1] for n, ports in self._reserved.items() if n != name}
        for port in RENDEZVOUS_PORTS:
            if port not in taken:
                return port
        raise PreconditionFailed(
            f"every rendezvous port ({RENDEZVOUS_PORTS.start}-{RENDEZVOUS_PORTS.stop - 1}) is taken by a "
            "deployment; delete one first"
        )

    async def plan(self, spec: DeploymentSpec) -> tuple[Preflight, int]:
        """What `create` would start, and why it would refuse; starts nothing."""
        self._check_creatable(spec)
        existing = self.records.get(spec.name)
        port = existing.assignment.master_port if existing else self._master_port(spec.name)
        parts = existing.parts if existing else self._layout(spec, await self.facts())
        return await self.gates.check(spec, parts, port, self.cluster, running=existing is not None), port

    async def create(self, spec: DeploymentSpec) -> DeploymentStatus:
        """Validates against the cluster, runs the gates, persists, and starts every node's part (workers
        first). The gates run without the lock (a first model manifest hashes for minutes: other deployments
        are not held up meanwhile); the name and its ports are reserved while they run."""
        self._check_creatable(spec)
        name = spec.name
        async with self.lock:
            if name in self._broken:
                raise AlreadyExists(
                    f"deployment {name} has an unreadable record; delete it first (sparkctl-client deploy down {name})",
                    name=name,
                )
            existing = self.records.get(name)
            if existing is not None:
                if existing.spec == spec:
                    return self.status(existing)
                raise AlreadyExists(
                    f"deployment {name} exists with a different spec; delete it first "
                    f"(sparkctl-client deploy down {name})",
                    name=name,
                )
            if name in self._reserved:
                raise AlreadyExists(f"deployment {name} is being created; wait for that call", name=name)
            api_ports = {r.spec.name: r.spec.port for r in self.records.values()}
            api_ports.update({n: ports[0] for n, ports in self._reserved.items()})
            taken = [n for n, port in sorted(api_ports.items()) if port == spec.port]
            if taken:
                raise AlreadyExists(
                    f"port {spec.port} is the API port of deployment {taken[0]}; choose another port",
                    field="port",
                    name=taken[0],
                )
            facts = await self.facts()
            parts = self._layout(spec, facts)
            master_port = self._master_port(name)
            self._reserved[name] = (spec.port, master_port)
        try:
            self.busy[name] = (DeploymentState.PENDING, "checking the gates on every node")
            try:
                preflight = await self.gates.check(spec, parts, master_port, self.cluster)
            finally:
                self.busy.pop(name, None)
            refuse(name, preflight)
            async with self.lock:
                record = DeploymentRecord(
                    spec=spec,
                    assignment=Assignment(0, spec.world_size, facts.host_ip, master_port),
                    parts=parts,
                    create_time=time.time(),
                )
                self.store.save(record)
                self.records[name] = record
                log.info("deployment.created", deployment=name, nodes=len(parts), master_port=master_port)
                try:
                    await self.launch(record)
                except Exception:
                    self._forget(name)
                    raise
                return self.status(record)
        finally:
            self._reserved.pop(name, None)

    async def launch(self, record: DeploymentRecord) -> None:
        """Starts every node's part, workers first (the highest rank first), then the head's; on a failure,
        stops what it started and raises. The caller holds the lock."""
        spec = record.spec
        self.busy[spec.name] = (DeploymentState.PENDING, "starting the nodes' parts (workers first)")
        self.served.discard(spec.name)
        # The previous run's serving evidence says nothing of this one (a restart must not inherit a lost
        # /health count, or READY from before): it starts afresh, and a probe under way is discarded.
        self.snapshot.serving = {p: e for p, e in self.snapshot.serving.items() if p != spec.port}
        self.snapshot.serving_generation += 1
        order = launcher_for(spec).order
        started: list[NodePart] = []
        try:
            if order.head_first:
                await self._start_local(spec, record.assignment, self._peers(record), roles=order.head_first)
            for part in reversed(record.parts[1:]):
                a = dataclasses.replace(record.assignment, rank=part.rank)
                await self.cluster.start_part(part.node_id, spec, a)
                started.append(part)
            if order.wait:
                self.busy[spec.name] = (DeploymentState.PENDING, f"waiting for {order.wait}")
                await self.wait_for(order.wait, record)
            await self._start_local(spec, record.assignment, self._peers(record))
        except Exception:
            log.warning("deployment.start_failed", deployment=spec.name)
            for part in started:
                try:
                    await self.cluster.stop_part(part.node_id, spec.name)
                except Exception as e:
                    log.error("deployment.cleanup_failed", deployment=spec.name, node=part.node_name, error=str(e))
            await self._stop_units(record)
            raise
        finally:
            self.busy.pop(spec.name, None)
        self.poke()

    @staticmethod
    def _peers(record: DeploymentRecord) -> tuple[str, ...]:
        return tuple(p.address for p in record.parts[1:])

    async def wait_for(self, what: str, record: DeploymentRecord) -> None:
        """Waits for a framework's own start condition between the workers and the head's main unit."""
        if what != "ray-gpus":
            raise NotSupported(f"sparkd cannot wait for {what}", field="mode")
        spec, a = record.spec, record.assignment
        runtime = runtime_for(spec, await self.facts())
        container = container_name(unit_name(spec.name, 0, "ray")) if spec.runtime.container else ""
        argv = ray_wait.status_argv(runtime.executable("ray"), f"{a.master_addr}:{a.master_port}", container)
        await ray_wait.wait_for_gpus(self.host.runner, argv, spec.world_size, spec.name)

    async def halt(self, record: DeploymentRecord) -> tuple[list[str], list[str]]:
        """Stops every node's part, the head's serving rank first (clients see a refused connection, not a
        hang), then the workers, then what the head's rank ran on (the Ray head, which the workers' Ray nodes
        would otherwise wait for while they stop). The stopped units, and the nodes that could not be reached."""
        name = record.spec.name
        stopped, unreachable = await self._stop_units(record, main_only=True), []
        for part in record.parts[1:]:
            try:
                stopped.append(await self.cluster.stop_part(part.node_id, name))
            except PeerUnavailable:
                unreachable.append(part.node_name)
        stopped += await self._stop_units(record)
        return list(dict.fromkeys(u for u in stopped if u)), unreachable

    async def delete(self, name: str, force: bool = False) -> list[str]:
        """Stops the deployment on every node (the head's rank first) and forgets it.

        A worker refuses (the head coordinates the deployment) unless `force`: then it stops only its own
        part, for a head that is gone for good. A worker that cannot be reached keeps the record on the
        head (so `deploy down` can be retried when it is back); everything reachable is stopped anyway.
        """
        if not self.is_head and not force and name in self.records:
            head = self.cluster.head_name or "the head"
            raise PreconditionFailed(
                f"deployment {name} is coordinated by {head}: run `sparkctl-client deploy down {name}` on {head}; "
                f"if {head} is gone for good, `deploy down {name} --force` here stops this node's part only",
                name=name,
            )
        async with self.lock:
            if name in self._broken:
                return await self._delete_broken(self._broken[name])
            record = self.records.get(name)
            if record is None:
                raise NotFound(f"no deployment named {name}", name=name)
            if not self.is_head:
                return [u for u in [await self._stop_local(name)] if u]
            if not record.supervision.deleting:  # desired state first: no supervisor restarts it from here on
                record = dataclasses.replace(record, supervision=dataclasses.replace(record.supervision, deleting=True))
                self.store.save(record)
                self.records[name] = record
            self.busy[name] = (DeploymentState.STOPPING, "stopping (the head's rank first, then the workers)")
            try:
                stopped, unreachable = await self.halt(record)
            finally:
                self.busy.pop(name, None)
            if unreachable:
                raise PeerUnavailable(
                    f"stopped {', '.join(stopped)}; could not reach {', '.join(unreachable)}: run "
                    f"`sparkctl-client deploy down {name}` again when it is back",
                    peer=unreachable[0],
                )
            self._forget(name)
            log.info("deployment.deleted", deployment=name, units=stopped)
            return stopped


def refuse(name: str, preflight: Preflight) -> None:
    """Raises when a gate refuses the deployment, naming every node and field (at most 8 of them)."""
    if preflight.blockers:
        shown = list(preflight.blockers[:8])
        more = f" (and {len(preflight.blockers) - 8} more)" if len(preflight.blockers) > 8 else ""
        raise PreconditionFailed(
            f"deployment {name} is refused before anything started: " + " | ".join(shown) + more,
            field="gates",
        )
