"""systemd units as the engine plans them and as systemd reports them, and their journal lines.

A UnitSpec says what to start, and as whom: `user`/`dynamic_user`, `supplementary_groups` and a
`Sandbox` (systemd.exec(5)'s hardening options) are filled in by `sparkd.engine.sandbox`, which says
why each is set. `sparkd.host.systemd` sends a spec over D-Bus; `unit_properties` shows it in a plan
and `unit_file` writes it as a unit file (for `systemd-analyze security|verify`), in systemd's spelling.
"""

from __future__ import annotations

import errno
import signal
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

#: How the main process ended (systemd's ExecMainCode, the waitid(2) si_code values).
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
#: RLIM_INFINITY: LimitMEMLOCK=infinity on the bus.
RLIM_INFINITY = 2**64 - 1
#: Linux capabilities by bit number (linux/capability.h): CapabilityBoundingSet=/AmbientCapabilities= masks.
# fmt: off
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
# fmt: on


@dataclass(frozen=True)
class Sandbox:
    """systemd.exec(5)'s sandboxing options, one field each, named as systemd names them (snake case).

    The defaults are systemd's own (nothing restricted); `sparkd.engine.sandbox` chooses a deployment's.
    When a unit has a Sandbox, every boolean is sent (yes or no: a plan shows what was decided); empty
    strings, empty tuples and None are left unset.
    """

    no_new_privileges: bool = False
    protect_system: Literal["", "yes", "full", "strict"] = ""
    protect_home: Literal["", "yes", "read-only", "tmpfs"] = ""
    private_tmp: bool = False
    private_devices: bool = False
    private_network: bool = False  # only loopback (NetworkNamespacePath= wins over it)
    private_mounts: bool = False
    protect_kernel_tunables: bool = False
    protect_kernel_modules: bool = False
    protect_kernel_logs: bool = False
    protect_control_groups: bool = False
    protect_clock: bool = False
    protect_hostname: bool = False
    restrict_realtime: bool = False
    restrict_suid_sgid: bool = False
    lock_personality: bool = False
    memory_deny_write_execute: bool = False
    remove_ipc: bool = False
    restrict_namespaces: bool = False  # True: no namespace of any kind (RestrictNamespaces=yes)
    protect_proc: Literal["", "default", "invisible", "ptraceable", "noaccess"] = ""
    system_call_architectures: tuple[str, ...] = ()  # ("native",)
    system_call_filter: tuple[str, ...] = ()  # allowed: sets ("@system-service") and names
    system_call_deny: tuple[str, ...] = ()  # then denied (a second SystemCallFilter=~...)
    system_call_error_number: int = 0  # a denied call fails with this errno; 0: the process is killed
    restrict_address_families: tuple[str, ...] = ()  # allowed families; () leaves every family allowed
    capability_bounding_set: tuple[str, ...] | None = None  # None: unchanged; (): none at all
    ambient_capabilities: tuple[str, ...] | None = None
    device_policy: Literal["", "auto", "closed", "strict"] = ""
    device_allow: tuple[tuple[str, str], ...] = ()  # (specifier, "r"|"rw"|"rwm"): "char-nvidia*", "/dev/..."
    read_write_paths: tuple[str, ...] = ()
    read_only_paths: tuple[str, ...] = ()
    inaccessible_paths: tuple[str, ...] = ()  # a "-" prefix: ignored where the path does not exist
    umask: int | None = None

    def __post_init__(self) -> None:
        for caps in (self.capability_bounding_set, self.ambient_capabilities):
            unknown = [c for c in caps or () if c not in CAPABILITIES]
            if unknown:
                raise ValueError(f"unknown capabilities: {', '.join(unknown)}")
        if self.system_call_error_number and self.system_call_error_number not in errno.errorcode:
            raise ValueError(f"system_call_error_number: not an errno: {self.system_call_error_number}")


