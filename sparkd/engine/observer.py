"""The state loop: one per daemon, observing what is slow to observe, into the snapshot.

Each probe (links and memory, units, the head's health endpoints, GPUs) runs as its own
task with its own interval and a short timeout, so a hung `/health` or a slow D-Bus call
never delays another probe, and no request path ever waits for one: RPCs and hellos read
`Snapshot`. A probe that fails keeps the last good value for what it could not see and
says so once in the log (repeats are suppressed). `poke()` runs a probe at once (after a
deployment starts a unit, say), and `after_round` lets the deployment manager turn new
evidence into deployment states and events. Intervals are chosen for an idle daemon's cost
(`benchmarks/status_load.py`): the unit probe is one D-Bus call for every unit.

`stalled()` is the loop's own liveness, for the systemd watchdog (`sparkd.watchdog`): every step is
bounded by its timeouts, so a task that ended or a step that has run for far longer than any step may
take is stuck, and only a restart ends it. A failing probe is not stalled: it finishes its steps (and
says why it fails), and a restart would not cure D-Bus, NVML or a framework.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from sparkd.engine import serving
from sparkd.events import EventBus
from sparkd.host.protocols import Host
from sparkd.model.observed import ServingEvidence, Snapshot

log = structlog.get_logger(__name__)

#: A step running longer than this (at least; see `StateLoop.stall_after`) is stuck, not slow.
STALL_AFTER = 60.0


@dataclass(frozen=True)
class Intervals:
    """Seconds between two runs of each probe, and each probe's timeout."""

    links: float = 5.0  # a host apply pokes it at once
    units: float = 2.0  # creating, starting or stopping a unit pokes it at once
    serving: float = 3.0  # with `serving_timeout`, a wedge is seen within 2 x (3 + 3) s (health.WEDGE_PROBES)
    gpus: float = 30.0
    timeout: float = 1.5  # per probe step (one unit, one endpoint, one netlink dump)
    serving_timeout: float = 3.0  # per serving request (a one-token completion included)
    gpu_timeout: float = 10.0


@dataclass(frozen=True)
class Interests:
    """What the deployment manager wants watched: units by name and the head's API ports (with the model each
    must serve)."""

    units: tuple[str, ...]
    serving: tuple[tuple[int, str, str], ...] = ()  # (API port, served model name, token metric)


