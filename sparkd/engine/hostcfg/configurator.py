"""This node's host configuration: the desired state, the plan, the apply, drift and the start.

The configurator derives the desired state (`desired.derive`) from the config (or a
desired-state file for one run), the node's index and discovery; it refuses a plan that
would change the interface carrying the management connection (the default route, or the
caller's SSH session) unless the caller accepts that risk; and it drives the pipeline
(`pipeline.Pipeline`) over the components, in the order they apply: links, RoCE QoS,
GPUDirect, firewall, hostname, files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from sparkd.config import Config
from sparkd.engine.hostcfg import desired as desired_mod
from sparkd.engine.hostcfg.discovery import discover, render_discovery
from sparkd.engine.hostcfg.files import FilesComponent
from sparkd.engine.hostcfg.firewall import FirewallComponent
from sparkd.engine.hostcfg.foreign import find_foreign
from sparkd.engine.hostcfg.gpudirect import GpuDirectComponent
from sparkd.engine.hostcfg.hostname import HostnameComponent
from sparkd.engine.hostcfg.links import LinksComponent
from sparkd.engine.hostcfg.pipeline import MAX_CONFIRM_S, Outcome, Pipeline, Plan
from sparkd.engine.hostcfg.qos import QosComponent
from sparkd.engine.hostcfg.records import HostRecords
from sparkd.engine.twins import select_twins
from sparkd.errors import InvalidSpec, PreconditionFailed, SparkdError
from sparkd.host.protocols import Files, Netlink, Runner, Sysfs
from sparkd.model.host import DesiredHost, HostAction
from sparkd.model.inventory import Twins

log = structlog.get_logger(__name__)

ACCEPT_RISK = "lose-connection"
#: An address no route leads to but the default one: asking the kernel for its route sends nothing.
_DEFAULT_PROBE = "203.0.113.1"


@dataclass(frozen=True)
class HostRequest:
    """One plan or apply, as the API asks for it."""

    desired_state: str = ""  # a desired-state file's text (TOML: [interconnect], [host]); "" = the config's
    accept_risk: str = ""  # "lose-connection" to change the management interface all the same
    ssh_address: str = ""  # the local address of the caller's SSH session, if any (from SSH_CONNECTION)
    confirm_timeout_s: float = 0.0  # > 0: revert unless confirmed within this many seconds
    what: str = "host apply"


class HostConfigurator:
    """Observes, plans and applies this node's host configuration."""

    def __init__(
        self,
        config: Config,
        files: Files,
        sysfs: Sysfs,
        netlink: Netlink,
        runner: Runner,
        index: Callable[[], int | None] | None = None,
        cluster: Callable[[], Sequence[tuple[str, int]]] | None = None,
    ) -> None:
        """`index` is this node's index, None while unpaired; `cluster` every paired node's (name, index),
        this one included (for /etc/hosts). Tests that pin the index in the config leave both out."""
        self.config, self.files, self.sysfs, self.netlink = config, files, sysfs, netlink
        self.index = index or (lambda: config.node.index)
        self.cluster = cluster or (lambda: [(config.node.name, self.index() or 0)])
        self.records = HostRecords(files, config.state_dir)
        self.pipeline = Pipeline(
            [
                LinksComponent(netlink),
                QosComponent(files, runner),
                GpuDirectComponent(files, runner),
                FirewallComponent(files, runner),
                HostnameComponent(files, runner),
                FilesComponent(files, f"{config.state_dir}/host/backup"),
            ],
            self.records,
        )
        self.drift: list[HostAction] = []  # the last drift check's findings
        self.reapply_pending = False  # the re-apply at start failed: the drift check repairs until it succeeds

    async def twins(self) -> Twins:
        """The cabled cage's twins (PreconditionFailed when no cage is cabled)."""
        links = await self.netlink.links()
        return select_twins(self.sysfs.rdma_ports(), links, self.config.interconnect.mode)

    # --- the desired state ------------------------------------------------------------------

    async def desired(self, request: HostRequest) -> tuple[DesiredHost, list[str]]:
        """The desired state for `request`, and the notes a plan shows (discovery, existing setups)."""
        index = self.index()
        if index is None:
            raise PreconditionFailed(
                "this node is not paired yet, and its interconnect addresses follow from the index pairing gives "
                "it: run `sparkctl-client peer pair begin` on the head and `peer pair join` here, then apply again"
            )
        config = self.config
        if request.desired_state:
            config = desired_mod.read_overrides(request.desired_state, config)
        links = await self.netlink.links()
        ports = self.sysfs.rdma_ports()
        overrides = [n for n in (config.host.twin_a, config.host.twin_b) if n and n not in {p.netdev for p in ports}]
        candidates = [p.netdev for p in ports] + overrides
        foreign = find_foreign(self.files, candidates)
        contents = {}
        for setup in foreign:
            data = self.files.read_bounded(setup.path, 64 * 1024)
            if data is not None:
                contents[setup.path] = data
        committed = self.committed()
        adopted = committed.adopted if committed is not None else ()
        observed = desired_mod.Observed(links, ports, foreign, contents, adopted)
        desired = desired_mod.derive(config, observed, index, self.cluster())
        notes = [f"existing setup: {s.describe()}" for s in foreign]
        skipped = sorted({name for name, _ in self.cluster() if not desired_mod.hosts_name(name)})
        if skipped and config.host.hosts:
            notes.append(
                f"not in /etc/hosts: {', '.join(repr(n[:64]) for n in skipped)} (only single-label host names go "
                "there: letters, digits and '-')"
            )
        if any(set(s.netdevs) & set(desired.netdevs()) for s in foreign):
            notes.append(
                f"existing setups of the twins: {desired.existing} (each file is disabled, with a backup that "
                "`host restore` brings back)"
            )
        try:
            twins = select_twins(list(ports), links, config.interconnect.mode)
            addresses = {t.netdev: t.address for t in desired.twins}
            notes += render_discovery(discover(self.sysfs, links, twins, addresses))
        except PreconditionFailed:
            pass
        return desired, notes

    async def _at_risk(self, plan: Plan, request: HostRequest) -> list[str]:
        """The netdevs the plan changes that carry the management connection."""
        links = await self.netlink.links()
        carrying: dict[str, str] = {}
        default = await self.netlink.route_interface(_DEFAULT_PROBE)
        if default:
            carrying[default] = "the default route"
        if request.ssh_address:
            try:
                ssh = ipaddress.ip_address(request.ssh_address)
            except ValueError:
                ssh = None
            for name, link in links.items():
                if ssh is not None and any(a.ip == ssh for a in link.addresses):
                    carrying[name] = f"your SSH connection ({ssh})"
        touched = {a.target for a in plan.actions if a.component in ("links", "qos", "firewall")}
        return [f"{n} carries {carrying[n]}" for n in sorted(touched & set(carrying))]

    # --- plan and apply ---------------------------------------------------------------------

    async def plan(self, request: HostRequest = HostRequest()) -> Plan:
        desired, notes = await self.desired(request)
        plan = await self.pipeline.plan(desired, notes)
        risks = await self._at_risk(plan, request)
        if risks and request.accept_risk != ACCEPT_RISK:
            raise PreconditionFailed(
                "refusing to change the interface of the management connection: "
                + "; ".join(risks)
                + f". The change could cut you off; pass --accept-risk={ACCEPT_RISK} if you have another way in",
                netdev=risks[0].split(" ", 1)[0],
            )
        return plan

    async def apply(self, request: HostRequest = HostRequest()) -> Outcome:
        if not (request.confirm_timeout_s == 0 or 0 < request.confirm_timeout_s <= MAX_CONFIRM_S):
            raise InvalidSpec.one("confirm_timeout_s", f"must be 0 (none) or up to {MAX_CONFIRM_S:g} seconds")
        async with self.pipeline.exclusive(request.what):
            self.pipeline.refuse_if_pending()
            self.pipeline.stuck()
            plan = await self.plan(request)
            outcome = await self.pipeline.apply(plan, request.what, request.confirm_timeout_s)
        if outcome.changed:
            self.drift = []
        return outcome

    async def confirm(self) -> str:
        return await self.pipeline.confirm()

    async def rollback(self) -> str:
        return await self.pipeline.rollback()

    async def restore(self) -> list[str]:
        """Brings back the host as it was before sparkd first changed it; sparkd then manages nothing."""
        async with self.pipeline.exclusive("a host restore"):
            self.pipeline.refuse_if_pending()
            self.pipeline.stuck()
            baseline = self.records.baseline()
            if not baseline:
                raise PreconditionFailed("sparkd has not changed this host: there is nothing to restore")
            await self.pipeline.restore_items(baseline)
            self.records.drop_committed()
            self.records.drop_baseline()
        return sorted(f"{c} {k}" for c, items in baseline.items() for k in items)

    # --- the committed state: start and drift -----------------------------------------------

    def committed(self) -> DesiredHost | None:
        record = self.records.committed()
        if record is None:
            return None
        try:
            return desired_mod.from_record(record[1])
        except (KeyError, TypeError, ValueError) as e:
            log.error("host.committed_unreadable", error=str(e))
            return None

    async def start(self) -> str:
        """At daemon start, before READY: finish an interrupted apply, then re-apply the committed state
        (what a reboot forgets: addresses, MTU, QoS, the module). Never raises: a node whose link cannot be
        configured still starts, and reports why."""
        done = []
        try:
            if recovered := await self.pipeline.recover():
                done.append(recovered)
            desired = self.committed()
            if desired is not None:
                self.reapply_pending = True
                async with self.pipeline.exclusive("the host re-apply at start"):
                    plan = await self.pipeline.plan(desired)
                    outcome = await self.pipeline.apply(plan, "the host re-apply at start")
                self.reapply_pending = False
                if outcome.changed:
                    done.append(f"re-applied {len(plan.steps)} host changes")
        except Exception as e:  # retried by the drift check (`check_drift`) until it succeeds
            log.error("host.start_failed", error=str(e))
            done.append(f"host configuration failed at start: {e}")
        return "; ".join(done)

    async def check_drift(self, repair: bool | None = None) -> list[HostAction]:
        """What differs from the committed state now (only the fields sparkd owns); re-applies them when
        `repair` (default: the config's host.drift = "repair", or a re-apply at start that failed). The check
        itself only observes, so it never holds the host configuration against an apply."""
        desired = self.committed()
        if desired is None or self.pipeline.pending is not None or self.pipeline.busy:
            self.drift = [] if desired is None else self.drift
            return self.drift
        try:
            plan = await self.pipeline.plan(desired)
            self.drift = plan.actions
            wanted = repair if repair is not None else self.config.host.drift == "repair" or self.reapply_pending
            if self.drift and wanted and not self.pipeline.busy:
                async with self.pipeline.exclusive("a host drift repair"):
                    self.pipeline.stuck()
                    plan = await self.pipeline.plan(desired)
                    await self.pipeline.apply(plan, "a host drift repair")
                self.reapply_pending = False
                self.drift = []
                log.warning("host.drift_repaired", actions=len(plan.steps))
        except SparkdError as e:  # a tool failed, or an apply began meanwhile: look again next time
            log.warning("host.drift_check_failed", error=str(e))
        return self.drift

    def pending_deadline(self) -> float:
        p = self.pipeline.pending
        return p.deadline if p is not None else 0.0