@dataclass(frozen=True)
class UnitSpec:
    """A transient service to start.

    ExecStartPre=/ExecStopPost= commands are argv tuples as a unit file writes them: a "-" before the
    absolute path of the first word ignores the command's failure ("-/usr/bin/docker", "rm", "-f", NAME).
    Every argument is taken literally (sparkd.host.systemd escapes systemd's "$" expansion).
    """

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
    user: str = ""  # User=: "" is root, unless dynamic_user (then systemd names it after the unit)
    dynamic_user: bool = False  # DynamicUser=: a UID allocated while the unit runs; User= names it
    supplementary_groups: tuple[str, ...] = ()
    sandbox: Sandbox | None = None
    exec_start_pre: tuple[tuple[str, ...], ...] = ()
    exec_stop_post: tuple[tuple[str, ...], ...] = ()
    limit_memlock: str = ""  # LimitMEMLOCK= (soft and hard): "infinity", or bytes with K, M, G, T (1024)
    cache_directory: tuple[str, ...] = ()  # CacheDirectory=: relative to /var/cache, owned by the user
    state_directory: tuple[str, ...] = ()  # StateDirectory=: relative to /var/lib
    # JoinsNamespaceOf=: units whose /tmp (PrivateTmp=) this one shares, e.g. a Ray node and its driver.
    joins_namespace_of: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for command in (*self.exec_start_pre, *self.exec_stop_post):
            exec_command(command)
        if self.limit_memlock:
            rlimit_bytes(self.limit_memlock)
        for directory in (*self.cache_directory, *self.state_directory):
            if directory.startswith("/") or ".." in directory.split("/") or not directory:
                raise ValueError(f"a cache or state directory is relative, without '..'; got {directory!r}")


def exec_command(command: Sequence[str]) -> tuple[str, list[str], bool]:
    """A command line of ExecStartPre=/ExecStopPost= as D-Bus takes it: (path, argv, ignore failure)."""
    if not command:
        raise ValueError("an Exec command needs at least its executable")
    first = command[0]
    ignore = first.startswith("-")
    path = first[1:] if ignore else first
    if not path.startswith("/"):
        raise ValueError(
            f"an Exec command starts with an absolute path, '-' before it to ignore failure; got {first!r}"
        )
    return path, [path, *command[1:]], ignore


_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def rlimit_bytes(text: str) -> int:
    """A LimitMEMLOCK= value in bytes: "infinity" is RLIM_INFINITY; "64M" is 64 MiB (systemd's base 1024)."""
    if text == "infinity":
        return RLIM_INFINITY
    number, suffix = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "")
    if not number.isdecimal() or suffix not in _SUFFIXES:
        raise ValueError(f"a memory limit is 'infinity' or bytes with K, M, G or T; got {text!r}")
    return int(number) * _SUFFIXES[suffix]


def capability_mask(names: Sequence[str]) -> int:
    """The capability set `names` as systemd's bit mask (bit n is CAPABILITIES[n])."""
    return sum(1 << CAPABILITIES.index(name) for name in set(names))


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


#: Sandbox fields whose systemd name is not the field's name in CamelCase.
_NAMES = {
    "restrict_suid_sgid": "RestrictSUIDSGID",
    "remove_ipc": "RemoveIPC",
    "umask": "UMask",
    "system_call_deny": "SystemCallFilter",
}


def _sandbox_settings(sandbox: Sandbox) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for f in fields(sandbox):
        value = getattr(sandbox, f.name)
        key = _NAMES.get(f.name) or "".join(part.capitalize() for part in f.name.split("_"))
        if isinstance(value, bool):
            if f.name != "restrict_namespaces" or value:  # unset RestrictNamespaces= is "no"
                out.append((key, "yes" if value else "no"))
        elif f.name == "device_allow":
            out += [(key, f"{specifier} {access}") for specifier, access in value]
        elif f.name == "system_call_error_number":
            if value:
                out.append((key, errno.errorcode[value]))
        elif f.name == "umask":
            if value is not None:
                out.append((key, f"{value:04o}"))
        elif isinstance(value, tuple):
            prefix = "~" if f.name == "system_call_deny" else ""
            if value or f.name in ("capability_bounding_set", "ambient_capabilities"):  # () is "none"
                out.append((key, prefix + " ".join(value)))
        elif value:
            out.append((key, str(value)))
    return out