class StateLoop:
    """Runs the probes (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        snapshot: Snapshot,
        bus: EventBus,
        interests: Callable[[], Interests],
        after_round: Callable[[], None] = lambda: None,
        intervals: Intervals | None = None,
    ) -> None:
        self.host, self.snapshot, self.bus = host, snapshot, bus
        self.interests, self.after_round = interests, after_round
        self.intervals = intervals or Intervals()
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._failing: dict[str, str] = {}
        self._busy: dict[str, float] = {}  # probe -> when (time.monotonic()) the step it is in began
        i = self.intervals
        # The longest a step may take: the serving probe asks up to 4 requests in a row (serving.probe),
        # the GPU probe waits gpu_timeout, the others one timeout. Five times that, and never under a minute.
        self.stall_after = max(STALL_AFTER, 5 * max(i.timeout, 4 * i.serving_timeout, i.gpu_timeout))

    # --- the probes ---------------------------------------------------------------------------

    async def observe_links(self) -> None:
        links = await asyncio.wait_for(self.host.netlink.links(), self.intervals.timeout)
        s = self.snapshot
        s.rdma = tuple(self.host.sysfs.rdma_ports())
        s.memory = self.host.proc.memory()
        if not s.kernel:
            s.kernel = self.host.proc.kernel_release()
        for port in s.rdma:
            link = links.get(port.netdev)
            state = "absent" if link is None else ("up" if link.carrier else "down")
            self.bus.transition("link", port.netdev, state)
        s.links = links

    async def observe_units(self) -> None:
        names = list(self.interests().units)
        generation = self.snapshot.units_generation
        states = await asyncio.wait_for(self.host.systemd.states(names), self.intervals.timeout) if names else {}
        if self.snapshot.units_generation != generation:
            self.poke("units")  # a mutation wrote fresher evidence meanwhile: this answer is stale, ask again
            return
        for name, state in states.items():
            self.bus.transition("unit", name, state.active_state)
        self.snapshot.units = {n: states[n] for n in names if n in states}

    async def observe_serving(self) -> None:
        wanted = self.interests().serving
        t, old, generation = self.intervals.serving_timeout, self.snapshot.serving, self.snapshot.serving_generation
        rounds = [serving.probe(self.host.http, p, name, old.get(p, ServingEvidence()), t, m) for p, name, m in wanted]
        answers = await asyncio.gather(*rounds)
        if self.snapshot.serving_generation != generation:
            return  # a deployment (re)started meanwhile: this round saw (or followed) its previous run
        self.snapshot.serving = {p: e for (p, _, _), e in zip(wanted, answers, strict=True)}

    async def observe_gpus(self) -> None:
        gpus, reason = await asyncio.wait_for(asyncio.to_thread(self.host.gpus.gpus), self.intervals.gpu_timeout)
        self.snapshot.gpus, self.snapshot.gpu_reason = tuple(gpus), reason
        self.bus.transition("gpu", "nvml", f"{len(gpus)} GPU(s)" if gpus else "unavailable", reason)

    # --- running ------------------------------------------------------------------------------

    def _probes(self) -> dict[str, tuple[Callable[[], Awaitable[None]], float]]:
        i = self.intervals
        return {
            "links": (self.observe_links, i.links),
            "units": (self.observe_units, i.units),
            "serving": (self.observe_serving, i.serving),
            "gpus": (self.observe_gpus, i.gpus),
        }

    async def run_once(self) -> None:
        """Every probe once, concurrently (start-up, and tests)."""
        await asyncio.gather(*(self._step(name, probe) for name, (probe, _) in self._probes().items()))

    async def _step(self, name: str, probe: Callable[[], Awaitable[None]]) -> None:
        try:
            await probe()
            if self._failing.pop(name, None) is not None:
                log.info("observer.probe_recovered", probe=name)
            if name in ("units", "serving"):
                self.after_round()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a probe's failure (or the round after it) never ends its task
            self._problem(name, e)

    def _problem(self, what: str, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"[:300]
        if self._failing.get(what) != text:  # once per distinct problem, not once per tick
            self._failing[what] = text
            log.warning("observer.probe_failed", probe=what, error=text)

    async def _loop(self, name: str, probe: Callable[[], Awaitable[None]], interval: float) -> None:
        wake = self._wake[name]
        while True:
            wake.clear()  # before the step: a poke that arrives during it runs the probe again
            self._busy[name] = time.monotonic()
            await self._step(name, probe)
            del self._busy[name]
            try:
                await asyncio.wait_for(wake.wait(), interval)
            except TimeoutError:
                pass

    def start(self) -> None:
        for name, (probe, interval) in self._probes().items():
            self._wake[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._loop(name, probe, interval), name=f"probe-{name}"))

    def poke(self, *names: str) -> None:
        """Runs the named probes now (all when none is named)."""
        for name in names or tuple(self._wake):
            if name in self._wake:
                self._wake[name].set()

    def stalled(self, after: float | None = None) -> tuple[str, ...]:
        """The probes that make no progress: their task ended (it never does while the loop runs), or their
        step (one round, well or failing) began more than `after` seconds ago (`stall_after` by default)."""
        limit = self.stall_after if after is None else after
        now = time.monotonic()
        ended = [t.get_name().removeprefix("probe-") for t in self._tasks if t.done()]
        return tuple(ended + [name for name, began in self._busy.items() if now - began > limit])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._busy.clear()
