"""The head's side of the OpenMPI launch agent (`sparkd.launch_agent`): which remote rank may start.

A TensorRT-LLM deployment's mpirun (the head's rank unit) asks, through its launch agent, for an orted
on another node. The request is honoured only when all of these hold, else refused, naming why:
- the caller is a process of that mpirun unit: its cgroup (which the kernel keeps and no unprivileged
  process can leave for another unit's) names `sparkd-NAME-rank0.service` of a TensorRT-LLM deployment
  this node heads (so the credential is scoped to the deployment, and it is not the admin socket);
- the host is the interconnect address of a node holding one of that deployment's planned ranks;
- the command is an orted launch (`launchers.mpi.orted_command`).
Then the node's sparkd is asked, over the peer protocol, to run it as that rank's unit; it checks again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from sparkd.engine.cluster import Cluster
from sparkd.engine.launchers.mpi import MAX_COMMAND_BYTES, OrtedRefused, orted_command
from sparkd.errors import SparkdError
from sparkd.model.deployment import DeploymentRecord, Framework

log = structlog.get_logger(__name__)


class AgentRefused(Exception):
    """The request is refused; the message says why."""


class LaunchAgentService:
    """Answers launch agents of the deployments this node heads."""

    def __init__(
        self, records: Callable[[], Mapping[str, DeploymentRecord]], cluster: Cluster, launch_agent: str
    ) -> None:
        self.records, self.cluster, self.launch_agent = records, cluster, launch_agent
        self._last_log = -1.0

    def knows(self, unit: str) -> bool:
        """Whether `unit` is the mpirun of a TensorRT-LLM deployment this node heads (its requests are read)."""
        try:
            self._caller(unit)
        except AgentRefused:
            return False
        return True

    def _caller(self, unit: str) -> DeploymentRecord:
        for record in self.records().values():
            if record.assignment.rank == 0 and record.parts and record.unit == unit:
                if record.spec.framework is not Framework.TRTLLM:
                    break
                if record.supervision.deleting:
                    raise AgentRefused(f"deployment {record.spec.name} is being deleted")
                return record
        raise AgentRefused(
            f"the caller ({unit or 'a process of no unit'}) is not the mpirun of a TensorRT-LLM deployment "
            "this node heads"
        )

    async def handle(self, unit: str, request: Any) -> dict[str, Any]:
        """The answer to one request from a process of systemd unit `unit` (from its cgroup)."""
        try:
            record = self._caller(unit)
            if not isinstance(request, dict):
                raise AgentRefused("the request must be a JSON object with host and command")
            host, command = request.get("host"), request.get("command")
            if not isinstance(host, str) or not isinstance(command, str) or len(host) > 64:
                raise AgentRefused("host and command must be strings")
            if len(command.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
                raise AgentRefused(f"the command is longer than {MAX_COMMAND_BYTES} bytes")
            name = record.spec.name
            parts = {p.address: p for p in record.parts[1:]}
            part = parts.get(host)
            if part is None:
                planned = ", ".join(f"rank {p.rank} at {p.address}" for p in record.parts[1:]) or "none"
                raise AgentRefused(f"{host[:64]!r} holds no rank of deployment {name} (planned: {planned})")
            orted_command(command, self.launch_agent, record.assignment.master_addr)
            a = dataclasses.replace(record.assignment, rank=part.rank)
            unit_started = await self.cluster.start_part(part.node_id, record.spec, a, command)
        except (AgentRefused, OrtedRefused) as e:
            now = time.monotonic()
            if now - self._last_log >= 1.0:  # at most one a second: a flood must not push out the journal
                self._last_log = now
                log.warning("agent.refused", caller=unit, error=str(e)[:300])
            return {"ok": False, "error": str(e)}
        except SparkdError as e:
            log.warning("agent.failed", caller=unit, error=e.message[:300])
            return {"ok": False, "error": e.message}
        log.info("agent.rank_started", deployment=name, rank=part.rank, node=part.node_name, unit=unit_started)
        return {"ok": True, "rank": part.rank, "node": part.node_name, "unit": unit_started}
