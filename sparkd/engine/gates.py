"""Gates before start: every node's own launch plan, and every reason not to start, before anything starts.

The head asks each worker to prepare its part (`PreparePart`: the worker renders its own unit,
checks its ports, reads its memory and makes its model manifest) and does the same for its own,
then refuses on any of: the nodes' software differs (the peer handshake's consistency report), a
node lacks the model or holds different model files (the manifests: files, sizes, SHA-256), a port
a rank listens on is taken, or the model does not fit the nodes' memory (`sparkd.model.memory`).
Every refusal names the node and the field. `deploy plan` shows the same answer without starting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sparkd.config import Config
from sparkd.engine import manifest
from sparkd.engine.cluster import Cluster
from sparkd.engine.launch import LocalFacts, plan_unit
from sparkd.engine.launchers import launcher_for
from sparkd.engine.versions import image_digest
from sparkd.errors import PeerUnavailable, SparkdError
from sparkd.host.protocols import Host
from sparkd.model import memory
from sparkd.model.deployment import Assignment, DeploymentSpec, NodePart, PartPlan
from sparkd.model.model_config import precision_from_config, shape_from_config
from sparkd.model.observed import Snapshot


@dataclass(frozen=True)
class Preflight:
    """Every node's plan and the gates' verdict."""

    plans: tuple[PartPlan, ...]
    memory: memory.MemoryPlan | None
    blockers: tuple[str, ...]


def listen_ports(spec: DeploymentSpec, assignment: Assignment) -> tuple[int, ...]:
    """The TCP ports a rank listens on (the framework's launcher says which)."""
    return launcher_for(spec).listen_ports(spec, assignment)


class Gates:
    """Prepares parts and checks a deployment against the cluster."""

    def __init__(
        self, config: Config, host: Host, facts: Callable[[], Awaitable[LocalFacts]], snapshot: Snapshot
    ) -> None:
        self.config, self.host, self.facts, self.snapshot = config, host, facts, snapshot

    async def local_plan(self, spec: DeploymentSpec, assignment: Assignment, peers: tuple[str, ...] = ()) -> PartPlan:
        """This node's part: its unit, its ports, its memory and its model manifest. Starts nothing. `peers`:
        on the head, the other ranks' addresses."""
        facts = await self.facts()
        unit = plan_unit(spec, assignment, facts, peers)
        ports = listen_ports(spec, assignment)
        busy = tuple(self.host.ports.busy(list(ports)))
        problems: list[str] = []
        digest, config = "", b""
        files: tuple[tuple[str, int, str], ...] = ()
        try:
            made = await asyncio.to_thread(manifest.compute, self.host.files, spec.model)
            digest, config = made.digest, made.config_json
            files = tuple((e.path, e.size, e.sha256) for e in made.entries)
        except SparkdError as e:
            problems.append(e.message)
        image = ""
        if spec.runtime.container:
            image, problem = await image_digest(self.host.runner, spec.runtime.image, node=self.config.node.name)
            if problem:
                problems.append(problem)
        total = self.snapshot.memory.total_bytes
        if not total:
            problems.append("the node's memory is unknown (MemTotal in /proc/meminfo could not be read)")
        return PartPlan(
            self.config.node.name,
            assignment.rank,
            facts.host_ip,
            unit,
            ports,
            busy,
            total,
            digest,
            files,
            config,
            tuple(problems),
            image_digest=image,
        )

    async def check(
        self,
        spec: DeploymentSpec,
        parts: tuple[NodePart, ...],
        master_port: int,
        cluster: Cluster,
        *,
        running: bool = False,
    ) -> Preflight:
        """Every node's plan (the head's own and, through the peer protocol, each worker's) and the blockers.
        `running`: the deployment runs now (a plan of it), so its own ranks hold its ports."""
        master = parts[0].address

        def assignment(rank: int) -> Assignment:
            return Assignment(rank, spec.world_size, master, master_port)

        blockers = [f"the nodes' software differs: {b}" for b in cluster.consistency_blockers()]

        async def remote(part: NodePart) -> PartPlan | None:
            try:
                return await cluster.prepare_part(part.node_id, spec, assignment(part.rank))
            except PeerUnavailable as e:
                blockers.append(f"{part.node_name}: cannot prepare rank {part.rank}: {e.message}")
                return None

        own = await self.local_plan(spec, assignment(0), tuple(p.address for p in parts[1:]))
        answers = await asyncio.gather(*(remote(p) for p in parts[1:]))
        plans = (own, *(a for a in answers if a is not None))
        for plan in plans:
            blockers += [f"{plan.node_name}: {p}" for p in plan.problems]
            for port in () if running else plan.busy_ports:
                what = "the API port (port)" if port == spec.port else "the rendezvous port (--master-port)"
                blockers.append(
                    f"{plan.node_name}: port {port}, {what} of rank {plan.rank}, is already in use; "
                    "stop what listens there or choose another port"
                )
        for plan in plans[1:]:
            if own.image_digest and plan.image_digest and plan.image_digest != own.image_digest:
                blockers.append(
                    f"{plan.node_name}: image {spec.runtime.image} is {plan.image_digest[:19]}..., but "
                    f"{own.image_digest[:19]}... on {own.node_name}: pull the same image on every node"
                )
            if own.model_digest and plan.model_digest:  # the files themselves, never a digest a peer sent
                blockers += manifest.compare_entries(own.model_files, plan.model_files, own.node_name, plan.node_name)
        plan_memory = None
        if own.model_config and len(plans) == len(parts) and all(p.memory_bytes for p in plans):
            try:
                plan_memory = memory_plan(spec, own.model_config, [(p.node_name, p.memory_bytes) for p in plans])
                blockers += plan_memory.refusals
            except ValueError as e:
                blockers.append(f"{own.node_name}: model config.json of {spec.model}: {e}")
        return Preflight(plans, plan_memory, tuple(blockers))


def memory_plan(spec: DeploymentSpec, config_json: bytes, nodes: list[tuple[str, int]]) -> memory.MemoryPlan:
    """The memory plan of `spec` with the model's config.json over `nodes`; ValueError for a config it cannot
    read."""
    try:
        doc = json.loads(config_json)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    shape, precision = shape_from_config(doc), precision_from_config(doc)
    engine = spec.engine
    return memory.plan_memory(
        shape,
        precision,
        pipeline=spec.pipeline,
        tensor=spec.tensor,
        context_length=engine.context_length or shape.max_position or 4096,
        concurrency=engine.concurrency or 1,
        nodes=nodes,
        memory_fraction=engine.memory_fraction or memory.MEMORY_FRACTION,
        kv_cache_dtype=engine.kv_cache_dtype,
    )
