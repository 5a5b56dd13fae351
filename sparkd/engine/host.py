"""Host configuration: observe -> plan (pure) -> apply -> verify -> commit, or roll back.

Desired state comes from the daemon config (this node's index, the subnets, the MTU)
and the detected twins. The plan lists only what differs, so applying the same desired
state twice changes nothing. Each applied action records its inverse; if an action or
the verification fails, the inverses run in reverse order and the error is raised.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from sparkd.config import Config
from sparkd.engine.twins import select_twins
from sparkd.errors import HostOperationFailed, PreconditionFailed, VerifyFailed
from sparkd.host.protocols import Files, Netlink, Sysfs
from sparkd.model.host import ActionKind, HostAction
from sparkd.model.inventory import LinkState, Twins
from sparkd.render.nccl import nccl_env, render_nccl_conf

log = structlog.get_logger(__name__)

NCCL_CONF = "/etc/nccl.conf"


@dataclass(frozen=True)
class Observed:
    """The host as observed now."""

    links: Mapping[str, LinkState]
    twins: Twins
    nccl_conf: str | None


def desired_addresses(config: Config, twins: Twins, index: int) -> dict[str, ipaddress.IPv4Interface]:
    """netdev -> the address it should carry, for the node of `index`."""
    ic = config.interconnect
    result = {twins.a.netdev: ic.address(ic.subnet_a, index)}
    if twins.b is not None:
        result[twins.b.netdev] = ic.address(ic.subnet_b, index)
    return result


def plan(config: Config, observed: Observed, index: int) -> list[HostAction]:
    """The actions that bring the host to the desired state (empty when it is there)."""
    ic = config.interconnect
    managed = (ic.subnet_a, ic.subnet_b)
    actions: list[HostAction] = []
    for netdev, address in desired_addresses(config, observed.twins, index).items():
        link = observed.links[netdev]
        if link.mtu != ic.mtu:
            actions.append(
                HostAction(
                    ActionKind.SET_MTU,
                    netdev,
                    str(link.mtu),
                    str(ic.mtu),
                    f"set MTU of {netdev} from {link.mtu} to {ic.mtu}",
                )
            )
        for stale in link.addresses:
            if stale != address and any(stale.ip in net for net in managed):
                actions.append(
                    HostAction(
                        ActionKind.REMOVE_ADDRESS,
                        netdev,
                        str(stale),
                        "",
                        f"remove stale interconnect address {stale} from {netdev}",
                    )
                )
        if address not in link.addresses:
            actions.append(
                HostAction(ActionKind.ADD_ADDRESS, netdev, "", str(address), f"add address {address} to {netdev}")
            )
        if not link.admin_up:
            actions.append(HostAction(ActionKind.SET_LINK_UP, netdev, "down", "up", f"set {netdev} up"))
    content = render_nccl_conf(nccl_env(observed.twins))
    current = observed.nccl_conf
    if current is None or current.encode() != content:
        actions.append(
            HostAction(
                ActionKind.WRITE_FILE,
                NCCL_CONF,
                "absent" if current is None else "differs",
                "rendered",
                f"write {NCCL_CONF} (NCCL_SOCKET_IFNAME, NCCL_IB_HCA)",
                content,
            )
        )
    return actions


class HostConfigurator:
    """Observes, plans and applies this node's interconnect configuration."""

    def __init__(
        self,
        config: Config,
        files: Files,
        sysfs: Sysfs,
        netlink: Netlink,
        index: Callable[[], int | None] | None = None,
    ) -> None:
        """`index` is this node's index, None while unpaired (the membership's); tests that pin it in the
        config leave it out."""
        self.config, self.files, self.sysfs, self.netlink = config, files, sysfs, netlink
        self.index = index or (lambda: config.node.index)

    async def observe(self) -> Observed:
        links = await self.netlink.links()
        twins = select_twins(self.sysfs.rdma_ports(), links, self.config.interconnect.mode)
        try:
            nccl_conf = self.files.read_text(NCCL_CONF)
        except OSError:
            nccl_conf = None  # unreadable (e.g. a directory): plan a rewrite; the write reports the error
        return Observed(links, twins, nccl_conf)

    async def plan(self) -> list[HostAction]:
        index = self.index()
        if index is None:
            raise PreconditionFailed(
                "this node is not paired yet, and its interconnect addresses follow from the index pairing gives "
                "it: run `sparkctl-client peer pair begin` on the head and `peer pair join` here, then apply again"
            )
        return plan(self.config, await self.observe(), index)

    async def apply(self, dry_run: bool = False) -> tuple[list[HostAction], bool]:
        """Applies the plan. Returns (actions, verified). Rolls back and raises on failure."""
        actions = await self.plan()
        if dry_run or not actions:
            return actions, not actions
        undo: list[HostAction] = []
        try:
            for action in actions:
                undo.append(await self._do(action))
                log.info("host.action_applied", kind=action.kind.value, target=action.target, desired=action.desired)
            remaining = await self.plan()
            if remaining:
                raise VerifyFailed(
                    "host apply did not verify: "
                    + "; ".join(a.description for a in remaining)
                    + ". The change was rolled back.",
                )
        except Exception:
            await self._rollback(undo)
            raise
        log.info("host.applied", actions=len(actions))
        return actions, True

    async def _rollback(self, undo: list[HostAction]) -> None:
        for inverse in reversed(undo):
            try:
                await self._do(inverse)
            except Exception as e:  # keep undoing the rest; report what could not be undone
                log.error("host.rollback_step_failed", kind=inverse.kind.value, target=inverse.target, error=str(e))
        log.warning("host.rolled_back", steps=len(undo))

    async def _do(self, a: HostAction) -> HostAction:
        """Performs `a` and returns its inverse."""
        match a.kind:
            case ActionKind.SET_MTU:
                await self.netlink.set_mtu(a.target, int(a.desired))
                return HostAction(ActionKind.SET_MTU, a.target, a.desired, a.current, "restore MTU")
            case ActionKind.ADD_ADDRESS:
                await self.netlink.add_address(a.target, ipaddress.IPv4Interface(a.desired))
                return HostAction(ActionKind.REMOVE_ADDRESS, a.target, a.desired, "", "remove added address")
            case ActionKind.REMOVE_ADDRESS:
                await self.netlink.remove_address(a.target, ipaddress.IPv4Interface(a.current))
                return HostAction(ActionKind.ADD_ADDRESS, a.target, "", a.current, "restore removed address")
            case ActionKind.SET_LINK_UP:
                await self.netlink.set_up(a.target, a.desired == "up")
                return HostAction(ActionKind.SET_LINK_UP, a.target, a.desired, a.current, "restore link state")
            case ActionKind.WRITE_FILE:
                try:
                    previous = self.files.read_text(a.target)
                    if a.desired == "absent":
                        self.files.remove(a.target)
                    else:
                        self.files.write_atomic(a.target, a.content)
                except OSError as e:
                    raise HostOperationFailed(f"cannot write {a.target}: {e.strerror}", path=a.target) from e
                if previous is None:
                    return HostAction(ActionKind.WRITE_FILE, a.target, "rendered", "absent", "remove written file")
                return HostAction(
                    ActionKind.WRITE_FILE, a.target, "rendered", "previous", "restore file", previous.encode()
                )
        raise AssertionError(a.kind)
