"""The daemon config, `/etc/sparkd/sparkd.toml`: versioned, strict, validated at start-up.

Unknown keys are refused (a typo must not silently fall back to a default). The file
carries `version = 1`; `migrate()` will turn older versions into the current one
(containerd's `MigrateConfigTo`). Command-line flags override the file's `sysroot`.
"""

from __future__ import annotations

import ipaddress
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkd.errors import ConfigError

CURRENT_VERSION = 1
SUBNET_A = ipaddress.IPv4Network("192.168.100.0/24")
SUBNET_B = ipaddress.IPv4Network("192.168.101.0/24")
DEFAULT_PATH = "/etc/sparkd/sparkd.toml"


@dataclass(frozen=True)
class NodeConfig:
    """Who this node is in the cluster."""

    name: str
    role: str  # "head" | "worker"
    index: int  # 0 for the head, 1.. for workers: the host part of its addresses is index + 1


@dataclass(frozen=True)
class InterconnectConfig:
    """The ConnectX-7 link: subnets per twin and MTU."""

    mode: str = "dual"  # "dual": both twins; "single": twin A only
    subnet_a: ipaddress.IPv4Network = SUBNET_A
    subnet_b: ipaddress.IPv4Network = SUBNET_B
    mtu: int = 9000

    def address(self, subnet: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Interface:
        """The address of node `index` on `subnet` (head .1, workers .2, .3, ...)."""
        return ipaddress.IPv4Interface(f"{subnet.network_address + index + 1}/{subnet.prefixlen}")


@dataclass(frozen=True)
class ApiConfig:
    """Local control API sockets."""

    socket: str = "/run/sparkd/sparkd.sock"
    ro_socket: str = "/run/sparkd/sparkd-ro.sock"
    socket_group: str = "sparkd"


@dataclass(frozen=True)
class PeerConfig:
    """The daemon-to-daemon listener and heartbeat."""

    port: int = 7471
    heartbeat_s: float = 2.0
    # A peer not heard from for this long is DISCONNECTED.
    timeout_s: float = 6.0


@dataclass(frozen=True)
class FrameworksConfig:
    """Where the inference frameworks are installed on this node (native runtime)."""

    vllm_venv: str = "/opt/vllm"


@dataclass(frozen=True)
class UnitsConfig:
    """How sparkd starts deployment units."""

    # Set only in the lab: the network namespace every unit joins (NetworkNamespacePath=).
    network_namespace_path: str = ""


@dataclass(frozen=True)
class LabConfig:
    """Lab-only settings (`sparkd lab` writes them); empty in production."""

    # A JSON file of recorded NVML answers, used instead of the NVML library.
    nvml_fixture: str = ""


@dataclass(frozen=True)
class Config:
    """The whole daemon config."""

    node: NodeConfig
    version: int = CURRENT_VERSION
    sysroot: str = "/"
    state_dir: str = "/var/lib/sparkd"
    log_format: str = "auto"  # auto | console | json | journal
    interconnect: InterconnectConfig = field(default_factory=InterconnectConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    peer: PeerConfig = field(default_factory=PeerConfig)
    frameworks: FrameworksConfig = field(default_factory=FrameworksConfig)
    units: UnitsConfig = field(default_factory=UnitsConfig)
    lab: LabConfig = field(default_factory=LabConfig)

    def node_address(self, index: int | None = None) -> ipaddress.IPv4Interface:
        """Twin-A address of node `index` (default: this node)."""
        i = self.node.index if index is None else index
        return self.interconnect.address(self.interconnect.subnet_a, i)


class _Reader:
    """Reads one TOML table, recording which keys were used so the rest can be refused."""

    def __init__(self, path: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.path, self.prefix, self.table = path, prefix, table
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(self.path, self._name(key), f"must be a {kind.__name__}, got {type(value).__name__}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            raise ConfigError(self.path, self._name(key), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def network(self, key: str, default: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        text = self.get(key, str, str(default))
        try:
            return ipaddress.IPv4Network(text)
        except ValueError as e:
            raise ConfigError(self.path, self._name(key), f"must be an IPv4 network like 192.168.100.0/24 ({e})") from e

    def sub(self, key: str) -> _Reader:
        self.used.add(key)
        table = self.table.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(self.path, self._name(key), "must be a table")
        return _Reader(self.path, f"{self.prefix}{key}.", table)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(self.path, self._name(unknown[0]), "unknown key; remove it or check its spelling")


def parse(text: str, path: str = "<config>") -> Config:
    """Parses and validates a config document. Raises ConfigError naming the bad field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(file)", f"not valid TOML: {e}") from e
    root = _Reader(path, "", doc)
    version = root.get("version", int, CURRENT_VERSION)
    if version != CURRENT_VERSION:
        raise ConfigError(path, "version", f"unsupported config version {version}; this sparkd reads {CURRENT_VERSION}")

    n = root.sub("node")
    role = n.choice("role", ("head", "worker"), "head")
    index = n.get("index", int, 0 if role == "head" else 1)
    if role == "head" and index != 0:
        raise ConfigError(path, "node.index", "the head has index 0")
    if role == "worker" and not 1 <= index <= 250:
        raise ConfigError(path, "node.index", "a worker has an index from 1 to 250")
    node = NodeConfig(name=n.get("name", str, socket.gethostname()), role=role, index=index)
    n.finish()

    ic = root.sub("interconnect")
    interconnect = InterconnectConfig(
        mode=ic.choice("mode", ("dual", "single"), "dual"),
        subnet_a=ic.network("subnet_a", SUBNET_A),
        subnet_b=ic.network("subnet_b", SUBNET_B),
        mtu=ic.get("mtu", int, 9000),
    )
    if not 1280 <= interconnect.mtu <= 9216:
        raise ConfigError(path, "interconnect.mtu", "must be between 1280 and 9216 (9000 for jumbo frames)")
    if interconnect.subnet_a.overlaps(interconnect.subnet_b):
        raise ConfigError(path, "interconnect.subnet_b", "must not overlap interconnect.subnet_a")
    ic.finish()

    a = root.sub("api")
    api = ApiConfig(
        socket=a.get("socket", str, ApiConfig.socket),
        ro_socket=a.get("ro_socket", str, ApiConfig.ro_socket),
        socket_group=a.get("socket_group", str, ApiConfig.socket_group),
    )
    a.finish()

    p = root.sub("peer")
    peer = PeerConfig(
        port=p.get("port", int, PeerConfig.port),
        heartbeat_s=p.get("heartbeat_s", float, PeerConfig.heartbeat_s),
        timeout_s=p.get("timeout_s", float, PeerConfig.timeout_s),
    )
    p.finish()

    f = root.sub("frameworks")
    frameworks = FrameworksConfig(vllm_venv=f.get("vllm_venv", str, FrameworksConfig.vllm_venv))
    f.finish()

    u = root.sub("units")
    units = UnitsConfig(network_namespace_path=u.get("network_namespace_path", str, ""))
    u.finish()

    lab_r = root.sub("lab")
    lab = LabConfig(nvml_fixture=lab_r.get("nvml_fixture", str, ""))
    lab_r.finish()

    config = Config(
        version=version,
        node=node,
        sysroot=root.get("sysroot", str, "/"),
        state_dir=root.get("state_dir", str, "/var/lib/sparkd"),
        log_format=root.choice("log_format", ("auto", "console", "json", "journal"), "auto"),
        interconnect=interconnect,
        api=api,
        peer=peer,
        frameworks=frameworks,
        units=units,
        lab=lab,
    )
    root.finish()
    return config


def load(path: str | Path) -> Config:
    """Loads the config file at `path`; a missing file gives the defaults (a head)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise ConfigError(str(p), "(file)", f"cannot read: {e.strerror}") from e
    return parse(text, str(p))
