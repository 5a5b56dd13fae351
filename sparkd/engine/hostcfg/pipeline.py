"""The apply pipeline: plan → intent journal → apply → verify (bounded retries) → commit, or roll back.

Every component is driven the same way (`component.Component`). A plan observes each
component's keys, computes their targets and diffs them; it changes nothing. An apply
first writes the intent journal with every prior item (`records.HostRecords`), then makes
the changes in order, then observes again until every target holds (a few tries: an
address's DAD, a tool's settling), and commits: the committed state and the baseline are
written, then the journal is removed. Any failure (a change, the verification, a
cancellation) restores the prior items, exactly, and raises. A change that waits for
confirmation (`confirm_timeout_s`) keeps its journal in phase "applied" and reverts by
itself at the deadline unless `confirm()` comes first; a daemon killed at any point finds
the journal at its next start and restores the prior items (`recover`).

One operation at a time: a second apply while one runs, or while one waits for its
confirmation, is ABORTED naming the one in progress, and touches nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from sparkd.engine.hostcfg import desired as desired_mod
from sparkd.engine.hostcfg.component import Change, Component
from sparkd.engine.hostcfg.failpoints import failpoint
from sparkd.engine.hostcfg.records import HostRecords, Items, Journal
from sparkd.errors import Aborted, HostOperationFailed, PreconditionFailed, VerifyFailed
from sparkd.model.host import DesiredHost, HostAction

log = structlog.get_logger(__name__)

#: Verification observes again up to this many times, waiting VERIFY_WAIT_S * 2**try in between.
VERIFY_TRIES = 5
VERIFY_WAIT_S = 0.1
MAX_CONFIRM_S = 3600.0


@dataclass(frozen=True)
class Step:
    component: Component
    key: str
    change: Change


@dataclass(frozen=True)
class Plan:
    """What an apply of `desired` would do, and what it found."""

    desired: DesiredHost
    steps: tuple[Step, ...]
    prior: Items  # every key's item now, as the journal records it
    targets: dict[tuple[str, str], Any]  # (component, key) -> the item it should be
    notes: tuple[str, ...] = ()  # discovery, existing setups: lines for people

    @property
    def actions(self) -> list[HostAction]:
        return [s.change.show() for s in self.steps]


@dataclass(frozen=True)
class Outcome:
    """What an apply did."""

    plan: Plan
    changed: bool
    verified: bool
    pending_until: float = 0.0  # wall-clock deadline while the change waits for confirmation
    apply_id: str = ""


@dataclass
class _Busy:
    what: str
    since: float = field(default_factory=time.time)


class Pipeline:
    """Runs plans over `components` (in order), keeping its records in `records`."""

    def __init__(self, components: Sequence[Component], records: HostRecords) -> None:
        self.components = list(components)
        self.records = records
        self._busy: _Busy | None = None
        self._idle = asyncio.Event()  # set while no operation holds the host configuration
        self._idle.set()
        self.pending: Journal | None = None
        self._expiry: asyncio.Task[None] | None = None

    # --- one at a time ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, what: str) -> AsyncIterator[None]:
        """Holds the host configuration for `what`; ABORTED when another operation holds it."""
        if self._busy is not None:
            ago = time.time() - self._busy.since
            raise Aborted(
                f"{self._busy.what} is in progress (started {ago:.1f} s ago); nothing was changed: retry when it "
                "has ended",
                inProgress=self._busy.what,
            )
        self._busy = _Busy(what)
        self._idle.clear()
        try:
            yield
        finally:
            self._busy = None
            self._idle.set()

    @property
    def busy(self) -> bool:
        return self._busy is not None

    def refuse_if_pending(self) -> None:
        if self.pending is not None:
            left = max(0.0, self.pending.deadline - time.time())
            raise Aborted(
                f"{self.pending.what} is waiting for confirmation ({left:.0f} s left); nothing was changed: run "
                "`sparkctl-client host confirm` to keep it or `host rollback` to undo it first",
                inProgress=self.pending.what,
            )

    # --- plan -------------------------------------------------------------------------------

    async def plan(self, desired: DesiredHost, notes: Sequence[str] = ()) -> Plan:
        steps: list[Step] = []
        prior: Items = {}
        targets: dict[tuple[str, str], Any] = {}
        for c in self.components:
            keys = c.keys(desired)
            if not keys:
                continue
            have = await c.observe(keys)
            prior[c.name] = {k: c.dump(have[k]) for k in keys}
            for k in keys:
                want = c.target(desired, k, have[k])
                targets[(c.name, k)] = want
                steps += [Step(c, k, ch) for ch in c.diff(k, want, have[k])]
        return Plan(desired, tuple(steps), prior, targets, tuple(notes))

    # --- apply ------------------------------------------------------------------------------

    async def apply(self, plan: Plan, what: str, confirm_timeout_s: float = 0.0) -> Outcome:
        """Applies `plan` (call inside `exclusive`). Raises after restoring the prior items on failure."""
        if not plan.steps:
            return Outcome(plan, changed=False, verified=True)
        journal = Journal(uuid.uuid4().hex, "applying", desired_mod.to_record(plan.desired), plan.prior, what=what)
        self.records.write_journal(journal)
        failpoint("journaled")
        try:
            for i, step in enumerate(plan.steps, start=1):
                await step.component.apply(step.change)
                log.info("host.change_applied", component=step.component.name, action=step.change.show().description)
                failpoint(f"change-{i}")
            await self.verify(plan)
            failpoint("verified")
        except BaseException as e:
            log.warning("host.apply_failed", error=str(e), steps=len(plan.steps))
            await asyncio.shield(self._restore_and_forget(journal))
            raise
        if confirm_timeout_s > 0:
            journal.phase = "applied"
            journal.deadline = time.time() + min(confirm_timeout_s, MAX_CONFIRM_S)
            self.records.write_journal(journal)
            self._arm(journal)
            return Outcome(plan, True, True, journal.deadline, journal.id)
        self.commit(journal)
        return Outcome(plan, True, True, 0.0, journal.id)

    async def verify(self, plan: Plan) -> None:
        """Observes until every target holds; VerifyFailed naming what does not (after VERIFY_TRIES)."""
        remaining: list[str] = []
        for attempt in range(VERIFY_TRIES):
            remaining = await self._remaining(plan)
            if not remaining:
                return
            await asyncio.sleep(VERIFY_WAIT_S * 2**attempt)
        raise VerifyFailed(
            "host apply did not verify: " + "; ".join(remaining[:8]) + ". The change was rolled back.",
        )

    async def _remaining(self, plan: Plan) -> list[str]:
        remaining: list[str] = []
        by_name = {c.name: c for c in self.components}
        for name, items in plan.prior.items():
            c = by_name[name]
            now = await c.observe(list(items))
            for key in items:
                remaining += [ch.show().description for ch in c.diff(key, plan.targets[(name, key)], now[key])]
        return remaining

    def commit(self, journal: Journal) -> None:
        self.records.extend_baseline(journal.prior)
        self.records.write_committed(journal.id, journal.desired)
        failpoint("committed")
        self.records.drop_journal()
        self._disarm()
        log.info("host.committed", apply_id=journal.id)

    # --- confirmation -----------------------------------------------------------------------

    def _arm(self, journal: Journal) -> None:
        self.pending = journal
        self._expiry = asyncio.get_running_loop().create_task(self._expire(journal))

    def _disarm(self) -> None:
        self.pending = None
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
        self._expiry = None

    async def _expire(self, journal: Journal) -> None:
        await asyncio.sleep(max(0.0, journal.deadline - time.time()))
        while self._busy is not None:  # an operation is confirming or undoing it right now
            await self._idle.wait()
        if self.pending is journal:
            log.warning("host.confirmation_expired", apply_id=journal.id)
            self._expiry = None
            async with self.exclusive("the revert of an unconfirmed host apply"):
                self.pending = None
                try:
                    await self._restore_and_forget(journal)
                except Exception as e:  # the journal stays: `stuck()` refuses applies until a rollback succeeds
                    log.error("host.revert_failed", apply_id=journal.id, error=str(e))

    async def confirm(self) -> str:
        """Commits the change waiting for confirmation; returns its id."""
        journal = self.pending
        if journal is None:
            raise PreconditionFailed("no host apply is waiting for confirmation (it may have expired and reverted)")
        async with self.exclusive("a host confirm"):
            self.commit(journal)
        return journal.id

    async def rollback(self) -> str:
        """Reverts the change waiting for confirmation now, or retries the restore of an apply that could not
        be rolled back completely (`stuck`); returns its id."""
        journal = self.pending or self.records.journal()
        if journal is None:
            raise PreconditionFailed("no host apply is waiting for confirmation (it may have expired and reverted)")
        async with self.exclusive("a host rollback"):
            self._disarm()
            await self._restore_and_forget(journal)
        return journal.id

    def stuck(self) -> None:
        """PreconditionFailed while an earlier apply's journal remains that nothing waits on: its restore
        failed, and a new apply must not write over the record of the state to bring back."""
        if self.pending is None and (journal := self.records.journal()) is not None:
            raise PreconditionFailed(
                f"{journal.what} {journal.id} could not be rolled back completely (the daemon's log says what "
                "failed); its journal is kept: fix the cause, then run `sparkctl-client host rollback` to restore the "
                "state from before it",
                applyId=journal.id,
            )

    # --- restore ----------------------------------------------------------------------------

    async def _restore_and_forget(self, journal: Journal) -> None:
        await self.restore_items(journal.prior)
        self.records.drop_journal()

    async def restore_items(self, items: Items) -> None:
        """Brings every recorded item back (components in reverse order); raises HostOperationFailed naming
        what could not be restored, after trying all of them."""
        by_name = {c.name: c for c in self.components}
        failed: list[str] = []
        for c in reversed(self.components):
            recorded = items.get(c.name)
            if not recorded:
                continue
            foreign = [k for k in recorded if not c.accepts(k)]
            failed += [f"{c.name} {k[:80]!r}: not a key sparkd manages (ignored)" for k in foreign]
            recorded = {k: v for k, v in recorded.items() if k not in foreign}
            try:
                now = await c.observe(list(recorded))
            except Exception as e:  # keep restoring the other components
                failed.append(f"{c.name}: cannot observe ({e})")
                continue
            for key, record in recorded.items():
                try:
                    want = by_name[c.name].load(record)
                except (ValueError, TypeError) as e:
                    failed.append(f"{c.name} {key}: unreadable record ({e})")
                    continue
                for change in c.diff(key, want, now[key]):
                    try:
                        await c.apply(change)
                    except Exception as e:  # keep restoring the rest; report what could not be
                        failed.append(f"{change.show().description}: {e}")
        if failed:
            log.error("host.restore_incomplete", failed=failed)
            raise HostOperationFailed("could not restore the host exactly: " + "; ".join(failed[:6]))
        log.warning("host.restored", components=sorted(items))

    async def recover(self) -> str:
        """At start: finishes what a killed daemon left. Returns what it did ("" when there was nothing)."""
        journal = self.records.journal()
        if journal is None:
            return ""
        committed = self.records.committed()
        if committed is not None and committed[0] == journal.id:
            self.records.drop_journal()  # the commit was written; only removing the journal was cut short
            return f"completed the commit of host apply {journal.id}"
        await self._restore_and_forget(journal)
        return f"rolled back host apply {journal.id}, interrupted in phase {journal.phase}"
