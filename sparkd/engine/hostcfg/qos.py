"""RoCE QoS of the twins: trust DSCP, PFC on one priority, and the RDMA CM's default ToS (DESIGN.md).

An item is one twin's state: its trust state and PFC (through `dcb`, else `mlnx_qos`, whichever the
node has) and the default RoCE ToS of its RDMA device (configfs, what `cma_roce_tos -d DEV -t 106`
writes). QoS off is the kernel's state of a fresh port: trust PCP, PFC off, ToS 0. Changes steer
traffic onto a priority only after it is lossless, and off it before it stops being lossless.

Trust on a ConnectX: mlx5 has no DCB app-trust operation (its dcbnl ops implement `ieee_setapp` and
`ieee_delapp`, not `dcbnl_setapptrust`), so `dcb apptrust` fails there. The port trusts DSCP while its
DCB app table holds DSCP rules and PCP when it holds none (mlx5e_dcbnl_ieee_setapp/delapp switch the
trust state); mlnx_qos does the same on a kernel without the qos/trust sysfs file, installing the 64
default rules DSCP d -> priority d >> 3. So with `dcb`, trust dscp is `dcb app replace dev IF
dscp-prio 0:0 ... 63:7` and trust pcp is `dcb app flush dev IF dscp-prio`.

The formats parsed, from the tools' sources:
- iproute2 (github.com/iproute2/iproute2) dcb/dcb_pfc.c, dcb/dcb_app.c, dcb/dcb.c, man/man8/dcb-pfc.8 and
  dcb-app.8: `dcb pfc show dev IF prio-pfc` prints `prio-pfc 0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off `;
  `dcb -N app show dev IF dscp-prio` prints `dscp-prio 0:0 1:0 ... 63:7 `, or nothing when there is no rule.
- mlnx-tools (github.com/Mellanox/mlnx-tools) python/mlnx_qos (pretty_print): `mlnx_qos -i IF` prints
  `Priority trust state: dscp` and, after `PFC configuration:`, `\\tpriority    0   1 ... 7` and
  `\\tenabled     0   0   0   1 ...`; it prints its own errors on stdout.
- mlnx-tools sbin/cma_roce_tos: the ToS is /sys/kernel/config/rdma_cm/DEV/ports/1/default_roce_tos, which
  appears once the group DEV is made (mkdir) and reads back as the number and a newline.

An absent configfs group reads as ToS 0: the group lives until reboot once sparkd makes it, so without
it nothing set the ToS through sparkd since boot, and the kernel's default is 0 (cma_roce_tos removes a
group it made, so a ToS it set is read as 0 too: with QoS on it is written anyway). A node with neither
tool has trust and PFC unreadable (`QosState.trust` ""): with QoS off that plans nothing (sparkd cannot
have changed them there), with QoS on planning refuses, naming the tools and their packages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparkd.engine.hostcfg.component import Change, Record
from sparkd.errors import HostOperationFailed, shown
from sparkd.host.protocols import CommandResult, Files, Runner
from sparkd.model.host import ActionKind, DesiredHost, HostAction

TIMEOUT = 10.0  # seconds one dcb or mlnx_qos run may take
CONFIGFS = "/sys/kernel/config/rdma_cm"
INFINIBAND = "/sys/class/infiniband"
MAX_DEVICES = 64  # RDMA devices looked at to find a netdev's
NETDEV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")  # IFNAMSIZ 16, no "/" or ":"
RDMA_DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # IB_DEVICE_NAME_MAX 64
TRUSTS = ("dscp", "pcp")
NO_TOOL = (
    "RoCE QoS needs dcb (package iproute2) or mlnx_qos (package mlnx-tools, or MLNX_OFED) and this node has "
    "neither: install one, or set [host] qos = false"
)


@dataclass(frozen=True)
class QosState:
    """One twin's QoS: trust ("dscp" | "pcp"; "" when no tool can read it), PFC per priority 0..7 (() when
    unreadable), and the default RoCE ToS of its RDMA device `rdma_device` (carried so that a change, and a
    recorded item brought back, name the device: `diff` sees only the netdev)."""

    trust: str
    pfc: tuple[bool, ...]
    tos: int
    rdma_device: str = ""


def shown_pfc(pfc: tuple[bool, ...]) -> str:
    """The priorities with PFC on, as a plan prints them: "3", "3,4", "none" ("unknown" when unreadable)."""
    if not pfc:
        return "unknown"
    return ",".join(str(p) for p, on in enumerate(pfc) if on) or "none"


@dataclass(frozen=True)
class SetTrust:
    netdev: str
    current: str
    desired: str

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.SET_QOS,
            self.netdev,
            self.current or "unknown",
            self.desired,
            f"trust {self.desired.upper()} on {self.netdev} (from {self.current.upper() or 'unknown'})",
            "qos",
        )


@dataclass(frozen=True)
class SetPfc:
    netdev: str
    current: tuple[bool, ...]
    desired: tuple[bool, ...]

    def show(self) -> HostAction:
        current, desired = shown_pfc(self.current), shown_pfc(self.desired)
        return HostAction(
            ActionKind.SET_QOS,
            self.netdev,
            current,
            desired,
            f"set PFC of {self.netdev} on priorities {desired} (from {current})",
            "qos",
        )


@dataclass(frozen=True)
class SetRoceTos:
    rdma_device: str
    current: int
    desired: int

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.SET_QOS,
            self.rdma_device,
            str(self.current),
            str(self.desired),
            f"set the RDMA CM's default RoCE ToS of {self.rdma_device} to {self.desired} (from {self.current})",
            "qos",
        )


def _why(result: CommandResult) -> str:
    """A tool's complaint, cut to a line: stderr's first (dcb), else stdout's last (mlnx_qos prints its errors
    there, after any warning)."""
    err = [s.strip() for s in result.stderr.splitlines() if s.strip()]
    out = [s.strip() for s in result.stdout.splitlines() if s.strip()]
    return shown(err[0] if err else out[-1] if out else "(no output)", 200)


def parse_dcb_pfc(text: str) -> tuple[bool, ...]:
    """PFC per priority from `dcb pfc show dev IF prio-pfc`; ValueError when it is not that output."""
    lines = [s for s in text.splitlines() if s.strip()]
    if len(lines) != 1 or not lines[0].startswith("prio-pfc "):
        raise ValueError("expected one line `prio-pfc 0:off 1:off ...`")
    tokens = lines[0].split()[1:]
    if [t.partition(":")[0] for t in tokens] != [str(p) for p in range(8)]:
        raise ValueError("expected the priorities 0 to 7, in order")
    values = [t.partition(":")[2] for t in tokens]
    if any(v not in ("on", "off") for v in values):
        raise ValueError("expected on or off for each priority")
    return tuple(v == "on" for v in values)


def parse_dcb_dscp(text: str) -> str:
    """The trust state from `dcb -N app show dev IF dscp-prio`: "dscp" when there are DSCP rules, else "pcp"."""
    lines = [s for s in text.splitlines() if s.strip()]
    if not lines:
        return "pcp"
    if len(lines) != 1 or not lines[0].startswith("dscp-prio "):
        raise ValueError("expected nothing or one line `dscp-prio DSCP:PRIO ...`")
    tokens = lines[0].split()[1:]
    if not 0 < len(tokens) <= 64 * 8 or not all(re.fullmatch(r"([0-9]|[1-5][0-9]|6[0-3]):[0-7]", t) for t in tokens):
        raise ValueError("expected DSCP:PRIO rules, DSCP 0..63 and PRIO 0..7")
    return "dscp"


def parse_mlnx_qos(text: str) -> tuple[str, tuple[bool, ...]]:
    """(trust, PFC per priority) from `mlnx_qos -i IF`; ValueError when it is not that output."""
    lines = [s.strip() for s in text.splitlines()]
    trusts = [s.removeprefix("Priority trust state:").strip() for s in lines if s.startswith("Priority trust state:")]
    if len(trusts) != 1:
        raise ValueError("expected one line `Priority trust state: ...`")
    if trusts[0] not in TRUSTS:
        raise ValueError(f"the trust state is {shown(trusts[0])} (not supported by this driver?)")
    if lines.count("PFC configuration:") != 1:
        raise ValueError("expected one `PFC configuration:` table")
    table = lines[lines.index("PFC configuration:") + 1 :][:2]
    if len(table) != 2 or table[0].split() != ["priority", *(str(p) for p in range(8))]:
        raise ValueError("expected `priority 0 1 2 3 4 5 6 7` after `PFC configuration:`")
    enabled = table[1].split()
    if len(enabled) != 9 or enabled[0] != "enabled" or any(v not in ("0", "1") for v in enabled[1:]):
        raise ValueError("expected `enabled` and eight 0 or 1 after the priorities")
    return trusts[0], tuple(v == "1" for v in enabled[1:])


def _tos_path(rdma_device: str) -> tuple[str, str]:
    """(the configfs group of the device, its port 1's default_roce_tos attribute)."""
    if not RDMA_DEVICE.fullmatch(rdma_device):
        raise HostOperationFailed(f"not an RDMA device name: {shown(rdma_device)}", rdmaDevice=rdma_device)
    group = f"{CONFIGFS}/{rdma_device}"
    return group, f"{group}/ports/1/default_roce_tos"


def _check_netdev(netdev: str) -> None:
    if not NETDEV.fullmatch(netdev):
        raise HostOperationFailed(f"not a netdev name: {shown(netdev)}", ifname=netdev)


class QosComponent:
    """RoCE QoS of the twins (implements `component.Component`)."""

    name = "qos"

    def __init__(self, files: Files, runner: Runner) -> None:
        self.files = files
        self.runner = runner

    def accepts(self, key: str) -> bool:
        return NETDEV.fullmatch(key) is not None

    def keys(self, desired: DesiredHost) -> list[str]:
        """The twins with a RoCE device (a netdev without one, named by `host.twin_a`, has no RoCE QoS)."""
        return [t.netdev for t in desired.twins if t.rdma_device]

    def _tool(self) -> tuple[str, str] | None:
        """("dcb" | "mlnx_qos", its path): dcb when the node has it, else mlnx_qos; None with neither."""
        for name in ("dcb", "mlnx_qos"):
            path = self.runner.which(name)
            if path:
                return name, path
        return None

    async def _run(self, argv: Sequence[str], netdev: str) -> str:
        result = await self.runner.run(argv, TIMEOUT)
        if result.returncode != 0:
            name = argv[0].rsplit("/", 1)[-1]
            command = " ".join([name, *argv[1:7]]) + (" ..." if len(argv) > 7 else "")
            raise HostOperationFailed(
                f"{command} failed on {netdev} (exit status {result.returncode}): {_why(result)}",
                ifname=netdev,
                command=name,
            )
        return result.stdout

    def _rdma_device(self, netdev: str) -> str:
        """The RDMA device whose PCI function carries `netdev` (/sys/class/infiniband/DEV/device/net)."""
        for dev in self.files.list_dir(INFINIBAND)[:MAX_DEVICES]:
            if RDMA_DEVICE.fullmatch(dev) and netdev in self.files.list_dir(f"{INFINIBAND}/{dev}/device/net"):
                return dev
        raise HostOperationFailed(
            f"{netdev} has no RDMA device in {INFINIBAND}: is the mlx5_ib module loaded?", ifname=netdev
        )

    def _read_tos(self, rdma_device: str) -> int:
        group, path = _tos_path(rdma_device)
        try:
            data = self.files.read_bounded(path, 16)
            listed = self.files.list_dir(group) if data is None else []
        except OSError as e:
            raise HostOperationFailed(f"cannot read {path}: {e.strerror or e}", rdmaDevice=rdma_device) from e
        if data is None:
            if listed:
                raise HostOperationFailed(
                    f"{group} has no ports/1/default_roce_tos: is {rdma_device} a RoCE device?", rdmaDevice=rdma_device
                )
            return 0  # no configfs group: not set through configfs since boot (the module's docstring)
        text = data.decode("ascii", errors="replace")
        if not re.fullmatch(r"[0-9]{1,3}\n?", text) or int(text) > 255:
            raise HostOperationFailed(f"{path} holds {shown(text)}, not a ToS from 0 to 255", rdmaDevice=rdma_device)
        return int(text)

    async def _read_dcb(self, tool: tuple[str, str], netdev: str) -> tuple[str, tuple[bool, ...]]:
        name, path = tool
        try:
            if name == "dcb":
                trust = parse_dcb_dscp(await self._run([path, "-N", "app", "show", "dev", netdev, "dscp-prio"], netdev))
                return trust, parse_dcb_pfc(await self._run([path, "pfc", "show", "dev", netdev, "prio-pfc"], netdev))
            return parse_mlnx_qos(await self._run([path, "-i", netdev], netdev))
        except ValueError as e:
            raise HostOperationFailed(
                f"cannot read the QoS of {netdev}: {name}'s output is not what it prints ({e})",
                ifname=netdev,
                command=name,
            ) from e

    async def observe(self, keys: list[str]) -> Mapping[str, QosState | None]:
        tool = self._tool()
        result: dict[str, QosState | None] = {}
        for netdev in keys:
            _check_netdev(netdev)
            rdma_device = self._rdma_device(netdev)
            tos = self._read_tos(rdma_device)
            trust, pfc = await self._read_dcb(tool, netdev) if tool else ("", ())
            result[netdev] = QosState(trust, pfc, tos, rdma_device)
        return result

    def target(self, desired: DesiredHost, key: str, have: QosState | None) -> QosState | None:
        twin = next((t for t in desired.twins if t.netdev == key), None)
        if have is None or twin is None:
            return have
        if have.rdma_device and have.rdma_device != twin.rdma_device:
            raise HostOperationFailed(
                f"{key}'s RDMA device is {have.rdma_device}, not {twin.rdma_device} as planned: plan again",
                ifname=key,
            )
        qos = desired.qos
        if qos.enabled and not have.trust:
            raise HostOperationFailed(NO_TOOL, ifname=key)
        if not qos.enabled:
            if not have.trust:  # no tool: trust and PFC stay as they are (unreadable)
                return QosState("", (), 0, twin.rdma_device)
            return QosState("pcp", (False,) * 8, 0, twin.rdma_device)
        return QosState(qos.trust, qos.pfc(), qos.tos, twin.rdma_device)

    def diff(self, key: str, want: QosState | None, have: QosState | None) -> list[Change]:
        if want is None or have is None:
            return []
        trust: list[Change] = [SetTrust(key, have.trust, want.trust)] if want.trust != have.trust else []
        if not want.trust:
            trust = []  # unknown is not a state to bring back
        pfc: list[Change] = [SetPfc(key, have.pfc, want.pfc)] if want.pfc and want.pfc != have.pfc else []
        device = want.rdma_device or have.rdma_device
        tos: list[Change] = [SetRoceTos(device, have.tos, want.tos)] if want.tos != have.tos else []
        if any(want.pfc):  # lossless first, then traffic onto it
            return pfc + trust + tos
        return tos + trust + pfc  # traffic off it first, then PFC off

    async def apply(self, change: Change) -> None:
        match change:
            case SetRoceTos():
                group, path = _tos_path(change.rdma_device)
                if not 0 <= change.desired <= 255:
                    raise HostOperationFailed(f"not a ToS from 0 to 255: {change.desired}")
                try:
                    self.files.write_attribute(path, f"{change.desired}\n".encode(), group=group)
                except OSError as e:
                    raise HostOperationFailed(
                        f"cannot write {path}: {e.strerror or e} (is configfs mounted on /sys/kernel/config, "
                        f"with the rdma_cm module loaded?)",
                        rdmaDevice=change.rdma_device,
                    ) from e
            case SetTrust() | SetPfc():
                _check_netdev(change.netdev)
                tool = self._tool()
                if tool is None:
                    raise HostOperationFailed(NO_TOOL, ifname=change.netdev)
                await self._run(self._argv(tool, change), change.netdev)
            case _:
                raise HostOperationFailed(f"not a QoS change: {change!r}")

    @staticmethod
    def _argv(tool: tuple[str, str], change: SetTrust | SetPfc) -> list[str]:
        name, path = tool
        netdev = change.netdev
        if isinstance(change, SetTrust):
            if change.desired not in TRUSTS:
                raise HostOperationFailed(f"not a trust state: {shown(change.desired)}", ifname=netdev)
            if name == "mlnx_qos":
                return [path, "-i", netdev, "--trust", change.desired]
            if change.desired == "pcp":
                return [path, "app", "flush", "dev", netdev, "dscp-prio"]
            return [path, "app", "replace", "dev", netdev, "dscp-prio", *(f"{d}:{d >> 3}" for d in range(64))]
        if len(change.desired) != 8:
            raise HostOperationFailed(f"PFC is set for 8 priorities, not {len(change.desired)}", ifname=netdev)
        if name == "mlnx_qos":
            return [path, "-i", netdev, "--pfc", ",".join("1" if on else "0" for on in change.desired)]
        states = (f"{p}:{'on' if on else 'off'}" for p, on in enumerate(change.desired))
        return [path, "pfc", "set", "dev", netdev, "prio-pfc", *states]

    def dump(self, item: QosState | None) -> Record:
        if item is None:
            return None
        return {"trust": item.trust, "pfc": list(item.pfc), "tos": item.tos, "rdma_device": item.rdma_device}

    def load(self, record: Record) -> QosState | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"trust", "pfc", "tos", "rdma_device"}:
            raise ValueError("a QoS record has exactly trust, pfc, tos and rdma_device")
        trust, pfc, tos, device = record["trust"], record["pfc"], record["tos"], record["rdma_device"]
        if not isinstance(trust, str) or trust not in ("dscp", "pcp", ""):
            raise ValueError(f"a QoS record's trust is dscp, pcp or empty (unknown), got {shown(trust)}")
        if not isinstance(pfc, list) or not all(isinstance(p, bool) for p in pfc) or len(pfc) != (8 if trust else 0):
            raise ValueError("a QoS record's pfc is 8 booleans (none when its trust is unknown)")
        if not isinstance(tos, int) or isinstance(tos, bool) or not 0 <= tos <= 255:
            raise ValueError(f"a QoS record's tos is an integer from 0 to 255, got {shown(tos)}")
        if not isinstance(device, str) or not RDMA_DEVICE.fullmatch(device):
            raise ValueError(f"a QoS record's rdma_device is an RDMA device name, got {shown(device)}")
        return QosState(trust, tuple(pfc), tos, device)
