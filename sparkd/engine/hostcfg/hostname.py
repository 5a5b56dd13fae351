"""The node's static hostname, set only where the config names one (`host.hostname`).

The item is the static hostname in /etc/hostname (its first line that is not a comment, as
systemd reads it), or None where there is none or it is not a valid name. A change runs
`hostnamectl set-hostname NAME`, which sets the static and the running hostname together. A
hostname is never removed: rolling back to "none" (or to a name that was not valid) leaves the
hostname as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sparkd.engine.hostcfg.component import Change, Record
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import Files, Runner
from sparkd.model.host import ActionKind, DesiredHost, HostAction

KEY = "hostname"
ETC_HOSTNAME = "/etc/hostname"
MAX_ETC_HOSTNAME = 4096
MAX_HOSTNAME = 64  # Linux's HOST_NAME_MAX
TIMEOUT = 30.0  # seconds for one hostnamectl
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123: 1..63, no '-' at either end


def valid_hostname(name: str) -> bool:
    """Whether `name` is an RFC 1123 host name (dot-separated labels of 1..63) of at most 64 characters."""
    return 0 < len(name) <= MAX_HOSTNAME and all(_LABEL.fullmatch(label) for label in name.split("."))


def parse_etc_hostname(text: str) -> str | None:
    """The static hostname in /etc/hostname's text: its first line that is neither blank nor a comment,
    stripped; None when there is none or it is not a valid host name."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line if valid_hostname(line) else None
    return None


@dataclass(frozen=True)
class Hostname:
    """The static hostname."""

    name: str


@dataclass(frozen=True)
class SetHostname:
    name: str
    current: str = ""

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.SET_HOSTNAME,
            KEY,
            self.current or "unset",
            self.name,
            f"hostnamectl set-hostname {self.name}",
            "hostname",
        )


class HostnameComponent:
    """The static hostname (implements `component.Component`)."""

    name = "hostname"

    def __init__(self, files: Files, runner: Runner) -> None:
        self.files = files
        self.runner = runner

    def accepts(self, key: str) -> bool:
        return key == KEY

    def keys(self, desired: DesiredHost) -> list[str]:
        return [KEY] if desired.hostname else []

    async def observe(self, keys: list[str]) -> Mapping[str, Hostname | None]:
        if not keys:
            return {}
        try:
            data = self.files.read_bounded(ETC_HOSTNAME, MAX_ETC_HOSTNAME)
        except OSError as e:
            raise HostOperationFailed(
                f"cannot read {ETC_HOSTNAME}: {e.strerror or e} (it must be a regular file, not a symlink)",
                path=ETC_HOSTNAME,
            ) from e
        name = None
        if data is not None and len(data) <= MAX_ETC_HOSTNAME:
            name = parse_etc_hostname(data.decode(errors="replace"))
        return {key: None if name is None else Hostname(name) for key in keys}

    def target(self, desired: DesiredHost, key: str, have: Hostname | None) -> Hostname:
        if not valid_hostname(desired.hostname):
            raise HostOperationFailed(
                f"host.hostname {desired.hostname[:80]!r} is not a host name: use dot-separated labels of 1 to 63 "
                f"letters, digits or '-' (not at either end of a label), at most {MAX_HOSTNAME} characters in all",
                field="host.hostname",
            )
        return Hostname(desired.hostname)

    def diff(self, key: str, want: Hostname | None, have: Hostname | None) -> list[Change]:
        if want is None or want == have:
            return []  # a hostname is never removed
        return [SetHostname(want.name, "" if have is None else have.name)]

    async def apply(self, change: Change) -> None:
        if not isinstance(change, SetHostname):
            raise HostOperationFailed(f"not a hostname change: {change!r}")
        if not valid_hostname(change.name):
            raise HostOperationFailed(f"refusing to set the hostname to {change.name[:80]!r}: not a host name")
        hostnamectl = self.runner.which("hostnamectl")
        if hostnamectl is None:
            raise HostOperationFailed(
                f"cannot set the hostname to {change.name}: hostnamectl is not installed (it comes with systemd); "
                "set it by hand, or remove host.hostname from the config",
                command="hostnamectl",
            )
        result = await self.runner.run([hostnamectl, "set-hostname", change.name], TIMEOUT)
        if result.returncode != 0:
            said = " ".join((result.stderr.strip() or result.stdout.strip()).split())[:300] or "no output"
            raise HostOperationFailed(
                f"cannot set the hostname to {change.name}: hostnamectl exited {result.returncode}: {said}",
                command="hostnamectl",
            )

    def dump(self, item: Hostname | None) -> Record:
        return None if item is None else {"name": item.name}

    def load(self, record: Record) -> Hostname | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"name"} or not isinstance(record["name"], str):
            raise ValueError("a hostname record is exactly {'name': '<host name>'}")
        if not valid_hostname(record["name"]):
            raise ValueError(f"a hostname record's name {record['name'][:80]!r} is not a host name")
        return Hostname(record["name"])
