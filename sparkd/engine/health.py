"""Health as evidence: a deployment's state from what every rank last showed, never from memory.

A pure function of the evidence (`evaluate`), so each rule is a unit test. The head's
view of a deployment is READY only when all of this holds at once:
- its own unit runs and its own API port answers `/health` 200 listing this deployment's
  served model (so another process on the port cannot pass for it);
- the serving probe passed: tokens came out (the framework's counter rose, or a one-token
  probe completion answered), which in a pipeline proves every stage works;
- every worker's node said hello within the peer timeout and reported its unit active.
A silent node is never healthy (UNHEALTHY, naming it); a dead rank anywhere is FAILED,
naming the rank that died first (by its exit time), its node and its unit's exit status;
a serving probe that fails `WEDGE_PROBES` times in a row while `/health` still answers 200
is a wedge, and FAILED too. A worker's own view follows its unit and what the head reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkd.model.deployment import (
    DEAD_STATES,
    WAITING,
    DeploymentRecord,
    DeploymentState,
    Failure,
    NodeStatus,
    PartReport,
    unit_name,
)
from sparkd.model.observed import ServingEvidence
from sparkd.model.unit import UnitState

#: Failed serving probes in a row (one every `Intervals.serving` s, each `timeout` s) that make a wedge.
WEDGE_PROBES = 2
#: Failed /health probes in a row, after the deployment served, that make it failed.
HEALTH_LOST_PROBES = 3


@dataclass(frozen=True)
class Verdict:
    """A deployment's state and the evidence behind it."""

    state: DeploymentState
    message: str
    nodes: tuple[NodeStatus, ...]
    failure: Failure | None = None  # the rank that failed first, when FAILED
    all_reachable: bool = True  # every node answers: a coordinated restart is possible


def _cause(state: UnitState | None, active: str, unit: str) -> str:
    described = state.exit_description if state is not None else ""
    return described or f"unit {unit} is {active}"


def evaluate_head(
    record: DeploymentRecord,
    own: UnitState,
    serving: ServingEvidence | None,
    reports: dict[int, PartReport],
    *,
    served_before: bool,
    now: float,
) -> Verdict:
    """The head's verdict on `record`. `reports` are the workers' parts by rank; `served_before` says whether
    this run of the deployment was READY once (a lost /health then is a failure, not a slow start)."""
    name = record.spec.name
    nodes: list[NodeStatus] = []
    dead: list[tuple[float, int, Failure]] = []
    silent: list[str] = []
    waiting: list[str] = []

    head = record.parts[0] if record.parts else None
    head_name = head.node_name if head else ""
    own_health = own.active_state
    if own.active_state in DEAD_STATES or own.load_state == "not-found":
        cause = _cause(own, own.active_state, record.unit)
        dead.append(
            (own.exit_time or float("inf"), 0, Failure(0, head_name, record.unit, cause, (), own.exit_time or now))
        )
        own_health = f"{own.active_state}: {cause}"
    nodes.append(NodeStatus(head_name, 0, head.address if head else "", record.unit, own.active_state, own_health))

    for part in record.parts[1:]:
        unit = unit_name(name, part.rank)
        report = reports.get(part.rank, PartReport(False, float("inf"), None))
        summary = report.summary
        active = summary.unit_active_state if summary else "unknown"
        if not report.reachable:
            silence = "never heard from" if report.silent_s == float("inf") else f"silent for {report.silent_s:.1f} s"
            health = f"node {silence}"
            silent.append(f"rank {part.rank} on {part.node_name}: node {silence}")
            nodes.append(NodeStatus(part.node_name, part.rank, part.address, unit, "unknown", health, False))
            continue
        if summary is None:
            health = "no report of this deployment yet"
            waiting.append(f"rank {part.rank} on {part.node_name}")
        elif active in DEAD_STATES:
            cause = summary.failure or f"unit {unit} is {active}"
            when = summary.exit_time or float("inf")
            failure = Failure(part.rank, part.node_name, unit, cause, summary.journal_tail, summary.exit_time or now)
            dead.append((when, part.rank, failure))
            health = f"{active}: {cause}"
        elif active == "active":
            health = f"active, reported {report.silent_s:.1f} s ago"
        else:
            health = f"{active}, reported {report.silent_s:.1f} s ago"
            waiting.append(f"rank {part.rank} on {part.node_name} ({active})")
        nodes.append(NodeStatus(part.node_name, part.rank, part.address, unit, active, health))

    frozen = tuple(nodes)
    reachable = not silent
    if dead:
        _, _, first = min(dead, key=lambda d: (d[0], d[1]))
        others = f" ({len(dead) - 1} more rank(s) down)" if len(dead) > 1 else ""
        message = f"rank {first.rank} on {first.node_name} failed first: {first.cause}{others}"
        return Verdict(DeploymentState.FAILED, message, frozen, first, reachable)
    if silent:
        message = "; ".join(silent) + ": no evidence that the deployment serves"
        return Verdict(DeploymentState.UNHEALTHY, message, frozen, None, False)
    if own.active_state == "unknown":
        return Verdict(DeploymentState.PENDING, f"waiting for the first observation of unit {record.unit}", frozen)
    if own.active_state != "active" or waiting:
        what = [f"rank 0 on {head_name} ({own.active_state})"] if own.active_state != "active" else []
        return Verdict(DeploymentState.STARTING, "waiting for " + ", ".join(what + waiting), frozen)
    return _serving(record, serving, frozen, served_before, now, head_name)


