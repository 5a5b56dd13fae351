"""The peer layer as the deployment engine sees it (`engine.deployments.Cluster`), and part plans on the wire.

`PeerCluster` wraps the peer table (`PeerManager`) and adds the head's calls that concern parts
beyond start and stop: PreparePart (a worker's own launch plan and the gates' facts) and PartLogs
(a worker's journal, streamed). Everything a worker answers is bounded and checked here before the
engine sees it; a worker cannot name a unit that is not the one the head asked about.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import grpc

from sparkd.errors import FieldViolation, InvalidSpec, PeerUnavailable, shown
from sparkd.model.deployment import (
    Assignment,
    DeploymentSpec,
    DeploymentState,
    PartPlan,
    PartReport,
    WorkerInfo,
    unit_name,
)
from sparkd.model.unit import JournalLine, UnitSpec, unit_properties
from sparkd.peer import convert
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb

PREPARE_TIMEOUT_S = 900.0  # a first manifest of a 400 GB model hashes for minutes; later ones are cached
MAX_ARGV, MAX_ARG = 512, 4096
MAX_ENV, MAX_PROPERTIES, MAX_PORTS, MAX_PROBLEMS = 256, 64, 16, 32
MAX_FILES, MAX_CONFIG = 4096, 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IMAGE_ID = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def plan_to_proto(plan: PartPlan) -> pb.PreparePartResponse:
    return pb.PreparePartResponse(
        unit=plan.unit.name,
        argv=list(plan.unit.argv),
        environment=dict(plan.unit.environment),
        properties=unit_properties(plan.unit),
        listen_ports=list(plan.listen_ports),
        busy_ports=list(plan.busy_ports),
        memory_bytes=plan.memory_bytes,
        model_digest=plan.model_digest,
        model_files=[pb.ManifestEntry(path=p, size=s, sha256=h) for p, s, h in plan.model_files],
        model_config=plan.model_config,
        problems=list(plan.problems),
        image_digest=plan.image_digest,
    )


def plan_from_proto(m: pb.PreparePartResponse, worker: WorkerInfo, name: str, rank: int) -> PartPlan:
    """A worker's answer, checked: counts, sizes, ports, hashes, and the unit the head asked about."""
    bad: list[FieldViolation] = []

    def check(ok: bool, field: str, problem: str) -> None:
        if not ok:
            bad.append(FieldViolation(field, problem))

    expected = unit_name(name, rank)
    check(m.unit == expected, "unit", f"must be {expected}, got {shown(m.unit)}")
    # Empty for a rank the framework's own launcher starts (a TensorRT-LLM worker, from the head's mpirun).
    check(len(m.argv) <= MAX_ARGV, "argv", f"must be at most {MAX_ARGV} words, got {len(m.argv)}")
    check(all(len(a) <= MAX_ARG for a in m.argv), "argv", f"every word must be at most {MAX_ARG} characters")
    check(len(m.environment) <= MAX_ENV, "environment", f"at most {MAX_ENV} variables")
    check(all(_ENV_NAME.fullmatch(k) and len(v) <= MAX_ARG for k, v in m.environment.items()), "environment", "bad")
    check(len(m.properties) <= MAX_PROPERTIES, "properties", f"at most {MAX_PROPERTIES}")
    for field in ("listen_ports", "busy_ports"):
        ports = getattr(m, field)
        check(len(ports) <= MAX_PORTS and all(1 <= p <= 65535 for p in ports), field, "at most 16 TCP ports")
    check(m.memory_bytes < 1 << 46, "memory_bytes", f"implausible: {m.memory_bytes}")
    check(m.model_digest == "" or bool(_HEX64.fullmatch(m.model_digest)), "model_digest", "64 hex digits or empty")
    check(len(m.model_files) <= MAX_FILES, "model_files", f"at most {MAX_FILES} files")
    check(
        all(0 < len(f.path) <= 4096 and bool(_HEX64.fullmatch(f.sha256)) and f.size < 1 << 44 for f in m.model_files),
        "model_files",
        "each needs a path, a size and a SHA-256",
    )
    check(len(m.model_config) <= MAX_CONFIG, "model_config", f"at most {MAX_CONFIG} bytes")
    check(len(m.problems) <= MAX_PROBLEMS, "problems", f"at most {MAX_PROBLEMS}")
    check(m.image_digest == "" or bool(_IMAGE_ID.fullmatch(m.image_digest)), "image_digest", "sha256:<64 hex> or empty")
    if bad:
        raise InvalidSpec([FieldViolation(f"PreparePart from {worker.name}: {v.field}", v.description) for v in bad])
    unit = UnitSpec(expected, tuple(m.argv), "", {k: m.environment[k] for k in sorted(m.environment)})
    return PartPlan(
        node_name=worker.name,
        rank=rank,
        address=worker.address,
        unit=unit,
        listen_ports=tuple(m.listen_ports),
        busy_ports=tuple(m.busy_ports),
        memory_bytes=m.memory_bytes,
        model_digest=m.model_digest,
        model_files=tuple((convert.printable(f.path, 4096), f.size, f.sha256) for f in m.model_files),
        model_config=bytes(m.model_config),
        problems=tuple(convert.printable(p, 512) for p in m.problems),
        properties={convert.printable(k, 64): convert.printable(v, 512) for k, v in sorted(m.properties.items())},
        image_digest=m.image_digest,
    )


