"""What the deployment engine needs from the peer layer (implemented by `sparkd.peer.parts.PeerCluster`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sparkd.model.deployment import Assignment, DeploymentSpec, DeploymentState, PartPlan, PartReport, WorkerInfo
from sparkd.model.unit import JournalLine


class Cluster(Protocol):
    """What the deployment engine needs from the peer layer (`sparkd.peer.manager.PeerManager`)."""

    def connected_workers(self) -> list[WorkerInfo]: ...

    async def start_part(
        self, node_id: str, spec: DeploymentSpec, assignment: Assignment, launch_command: str = ""
    ) -> str:
        """Starts a worker's part; `launch_command`: the orted command its TensorRT-LLM rank runs (from the
        head's mpirun, through the launch agent)."""
        ...

    async def stop_part(self, node_id: str, name: str) -> str: ...

    async def prepare_part(self, node_id: str, spec: DeploymentSpec, assignment: Assignment) -> PartPlan: ...

    def part_logs(self, node_id: str, name: str, lines: int, follow: bool) -> AsyncIterator[JournalLine]: ...

    def part_report(self, node_id: str, name: str) -> PartReport: ...

    def head_state(self, name: str) -> DeploymentState | None: ...

    @property
    def head_name(self) -> str: ...

    def consistency_blockers(self) -> list[str]:
        """Why the connected peers' software versions refuse a deployment (empty when they agree)."""
        ...