def _serving(
    record: DeploymentRecord,
    serving: ServingEvidence | None,
    nodes: tuple[NodeStatus, ...],
    served_before: bool,
    now: float,
    head_name: str,
) -> Verdict:
    port, served = record.spec.port, record.spec.served_model_name
    s = serving or ServingEvidence()
    if s.health != 200:
        got = "nothing answered" if s.health is None else f"it answered {s.health}"
        if served_before and s.health_failures >= HEALTH_LOST_PROBES:
            cause = f"/health on port {port} stopped answering 200 ({got}, {s.health_failures} probes in a row)"
            failure = Failure(0, head_name, record.unit, cause, (), now)
            return Verdict(DeploymentState.FAILED, f"rank 0 on {head_name} failed first: {cause}", nodes, failure)
        state = DeploymentState.UNHEALTHY if served_before else DeploymentState.STARTING
        return Verdict(state, f"waiting for /health on port {port} ({got})", nodes)
    if s.models is not None and served not in s.models:
        listed = ", ".join(s.models[:3]) or "no model"
        return Verdict(
            DeploymentState.UNHEALTHY,
            f"port {port} answers but serves {listed}, not {served}: another process holds the port",
            nodes,
        )
    if s.probe_ok is None:
        return Verdict(
            DeploymentState.STARTING, f"/health answers on port {port}; waiting for the serving probe", nodes
        )
    if not s.probe_ok:
        if s.probe_failures >= WEDGE_PROBES:
            cause = f"wedged: /health answers 200 but {s.probe_detail} ({s.probe_failures} serving probes in a row)"
            failure = Failure(0, head_name, record.unit, cause, (), now)
            return Verdict(DeploymentState.FAILED, f"rank 0 on {head_name} failed first: {cause}", nodes, failure)
        state = DeploymentState.UNHEALTHY if served_before else DeploymentState.STARTING
        return Verdict(state, f"serving probe failed: {s.probe_detail}", nodes)
    return Verdict(DeploymentState.READY, f"serving {served} on port {port} ({s.probe_detail})", nodes)


def evaluate_worker(record: DeploymentRecord, own: UnitState, head: DeploymentState | None) -> Verdict:
    """A worker's view of its own part: its unit, and the state the head last reported (None: head silent)."""
    node = NodeStatus("", record.assignment.rank, "", record.unit, own.active_state, own.exit_description)
    nodes = (node,)
    if own.active_state == "unknown":
        return Verdict(DeploymentState.PENDING, f"waiting for the first observation of unit {record.unit}", nodes)
    if own.active_state == WAITING:
        return Verdict(DeploymentState.PENDING, f"waiting for the head's launcher to start unit {record.unit}", nodes)
    if not own.running:
        cause = _cause(own, own.active_state, record.unit)
        return Verdict(DeploymentState.FAILED, f"this node's rank {record.assignment.rank}: {cause}", nodes)
    if head is None:
        return Verdict(DeploymentState.UNHEALTHY, "unit active; the head is silent: no evidence that it serves", nodes)
    if head is DeploymentState.READY:
        return Verdict(DeploymentState.READY, "unit active; the head is serving", nodes)
    return Verdict(head, f"unit active; the head reports {head.value}", nodes)
