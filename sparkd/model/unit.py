"""systemd units as the engine plans them and as systemd reports them, and their journal lines."""

from __future__ import annotations

import signal
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: How the main process ended (systemd's ExecMainCode, the waitid(2) si_code values).
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3


@dataclass(frozen=True)
class UnitSpec:
    """A transient service to start."""

    name: str  # "sparkd-demo-rank0.service"
    argv: Sequence[str]
    description: str
    environment: Mapping[str, str] = field(default_factory=dict)
    # Joins this network namespace (NetworkNamespacePath=); the lab sets it per node.
    network_namespace_path: str = ""
    service_type: str = "exec"  # exec | notify | simple
    restart: str = "no"
    working_directory: str = ""
    # TimeoutStopUSec=: how long a stop waits after SIGTERM before SIGKILL; 0 keeps systemd's default (90 s).
    timeout_stop_s: float = 0


@dataclass(frozen=True)
class UnitState:
    """What systemd says about a unit.

    The service facts after `sub_state` come from the unit's org.freedesktop.systemd1.Service
    properties; they keep their defaults when the unit is not loaded or they could not be read
    (`result == ""` tells that apart: systemd always reports a Result for a loaded service).
    systemd clears ExecMainCode/ExecMainStatus when it starts the main process again (an automatic
    restart), so they describe the main process's last exit only until then.
    """

    name: str
    load_state: str  # "loaded", "not-found"
    active_state: str  # "active", "activating", "inactive", "failed", ...
    sub_state: str
    main_pid: int = 0  # MainPID: 0 when no main process runs
    result: str = ""  # Result: "success", "exit-code", "signal", "core-dump", "timeout", "oom-kill", ...; "" unknown
    exec_main_code: int = 0  # ExecMainCode: CLD_EXITED, CLD_KILLED, CLD_DUMPED; 0 while it has not exited
    exec_main_status: int = 0  # ExecMainStatus: the exit status, or the signal number
    n_restarts: int = 0  # NRestarts: automatic restarts (Restart=) since the unit was started
    exit_time: float = 0.0  # ExecMainExitTimestamp: Unix seconds the main process last exited; 0 if unknown

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "activating", "reloading")

    @property
    def exit_description(self) -> str:
        """How the main process last ended, in words ("exited with status 1", "killed by signal 9
        (SIGKILL)", "dumped core (signal 6, SIGABRT)"), with systemd's Result when it says more than
        that ("killed by signal 9 (SIGKILL), result 'oom-kill'"); "" when nothing is known."""
        code, status = self.exec_main_code, self.exec_main_status
        implied: tuple[str, ...]  # the Results that say nothing more than the text does
        if code == CLD_EXITED:
            text, implied = f"exited with status {status}", ("exit-code", "success")
        elif code == CLD_KILLED:
            text, implied = f"killed by signal {_signal(status)}", ("signal", "success")
        elif code == CLD_DUMPED:
            text, implied = f"dumped core (signal {status}{_signal_name(status, ', ')})", ("core-dump",)
        elif self.result and self.result != "success":
            return f"failed with result '{self.result}'"
        else:
            return ""
        if self.result and self.result not in implied:
            text += f", result '{self.result}'"
        return text

    @classmethod
    def unknown(cls, name: str) -> UnitState:
        """Not observed yet (or the observation failed)."""
        return cls(name, "unknown", "unknown", "unknown")


def _signal_name(number: int, prefix: str) -> str:
    try:
        return prefix + signal.Signals(number).name
    except ValueError:
        return ""


def _signal(number: int) -> str:
    name = _signal_name(number, "")
    return f"{number} ({name})" if name else str(number)


#: A journal message longer than this many characters is cut (a log line is for a person to read).
MESSAGE_MAX = 4096
_UNSAFE = ("Cc", "Zl", "Zp")  # control characters, U+2028, U+2029


def clean_message(raw: bytes | str) -> str:
    """A journal MESSAGE made safe to show: UTF-8 decoded with U+FFFD for bad bytes, every control
    character but tab (C0, DEL, C1: a terminal would obey them) and the Unicode line and paragraph
    separators replaced by U+FFFD (one entry stays one line), at most MESSAGE_MAX characters."""
    if isinstance(raw, bytes):
        raw = raw[: MESSAGE_MAX * 4].decode("utf-8", errors="replace")  # 4 bytes at most per character
    text = raw[:MESSAGE_MAX]
    return "".join("\ufffd" if c != "\t" and unicodedata.category(c) in _UNSAFE else c for c in text)


@dataclass(frozen=True)
class JournalLine:
    """One journal entry of a unit (its own output, or systemd's lines about it)."""

    timestamp: float  # realtime, seconds since the epoch
    unit: str
    message: str  # cleaned: see clean_message
    priority: int = 6  # syslog priority: 0 emerg ... 3 err, 4 warning, 6 info, 7 debug

    @classmethod
    def of(cls, timestamp: float, unit: str, message: bytes | str, priority: int = 6) -> JournalLine:
        """A line from raw journal fields: the message cleaned, the priority kept within 0..7."""
        return cls(timestamp, unit, clean_message(message), min(max(priority, 0), 7))


def unit_properties(spec: UnitSpec) -> dict[str, str]:
    """The unit's properties besides its command line and environment, as systemd spells them (for plans)."""
    props = {"Type": spec.service_type, "Restart": spec.restart, "Description": spec.description}
    if spec.network_namespace_path:
        props["NetworkNamespacePath"] = spec.network_namespace_path
    if spec.working_directory:
        props["WorkingDirectory"] = spec.working_directory
    if spec.timeout_stop_s:
        props["TimeoutStopSec"] = f"{spec.timeout_stop_s:g}s"
    return props
