"""Firewall openings for the TCP ports sparkd's traffic uses on the interconnect netdevs (ufw).

Only where ufw is active (its /etc/ufw/ufw.conf says ENABLED=yes and the ufw program is there):
a host without an active firewall lets the traffic through already, and sparkd turns no firewall
on. A key is one port on one twin, "enp1s0f1np1/7471/tcp"; an item says whether ufw allows it in
on that netdev. An opening is `ufw allow in on IF to any port N proto tcp comment 'sparkd: WHAT'`
and its rollback `ufw delete allow in on IF to any port N proto tcp` (ufw(8): a rule is deleted
by repeating it after `delete`, with or without its comment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sparkd.engine.hostcfg.component import Change, Record
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import Files, Runner
from sparkd.model.host import ActionKind, DesiredHost, HostAction

UFW_CONF = "/etc/ufw/ufw.conf"
MAX_UFW_CONF = 64 * 1024
MAX_STATUS = 1 << 20  # bytes of `ufw status` sparkd parses (the runner keeps 64 KiB anyway)
TIMEOUT = 30.0  # seconds for one ufw command
_NETDEV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}")  # IFNAMSIZ - 1, no '/' or whitespace
_KEY = re.compile(r"(?P<netdev>[^/]+)/(?P<port>[0-9]{1,5})/tcp")
_ENABLED = re.compile(r"\s*ENABLED\s*=\s*(\S*)\s*")
# A rule line of `ufw status` (ufw's backend prints "%-26s %-12s%-26s%s%s": To, Action, From, attributes,
# " # comment"), for an incoming TCP port on an interface, IPv4 or IPv6: "7471/tcp on enp1s0f1np1  ALLOW  Anywhere".
_RULE = re.compile(
    r"(?P<port>[0-9]{1,5})/tcp(?P<v6> \(v6\))? on (?P<netdev>\S+)\s+ALLOW(?: IN)?\s+Anywhere(?: \(v6\))?(?:\s|$)"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/+-]")
MAX_WHAT = 48


@dataclass(frozen=True)
class Opening:
    """Whether ufw allows the key's port in on its netdev. `what` (the port's use, for the rule's
    comment) is a label, not state: items compare by `open` alone."""

    open: bool
    what: str = field(default="", compare=False)


@dataclass(frozen=True)
class OpenPort:
    netdev: str
    port: int
    what: str

    def argv(self) -> list[str]:
        return [*_rule(self.netdev, self.port), "comment", f"sparkd: {self.what or 'interconnect'}"]

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.OPEN_PORT,
            f"{self.netdev}/{self.port}/tcp",
            "closed",
            "open",
            f"ufw allow in on {self.netdev} to any port {self.port} proto tcp ({self.what or 'interconnect'})",
            "firewall",
        )


@dataclass(frozen=True)
class ClosePort:
    """The rollback of an opening."""

    netdev: str
    port: int

    def argv(self) -> list[str]:
        return ["delete", *_rule(self.netdev, self.port)]

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.CLOSE_PORT,
            f"{self.netdev}/{self.port}/tcp",
            "open",
            "closed",
            f"ufw delete allow in on {self.netdev} to any port {self.port} proto tcp",
            "firewall",
        )


def _rule(netdev: str, port: int) -> list[str]:
    return ["allow", "in", "on", netdev, "to", "any", "port", str(port), "proto", "tcp"]


def opening_key(netdev: str, port: int) -> str:
    """The key of `port` on `netdev`; ValueError when either is not one sparkd would hand ufw."""
    if not _NETDEV.fullmatch(netdev):
        raise ValueError(f"{netdev!r} is not a netdev name")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{port!r} is not a TCP port (1..65535)")
    return f"{netdev}/{port}/tcp"


def parse_key(key: str) -> tuple[str, int]:
    """(netdev, port) of a key; ValueError when it is not one `opening_key` makes."""
    m = _KEY.fullmatch(key)
    if m is None:
        raise ValueError(f"{key!r} is not a firewall key (netdev/port/tcp)")
    netdev, port = m["netdev"], int(m["port"])
    opening_key(netdev, port)
    return netdev, port


def ufw_enabled(ufw_conf_text: str | None) -> bool:
    """Whether /etc/ufw/ufw.conf (its text; None: absent) says ENABLED=yes (the last assignment wins)."""
    enabled = False
    for line in (ufw_conf_text or "").splitlines():
        if (m := _ENABLED.fullmatch(line)) is not None:
            enabled = m[1].strip("'\"").lower() == "yes"
    return enabled


def parse_ufw_status(text: str) -> tuple[bool, set[tuple[str, int]]]:
    """Whether `ufw status` says active, and the (netdev, port) pairs it allows in over IPv4 (the interconnect's).
    ValueError when the text is not ufw's status."""
    lines = text[:MAX_STATUS].splitlines()
    first = lines[0].strip() if lines else ""
    if first not in ("Status: active", "Status: inactive"):
        raise ValueError(f"`ufw status` began with {first[:60]!r}, not 'Status: active' or 'Status: inactive'")
    allowed: set[tuple[str, int]] = set()
    for line in lines[1:]:
        m = _RULE.match(line)
        if m is not None and not m["v6"] and 1 <= int(m["port"]) <= 65535:
            allowed.add((m["netdev"], int(m["port"])))
    return first == "Status: active", allowed


def wanted(desired: DesiredHost) -> dict[str, str]:
    """key -> what, for every opening on every twin, in order (ports sorted within a netdev)."""
    result: dict[str, str] = {}
    for netdev in desired.netdevs():
        for opening in sorted(desired.firewall, key=lambda o: o.port):
            try:
                key = opening_key(netdev, opening.port)
            except ValueError as e:
                raise HostOperationFailed(f"cannot open a firewall port: {e}", port=str(opening.port)) from e
            result.setdefault(key, _UNSAFE.sub("_", opening.what)[:MAX_WHAT])
    return result


def firewall_report(ufw_conf_text: str | None, ufw_installed: bool, items: Mapping[str, Opening] | None = None) -> str:
    """One line for status: whether a firewall is active, and which sparkd openings are in place."""
    if not ufw_installed:
        return "no active firewall (ufw not installed): nothing to open"
    if not ufw_enabled(ufw_conf_text):
        return "no active firewall (ufw inactive): nothing to open"
    if not items:
        return "ufw active: no ports to open"
    closed = sorted(key for key, item in items.items() if not item.open)
    if not closed:
        return f"ufw active: {len(items)} interconnect port(s) open"
    opened = len(items) - len(closed)
    return f"ufw active: {opened} of {len(items)} interconnect port(s) open; closed: {', '.join(closed)}"


class FirewallComponent:
    """ufw openings on the interconnect (implements `component.Component`)."""

    name = "firewall"

    def __init__(self, files: Files, runner: Runner) -> None:
        self.files = files
        self.runner = runner

    def active(self) -> bool:
        """Whether ufw is installed and enabled (see the module's docstring)."""
        return self.runner.which("ufw") is not None and ufw_enabled(self._conf())

    def report(self, items: Mapping[str, Opening] | None = None) -> str:
        """`firewall_report` for this host."""
        return firewall_report(self._conf(), self.runner.which("ufw") is not None, items)

    def accepts(self, key: str) -> bool:
        try:
            parse_key(key)
        except ValueError:
            return False
        return True

    def keys(self, desired: DesiredHost) -> list[str]:
        if not desired.firewall or not desired.twins or not self.active():
            return []
        return list(wanted(desired))

    async def observe(self, keys: list[str]) -> Mapping[str, Opening]:
        if not keys:
            return {}
        pairs = {key: parse_key(key) for key in keys}
        result = await self._ufw(["status"], "read the firewall's rules")
        try:
            active, allowed = parse_ufw_status(result)
        except ValueError as e:
            raise HostOperationFailed(f"cannot read ufw's rules: {e}", command="ufw") from e
        if not active:
            raise HostOperationFailed(
                f"{UFW_CONF} says ENABLED=yes but `ufw status` says inactive: run `ufw enable` to start the firewall, "
                "or `ufw disable` to turn it off for good, then apply again",
                command="ufw",
            )
        return {key: Opening(pair in allowed) for key, pair in pairs.items()}

    def target(self, desired: DesiredHost, key: str, have: Opening | None) -> Opening:
        return Opening(True, wanted(desired).get(key, ""))

    def diff(self, key: str, want: Opening | None, have: Opening | None) -> list[Change]:
        wanted_open = want is not None and want.open
        if wanted_open == (have is not None and have.open):
            return []
        netdev, port = parse_key(key)
        if want is not None and want.open:
            return [OpenPort(netdev, port, want.what)]
        return [ClosePort(netdev, port)]

    async def apply(self, change: Change) -> None:
        match change:
            case OpenPort():
                await self._ufw(change.argv(), f"open TCP port {change.port} on {change.netdev}")
            case ClosePort():
                await self._ufw(change.argv(), f"close TCP port {change.port} on {change.netdev}")
            case _:
                raise HostOperationFailed(f"not a firewall change: {change!r}")

    def dump(self, item: Opening | None) -> Record:
        return None if item is None else {"open": item.open, "what": item.what}

    def load(self, record: Record) -> Opening | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"open", "what"}:
            raise ValueError("a firewall record has exactly open and what")
        if not isinstance(record["open"], bool) or not isinstance(record["what"], str):
            raise ValueError("a firewall record's open is true or false and its what a string")
        if len(record["what"]) > MAX_WHAT or _UNSAFE.search(record["what"]):
            raise ValueError(f"a firewall record's what is at most {MAX_WHAT} plain characters")
        return Opening(record["open"], record["what"])

    def _conf(self) -> str | None:
        try:
            data = self.files.read_bounded(UFW_CONF, MAX_UFW_CONF)
        except OSError as e:
            raise HostOperationFailed(f"cannot read {UFW_CONF}: {e.strerror or e}", path=UFW_CONF) from e
        if data is None:
            return None
        if len(data) > MAX_UFW_CONF:
            raise HostOperationFailed(f"{UFW_CONF} is larger than {MAX_UFW_CONF} bytes", path=UFW_CONF)
        return data.decode(errors="replace")

    async def _ufw(self, args: list[str], doing: str) -> str:
        ufw = self.runner.which("ufw")
        if ufw is None:
            raise HostOperationFailed(
                f"cannot {doing}: the ufw program is not installed (any more); reinstall it (apt install ufw), or "
                "set `firewall = false` in the config's [host] table (host.firewall)",
                command="ufw",
            )
        result = await self.runner.run([ufw, *args], TIMEOUT)
        if result.returncode != 0:
            said = " ".join((result.stderr.strip() or result.stdout.strip()).split())[:300] or "no output"
            raise HostOperationFailed(
                f"cannot {doing}: `ufw {' '.join(args[:4])} ...` exited {result.returncode}: {said}", command="ufw"
            )
        return result.stdout
