"""The head's supervisor: coordinated restarts with backoff, and a circuit breaker.

A pipeline-parallel model is one thing spread over several machines: when any rank dies or
wedges, the survivors cannot carry on (native vLLM's ranks exit when a peer goes away), so the
whole deployment restarts, in the framework's order: every rank stopped (the head's serving rank
first), the gates checked again, then the workers started and the head last. Like an Erlang/OTP
supervisor it counts failures in a row (an incident is one failure, however many ranks it takes
down), waits a growing backoff before each restart, and gives up when `max_failures` are reached
(the breaker opens: status and an event say why; `deploy restart` closes it). A deployment that
stays READY for `stable_s` starts counting afresh.

It only ever acts on evidence (`sparkd.engine.health`): a unit that was not observed yet, a node
that is silent, or a report from before the last start never triggers a restart, so restarting
sparkd (or its host) restarts nothing that still runs. The counters are persisted with the
record, so they survive the daemon; the backoff clock does not need to (a restarted daemon waits
one backoff again). Everything here runs on the head; workers only answer the head's requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

import structlog

from sparkd.engine.deployments import DeploymentManager, refuse
from sparkd.errors import NotFound, PreconditionFailed, SparkdError
from sparkd.model.deployment import DeploymentRecord, DeploymentState, DeploymentStatus, Failure

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Policy:
    """When to restart and when to give up."""

    max_failures: int = 5  # failures in a row that open the breaker
    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # before the 1st, 2nd, ... restart
    stable_s: float = 60.0  # READY this long: the failures in a row start again from 0
    settle_s: float = 2.0  # after a start, workers' reports this young may predate it: not evidence yet
    start_s: float = 1800.0  # not READY this long after a start (weights load for minutes): a failure
    tick_s: float = 0.5


@dataclass
class _Watch:
    """What the supervisor knows of one deployment between ticks (not persisted)."""

    incident: Failure | None = None
    due: float = 0.0  # monotonic time of the next restart; 0 when none is planned
    due_wall: float = 0.0
    ready_since: float = 0.0
    started: float = 0.0  # monotonic time the last (re)start ended
    started_wall: float = 0.0  # Unix time the last (re)start began: a rank that exited before it is old news
    waiting: str = ""  # why a due restart waits


class Supervisor:
    """Watches the head's deployments and restarts them (see the module docstring)."""

    def __init__(self, deployments: DeploymentManager, policy: Policy | None = None) -> None:
        self.deployments, self.policy = deployments, policy or Policy()
        self._watch: dict[str, _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._restarting: dict[str, asyncio.Task[None]] = {}
        deployments.supervisor_view = self.view

    # --- status -------------------------------------------------------------------------------

    def view(self, s: DeploymentStatus) -> DeploymentStatus:
        """Adds the supervisor's word to a deployment's status (breaker, planned restart)."""
        w = self._watch.get(s.name)
        sup = s.supervision
        s = dataclasses.replace(s, max_failures=self.policy.max_failures, next_restart=w.due_wall if w else 0.0)
        if s.state is DeploymentState.FAILED and sup.breaker_open:
            # The recorded failure, not the evidence of now: every rank has been stopped (and a failed unit
            # reset) since, so the units' states say only that sparkd stopped them.
            f = sup.last_failure
            last = f"rank {f.rank} on {f.node_name} failed first: {f.cause}" if f is not None else s.message
            return dataclasses.replace(
                s,
                message=f"circuit breaker open after {sup.failures_in_row} failures in a row, every rank stopped; "
                f"last: {last}. "
                f"Fix the cause, then `sparkctl-client deploy restart {s.name}`",
            )
        if s.state is DeploymentState.FAILED and w is not None and w.due:
            wait = max(0.0, w.due - time.monotonic())
            why = f"; {w.waiting}" if w.waiting else ""
            return dataclasses.replace(
                s,
                message=f"{s.message}; restart {sup.failures_in_row} of at most {self.policy.max_failures - 1} "
                f"in {wait:.0f} s{why}",
            )
        return s

    # --- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="supervisor")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._restarting.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.tick_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor.tick_failed")

    async def tick(self) -> None:
        """One look at every deployment (the loop runs it every `tick_s`; tests call it directly)."""
        d = self.deployments
        if not d.is_head:
            return
        now = time.monotonic()
        for name in list(self._watch):
            if name not in d.records:
                del self._watch[name]
        for name, record in list(d.records.items()):
            if name in d.busy or name in self._restarting or record.supervision.deleting:
                continue
            w = self._watch.setdefault(name, _Watch(started=now))
            verdict = d.verdict(record)
            if verdict.state is DeploymentState.READY:
                w.incident, w.due, w.due_wall, w.waiting = None, 0.0, 0.0, ""
                w.ready_since = w.ready_since or now
                if record.supervision.failures_in_row and now - w.ready_since >= self.policy.stable_s:
                    self._save(name, failures_in_row=0)
                    log.info("supervisor.stable", deployment=name)
                continue
            w.ready_since = 0.0
            failure = verdict.failure
            if failure is None and verdict.state in (DeploymentState.STARTING, DeploymentState.PENDING):
                if w.incident is None and now - w.started >= self.policy.start_s:
                    cause = f"not READY {self.policy.start_s:.0f} s after its start ({verdict.message})"
                    failure = Failure(0, record.parts[0].node_name, record.unit, cause[:500], (), time.time())
            elif verdict.state is not DeploymentState.FAILED:
                continue
            if failure is None or record.supervision.breaker_open:
                continue
            if failure.rank > 0 and (now - w.started < self.policy.settle_s or 0 < failure.time < w.started_wall):
                continue  # a worker's report from before the last start
            if w.incident is None:
                opened = await self._open_incident(name, w, failure, now)
                if opened is None or opened.supervision.breaker_open:
                    continue
            elif failure.unit != w.incident.unit and failure.time < w.incident.time:
                # A rank that died earlier is reported later (a worker's report comes with its next hello
                # after its own unit probe): it, not the one seen first, failed first.
                if not failure.journal_tail:
                    failure = dataclasses.replace(failure, journal_tail=await d.journal_tail(record, failure.rank))
                w.incident = failure
                self._save(name, last_failure=failure)
            elif failure.journal_tail and not w.incident.journal_tail and failure.unit == w.incident.unit:
                # A worker reads its journal after it reports the failure: the lines come a hello later.
                w.incident = dataclasses.replace(w.incident, journal_tail=failure.journal_tail)
                self._save(name, last_failure=w.incident)
            if not verdict.all_reachable:
                w.waiting = "waiting for every node to answer"
                continue
            if now >= w.due:
                self._restarting[name] = asyncio.get_running_loop().create_task(self._restart(name, w))

    async def _open_incident(self, name: str, w: _Watch, failure: Failure, now: float) -> DeploymentRecord | None:
        """Records failure number N in a row (and opens the breaker at `max_failures`); the record saved, or
        None when the deployment went away meanwhile."""
        d = self.deployments
        record = d.records[name]
        if not failure.journal_tail:
            failure = dataclasses.replace(failure, journal_tail=await d.journal_tail(record, failure.rank))
        current = d.records.get(name)
        if current is None:
            return None
        count = current.supervision.failures_in_row + 1
        opened = count >= self.policy.max_failures
        saved = self._save(name, failures_in_row=count, last_failure=failure, breaker_open=opened)
        if saved is None:
            return None
        w.incident = failure
        where = f"rank {failure.rank} on {failure.node_name}: {failure.cause}"
        d.bus.publish("deployment", name, "failure", f"failure {count} in a row: {where}")
        if opened:
            d.bus.publish(
                "deployment",
                name,
                "breaker_open",
                f"circuit breaker open after {count} failures in a row; last: {where}",
            )
            # The ranks still up cannot serve without the dead one; stopped, they give the nodes' memory back.
            self._restarting[name] = asyncio.get_running_loop().create_task(self._stand_down(name))
            return saved
        backoff = self.policy.backoff_s[min(count - 1, len(self.policy.backoff_s) - 1)]
        w.due, w.due_wall = now + backoff, time.time() + backoff
        return saved

    def _save(self, name: str, **changes: object) -> DeploymentRecord | None:
        """Changes the current record's supervision (read afresh: an await may have passed since the caller
        looked); nothing when the deployment is gone or being deleted meanwhile. The record saved, or None."""
        d = self.deployments
        current = d.records.get(name)
        if current is None or current.supervision.deleting or name in d.busy:
            return None
        new = dataclasses.replace(current, supervision=dataclasses.replace(current.supervision, **changes))  # type: ignore[arg-type]
        d.store.save(new)
        d.records[name] = new
        return new

    async def _stand_down(self, name: str) -> None:
        """Stops every rank of a deployment whose breaker opened (`deploy restart` starts them again)."""
        d = self.deployments
        try:
            async with d.lock:
                record = d.records.get(name)
                if record is not None and record.supervision.breaker_open and name not in d.busy:
                    stopped, unreachable = await d.halt(record)
                    log.info("supervisor.stood_down", deployment=name, stopped=stopped, unreachable=unreachable)
        except SparkdError as e:
            log.warning("supervisor.stand_down_failed", deployment=name, error=e.message)
        finally:
            self._restarting.pop(name, None)

    async def _restart(self, name: str, w: _Watch) -> None:
        try:
            await self.restart(name, manual=False)
        except SparkdError as e:
            w.waiting = e.message[:300]
            w.due = time.monotonic() + self.policy.backoff_s[-1]
            w.due_wall = time.time() + self.policy.backoff_s[-1]
            log.warning("supervisor.restart_blocked", deployment=name, error=e.message)
        finally:
            self._restarting.pop(name, None)

    async def restart(self, name: str, manual: bool = True) -> DeploymentStatus:
        """A coordinated restart: every rank stopped (head first), the gates again, workers started, then the
        head. `manual` (`deploy restart`) also closes the breaker and starts the count afresh."""
        d = self.deployments
        if not d.is_head:
            raise PreconditionFailed(
                f"deployment {name} is restarted by its head ({d.cluster.head_name or 'the paired head'}); "
                f"run `sparkctl-client deploy restart {name}` there"
            )
        async with d.lock:
            record = d.records.get(name)
            if record is None:
                raise NotFound(f"no deployment named {name}", name=name)
            if record.supervision.deleting:
                raise PreconditionFailed(
                    f"deployment {name} is being deleted (`deploy down` could not reach every node): run "
                    f"`sparkctl-client deploy down {name}` again, then `deploy up`"
                )
            if name in d.busy:
                raise PreconditionFailed(f"deployment {name} is busy ({d.busy[name][1]}); try again when it is done")
            w = self._watch.get(name)
            if not manual and (w is None or w.incident is None or record.supervision.breaker_open):
                return d.status(record)  # a `deploy restart` (or `down`) dealt with it while this one waited
            began = time.time()
            sup = record.supervision
            d.busy[name] = (DeploymentState.STARTING, f"restarting: stopping every rank (restart {sup.restarts + 1})")
            try:
                _, unreachable = await d.halt(record)
                if unreachable:
                    raise PreconditionFailed(f"cannot restart {name}: {', '.join(unreachable)} cannot be reached")
            except BaseException:
                d.busy.pop(name, None)
                raise
        # The gates without the lock (a changed model hashes for minutes): `busy` keeps the supervisor and
        # another restart away meanwhile; `deploy down` may still run, and is checked for below.
        try:
            d.busy[name] = (DeploymentState.STARTING, "restarting: checking the gates on every node")
            preflight = await d.gates.check(record.spec, record.parts, record.assignment.master_port, d.cluster)
            refuse(name, preflight)
        except BaseException:
            d.busy.pop(name, None)
            raise
        async with d.lock:
            current = d.records.get(name)
            if current is None or current.supervision.deleting:
                d.busy.pop(name, None)
                raise PreconditionFailed(f"deployment {name} was deleted while it restarted; nothing was started")
            if manual:
                current = dataclasses.replace(
                    current, supervision=dataclasses.replace(current.supervision, breaker_open=False, failures_in_row=0)
                )
            record, sup = current, current.supervision
            record = dataclasses.replace(record, supervision=dataclasses.replace(sup, restarts=sup.restarts + 1))
            d.store.save(record)
            d.records[name] = record
            w = self._watch.setdefault(name, _Watch())
            w.incident, w.due, w.due_wall, w.waiting = None, 0.0, 0.0, ""
            w.started, w.started_wall = time.monotonic(), began
            d.bus.publish(
                "deployment",
                name,
                "restart",
                f"restart {record.supervision.restarts} ({'by hand' if manual else 'supervisor'})",
            )
            log.info("supervisor.restart", deployment=name, restarts=record.supervision.restarts, manual=manual)
            try:
                await d.launch(record)
            finally:
                w.started = time.monotonic()  # the settle window counts from the end of a slow start
            return d.status(record)