class PeerCluster:
    """Implements `sparkd.engine.deployments.Cluster` over the peer table."""

    def __init__(self, peers: PeerManager) -> None:
        self.peers = peers

    def connected_workers(self) -> list[WorkerInfo]:
        return self.peers.connected_workers()

    def part_report(self, node_id: str, name: str) -> PartReport:
        return self.peers.part_report(node_id, name)

    def head_state(self, name: str) -> DeploymentState | None:
        return self.peers.head_state(name)

    @property
    def head_name(self) -> str:
        return self.peers.head_name

    def consistency_blockers(self) -> list[str]:
        return self.peers.consistency_blockers()

    async def start_part(
        self, node_id: str, spec: DeploymentSpec, assignment: Assignment, launch_command: str = ""
    ) -> str:
        return await self.peers.start_part(node_id, spec, assignment, launch_command)

    async def stop_part(self, node_id: str, name: str) -> str:
        return await self.peers.stop_part(node_id, name)

    def _worker(self, node_id: str) -> WorkerInfo:
        for w in self.peers.connected_workers():
            if w.node_id == node_id:
                return w
        peer = self.peers.peer(node_id)
        raise PeerUnavailable(f"{peer.name if peer else node_id} is not connected", peer=node_id)

    async def prepare_part(self, node_id: str, spec: DeploymentSpec, assignment: Assignment) -> PartPlan:
        worker = self._worker(node_id)
        peer = self.peers._connected(node_id)
        request = pb.PreparePartRequest(
            spec=convert.spec_to_proto(spec), assignment=convert.assignment_to_proto(assignment), epoch=peer.epoch
        )
        response = await self.peers._call(peer, "PreparePart", request, PREPARE_TIMEOUT_S)
        return plan_from_proto(response, worker, spec.name, assignment.rank)

    async def part_logs(self, node_id: str, name: str, lines: int, follow: bool) -> AsyncIterator[JournalLine]:
        peer = self.peers._connected(node_id)
        stub = await self.peers.stub(node_id)
        request = pb.PartLogsRequest(name=name, lines=lines, follow=follow, epoch=peer.epoch)
        call = stub.PartLogs(request, timeout=None if follow else 30.0)
        count = 0
        try:
            async for line in call:
                count += 1
                if not follow and count > lines:
                    break  # a worker may send more than asked: history is at most `lines`
                yield JournalLine(
                    timestamp=convert._time(line.time),
                    unit=convert.printable(line.unit, 128),
                    message=convert.printable(line.message, 4096),
                    priority=6,
                )
        except grpc.aio.AioRpcError as e:
            raise PeerUnavailable(
                f"PartLogs on {peer.name} failed: {e.code().name}: {convert.printable(str(e.details()), 300)}",
                peer=peer.name,
            ) from e
        finally:
            call.cancel()