def service_settings(spec: UnitSpec) -> list[tuple[str, str]]:
    """The unit's [Service] settings as systemd spells them, but ExecStart= and Environment= (a key may
    repeat: one DeviceAllow= per device, an allow and a deny SystemCallFilter=)."""
    out = [("Type", spec.service_type), ("Restart", spec.restart)]
    if spec.service_type == "notify":
        out.append(("NotifyAccess", "main"))
    if spec.network_namespace_path:
        out.append(("NetworkNamespacePath", spec.network_namespace_path))
    if spec.working_directory:
        out.append(("WorkingDirectory", spec.working_directory))
    if spec.timeout_stop_s:
        out.append(("TimeoutStopSec", f"{spec.timeout_stop_s:g}s"))
    out += [("ExecStartPre", command_line(c)) for c in spec.exec_start_pre]
    out += [("ExecStopPost", command_line(c)) for c in spec.exec_stop_post]
    if spec.user:
        out.append(("User", spec.user))
    if spec.dynamic_user:
        out.append(("DynamicUser", "yes"))
    if spec.supplementary_groups:
        out.append(("SupplementaryGroups", " ".join(spec.supplementary_groups)))
    if spec.limit_memlock:
        out.append(("LimitMEMLOCK", spec.limit_memlock))
    if spec.cache_directory:
        out.append(("CacheDirectory", " ".join(spec.cache_directory)))
    if spec.state_directory:
        out.append(("StateDirectory", " ".join(spec.state_directory)))
    if spec.sandbox is not None:
        out += _sandbox_settings(spec.sandbox)
    return out


def unit_properties(spec: UnitSpec) -> dict[str, str]:
    """The unit's properties besides its command line and environment, as systemd spells them (for plans);
    a setting given more than once (DeviceAllow=, SystemCallFilter=, ExecStartPre=) is joined by "; "."""
    props = {"Description": spec.description}
    for key, value in service_settings(spec):
        props[key] = f"{props[key]}; {value}" if key in props else value
    if spec.joins_namespace_of:
        props["JoinsNamespaceOf"] = " ".join(spec.joins_namespace_of)
    return props


def _quote(word: str, dollar: bool = True) -> str:
    """One word of a unit file's command line (or an Environment= assignment): C escapes, "%%" for a
    specifier's "%", "$$" for a literal "$" where systemd would expand variables; quoted when needed."""
    out = []
    for c in word:
        if c in '\\"':
            out.append("\\" + c)
        elif c == "%":
            out.append("%%")
        elif c == "$" and dollar:
            out.append("$$")
        elif not c.isprintable():
            n = ord(c)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
        else:
            out.append(c)
    text = "".join(out)
    return f'"{text}"' if not word or text != word or any(c in word for c in " ';") else text


def command_line(argv: Sequence[str]) -> str:
    """argv as a unit file's command line (the first word may carry systemd's "-" prefix)."""
    return " ".join(_quote(word) for word in argv)


def _line(value: str) -> str:
    """A plain setting's value: specifiers escaped, one line."""
    return "".join(" " if not c.isprintable() else c for c in value).replace("%", "%%")


def unit_file(spec: UnitSpec) -> str:
    """The unit as a unit file would say it: what StartTransientUnit is given, for `systemd-analyze
    security --offline=true` and `systemd-analyze verify` (and for a person to read)."""
    lines = ["[Unit]", f"Description={_line(spec.description)}"]
    if spec.joins_namespace_of:
        lines.append(f"JoinsNamespaceOf={_line(' '.join(spec.joins_namespace_of))}")
    lines += ["", "[Service]", f"ExecStart={command_line(spec.argv)}"]
    lines += [f"Environment={_quote(f'{k}={v}', dollar=False)}" for k, v in spec.environment.items()]
    for key, value in service_settings(spec):
        keep = key in ("ExecStartPre", "ExecStopPost")  # already quoted
        lines.append(f"{key}={value if keep else _line(value)}")
    return "\n".join(lines) + "\n"
