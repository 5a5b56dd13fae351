"""The daemon config, `/etc/sparkd/sparkd.toml`: versioned, strict, validated at start-up.

Unknown keys are refused (a typo must not silently fall back to a default). The file
carries `version = 1`; `migrate()` will turn older versions into the current one
(containerd's `MigrateConfigTo`). Command-line flags override the file's `sysroot`.

sparkd runs as root and trusts nothing it reads: every value is range-checked (finite,
positive timers; ports; subnets with room for this node; absolute paths; no control
characters; bounded lengths), and a missing or oversized file is an error, not a default.
The typed, bounded reading of each table is `sparkd.config_read.Reader`'s.

Every key is documented, commented out at its default, in packaging/sparkd.toml (the file the package
installs as /etc/sparkd/sparkd.toml); tests/unit/test_conffile.py keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sparkd import accounts
from sparkd.config_host import HostConfig, read_host
from sparkd.config_read import Reader
from sparkd.errors import ConfigError
from sparkd.files import NotARegularFile, read_regular

CURRENT_VERSION = 1
SUBNET_A = ipaddress.IPv4Network("192.168.100.0/24")
SUBNET_B = ipaddress.IPv4Network("192.168.101.0/24")
DEFAULT_PATH = "/etc/sparkd/sparkd.toml"
# The package's pristine copy of the config file it installs (packaging/sparkd.toml in the source).
EXAMPLE = "/usr/share/doc/sparkd/examples/sparkd.toml"
RESTORE = "apt install --reinstall -o Dpkg::Options::=--force-confmiss sparkd"
MAX_FILE_BYTES = 1024 * 1024
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
GROUP_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
HEARTBEAT_MIN_S, HEARTBEAT_MAX_S, TIMEOUT_MAX_S = 0.1, 60.0, 600.0
# Address ranges a cluster interconnect must never use.
_RESERVED = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "unspecified (0.0.0.0/8)"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4, broadcast included)"),
)


@dataclass(frozen=True)
class NodeConfig:
    """Who this node is in the cluster."""

    name: str
    # Optional overrides of what pairing decides (sparkd.engine.membership): "" and None = from pairing.
    role: str = ""  # "head" | "worker" | ""
    index: int | None = None  # 0 for the head, 1.. for workers: the host part of its addresses is index + 1


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
    # Where a deployment's OpenMPI launch agent asks for its planned remote ranks (any local user may
    # connect; sparkd answers only a process of a TensorRT-LLM deployment's mpirun unit, by its cgroup).
    agent_socket: str = "/run/sparkd-agent/agent.sock"


@dataclass(frozen=True)
class PeerConfig:
    """The daemon-to-daemon listener and heartbeat."""

    port: int = 7471
    # Discovery (UDP, IPv6 link-local multicast on the interconnect netdevs) and pairing (TCP, open only
    # while a pairing token is live).
    discovery_port: int = 7472
    pairing_port: int = 7473
    heartbeat_s: float = 0.5
    # A peer not heard from for this long is DISCONNECTED.
    timeout_s: float = 3.0


@dataclass(frozen=True)
class FrameworksConfig:
    """Where the inference frameworks are installed on this node (native runtime), and as whom they run
    (`sparkd.engine.sandbox`, docs/unit-sandbox.md): "dynamic" (DynamicUser=yes) or an account's name or
    UID, never root; `groups` are supplementary groups, never root-equivalent ones."""

    vllm_venv: str = "/opt/vllm"  # vLLM 0.33 (and Ray 2.60 for mode: ray)
    sglang_venv: str = "/opt/sglang"  # SGLang 0.5.23
    trtllm_venv: str = "/opt/trtllm"  # TensorRT-LLM 1.2.1 (mpirun is the distribution's /usr/bin/mpirun)
    launch_agent: str = "/usr/lib/sparkd/sparkd-launch-agent"  # OpenMPI's plm_rsh_agent (no ssh)
    user: str = "dynamic"
    groups: tuple[str, ...] = ()


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
    # A directory of stand-in host tools (dcb, mlnx_qos, modprobe, ufw, hostnamectl) searched before the
    # system's: what a VM cannot run for real. A real path, not under the sysroot.
    tools_dir: str = ""


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
    host: HostConfig = field(default_factory=HostConfig)
    lab: LabConfig = field(default_factory=LabConfig)

    def node_address(self, index: int) -> ipaddress.IPv4Interface:
        """Twin-A address of node `index`."""
        return self.interconnect.address(self.interconnect.subnet_a, index)


def _check_subnet(path: str, name: str, subnet: ipaddress.IPv4Network, index: int) -> None:
    """`subnet` may carry the interconnect and has a usable host address for this node and for one peer."""
    for reserved, what in _RESERVED:
        if subnet.overlaps(reserved):
            raise ConfigError(path, name, f"must not be {what}; use a private subnet such as 192.168.100.0/24")
    # A cluster has at least a head (index 0) and one worker (index 1): both must fit.
    needed = max(index, 1)
    last = int(subnet.network_address) + needed + 1
    if last >= int(subnet.broadcast_address):
        raise ConfigError(
            path,
            name,
            f"{subnet} has no usable host address for node index {needed} (address = network + index + 1, "
            f"never the network or broadcast address); use a larger subnet such as /24",
        )


def read_interconnect(root: Reader, index: int | None) -> InterconnectConfig:
    """The `[interconnect]` table of `root` (the daemon config, or a desired-state file of `host apply -f`)."""
    path = root.path
    ic = root.sub("interconnect")
    interconnect = InterconnectConfig(
        mode=ic.choice("mode", ("dual", "single"), "dual"),
        subnet_a=ic.network("subnet_a", SUBNET_A),
        subnet_b=ic.network("subnet_b", SUBNET_B),
        mtu=ic.get("mtu", int, 9000),
    )
    if not 1280 <= interconnect.mtu <= 9216:
        raise ConfigError(path, "interconnect.mtu", "must be between 1280 and 9216 (9000 for jumbo frames)")
    _check_subnet(path, "interconnect.subnet_a", interconnect.subnet_a, index or 1)
    _check_subnet(path, "interconnect.subnet_b", interconnect.subnet_b, index or 1)
    if interconnect.subnet_a.overlaps(interconnect.subnet_b):
        raise ConfigError(path, "interconnect.subnet_b", "must not overlap interconnect.subnet_a")
    ic.finish()
    return interconnect


def parse(text: str, path: str = "<config>") -> Config:
    """Parses and validates a config document. Raises ConfigError naming the bad field."""
    return _read(text, path)[0]


def accepted_keys() -> list[str]:
    """Every key parse() reads, dotted (`peer.port`), sorted: the keys packaging/sparkd.toml documents."""
    # A node name of its own, so that the answer does not depend on this machine's host name.
    return _read('[node]\nname = "spark1"\n', "<config>")[1].keys()


def _read(text: str, path: str) -> tuple[Config, Reader]:
    """The config, and the reader of its top-level table (which knows every key it read)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(file)", f"not valid TOML: {e}") from e
    root = Reader(path, "", doc)
    version = root.get("version", int, CURRENT_VERSION)
    if version != CURRENT_VERSION:
        raise ConfigError(path, "version", f"unsupported config version {version}; this sparkd reads {CURRENT_VERSION}")

    n = root.sub("node")
    # Optional: pairing fixes the role and index; a config file pins them only for tests and labs.
    role = n.choice("role", ("head", "worker"), "head") if n.has("role") else ""
    index = n.get("index", int, 0 if role == "head" else None)
    if index is not None and not role:
        raise ConfigError(path, "node.index", "is pinned only together with node.role; remove it (pairing sets it)")
    if role == "head" and index != 0:
        raise ConfigError(path, "node.index", "the head has index 0")
    if role == "worker" and index is not None and not 1 <= index <= 250:
        raise ConfigError(path, "node.index", "a worker has an index from 1 to 250")
    name = n.label("name", socket.gethostname(), NAME_RE, "1 to 63 letters, digits, '-' or '_' (like a host name)")
    node = NodeConfig(name=name, role=role, index=index)
    n.finish()

    interconnect = read_interconnect(root, index)
    host = read_host(root)

    a = root.sub("api")
    api = ApiConfig(
        socket=a.path_value("socket", ApiConfig.socket),
        ro_socket=a.path_value("ro_socket", ApiConfig.ro_socket),
        agent_socket=a.path_value("agent_socket", ApiConfig.agent_socket),
        socket_group=a.label(
            "socket_group", ApiConfig.socket_group, GROUP_RE, "a group name: 1 to 32 letters, digits, '-' or '_'"
        ),
    )
    for key in ("socket", "ro_socket", "agent_socket"):
        value = getattr(api, key)
        if not value.startswith("/run/") or posixpath.dirname(value) == "/run":
            raise ConfigError(
                path, f"api.{key}", f"must be in a directory of its own under /run (like /run/sparkd/), got {value!r}"
            )
    if api.socket == api.ro_socket:
        raise ConfigError(path, "api.ro_socket", "must differ from api.socket (the admin socket)")
    if posixpath.dirname(api.agent_socket) in (posixpath.dirname(api.socket), posixpath.dirname(api.ro_socket)):
        raise ConfigError(
            path, "api.agent_socket", "must be in a directory of its own (deployment units cannot see /run/sparkd)"
        )
    a.finish()

    p = root.sub("peer")
    ports = {}
    for key in ("port", "discovery_port", "pairing_port"):
        default = getattr(PeerConfig, key)
        ports[key] = p.get(key, int, default)
        if not 1 <= ports[key] <= 65535:
            raise ConfigError(
                path, f"peer.{key}", f"must be a port from 1 to 65535, got {ports[key]}; the default is {default}"
            )
    names = list(ports)
    for i, key in enumerate(names):
        clash = [other for other in names[:i] if ports[other] == ports[key]]
        if clash:
            raise ConfigError(path, f"peer.{key}", f"must differ from peer.{clash[0]} (both {ports[key]})")
    heartbeat_s = p.seconds("heartbeat_s", PeerConfig.heartbeat_s, HEARTBEAT_MIN_S, HEARTBEAT_MAX_S)
    timeout_s = p.seconds("timeout_s", PeerConfig.timeout_s, HEARTBEAT_MIN_S, TIMEOUT_MAX_S)
    if timeout_s <= heartbeat_s:
        raise ConfigError(
            path,
            "peer.timeout_s",
            f"must be greater than peer.heartbeat_s ({heartbeat_s}), got {timeout_s}; "
            f"use about three heartbeats, e.g. {3 * heartbeat_s:g}",
        )
    peer = PeerConfig(**ports, heartbeat_s=heartbeat_s, timeout_s=timeout_s)
    p.finish()

    f = root.sub("frameworks")
    frameworks = FrameworksConfig(
        vllm_venv=f.path_value("vllm_venv", FrameworksConfig.vllm_venv),
        sglang_venv=f.path_value("sglang_venv", FrameworksConfig.sglang_venv),
        trtllm_venv=f.path_value("trtllm_venv", FrameworksConfig.trtllm_venv),
        launch_agent=f.path_value("launch_agent", FrameworksConfig.launch_agent),
        user=_framework_user(f),
        groups=_framework_groups(f, api.socket_group),
    )
    f.finish()

    u = root.sub("units")
    units = UnitsConfig(network_namespace_path=u.path_value("network_namespace_path", "", optional=True))
    u.finish()

    lab_r = root.sub("lab")
    lab = LabConfig(
        nvml_fixture=lab_r.path_value("nvml_fixture", "", optional=True),
        tools_dir=lab_r.path_value("tools_dir", "", optional=True),
    )
    lab_r.finish()

    config = Config(
        version=version,
        node=node,
        sysroot=root.path_value("sysroot", "/"),
        state_dir=root.path_value("state_dir", "/var/lib/sparkd"),
        log_format=root.choice("log_format", ("auto", "console", "json", "journal"), "auto"),
        interconnect=interconnect,
        host=host,
        api=api,
        peer=peer,
        frameworks=frameworks,
        units=units,
        lab=lab,
    )
    root.finish()
    check_socket_paths(config, path)
    return config, root


def _framework_user(f: Reader) -> str:
    user: str = f.get("user", str, FrameworksConfig.user)
    problem = accounts.user_problem(user)
    if problem:
        raise f.error("user", problem)
    return user


def _framework_groups(f: Reader, socket_group: str) -> tuple[str, ...]:
    groups = f.get("groups", list, [])
    for group in groups:
        problem = accounts.group_problem(group, socket_group)
        if problem:
            raise f.error("groups", problem)
    return tuple(dict.fromkeys(groups))


#: A unix socket's path must fit in sockaddr_un.sun_path (108 bytes with its NUL).
MAX_SOCKET_PATH_BYTES = 107


def check_socket_paths(config: Config, path: str = "<config>") -> None:
    """The sockets' paths under the sysroot fit a unix socket address (also after `--sysroot`)."""
    for key in ("socket", "ro_socket", "agent_socket"):
        full = config.sysroot.rstrip("/") + getattr(config.api, key)
        if len(full.encode()) > MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                path, f"api.{key}", f"{full!r} is longer than {MAX_SOCKET_PATH_BYTES} bytes, too long for a unix socket"
            )


def load(path: str | Path) -> Config:
    """Loads and validates the config file at `path`.

    A missing file is an error (a node must be told whether it is the head or a worker, and
    which index it has), and so is anything but a regular file of at most 1 MiB of UTF-8.
    """
    p = str(path)
    try:
        data, _ = read_regular(Path(p), MAX_FILE_BYTES)
    except FileNotFoundError as e:
        raise ConfigError(
            p,
            "(file)",
            f"config file not found; restore the packaged one with `{RESTORE}`, or copy {EXAMPLE} "
            "(packaging/sparkd.toml in a source tree) to it, or pass --config PATH",
        ) from e
    except NotARegularFile as e:
        raise ConfigError(p, "(file)", "not a regular file; pass --config PATH to a TOML file") from e
    except OSError as e:
        raise ConfigError(p, "(file)", f"cannot read: {e.strerror}; check the path and its permissions") from e
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(p, "(file)", f"larger than {MAX_FILE_BYTES} bytes; this is not a sparkd config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(p, "(file)", f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    config = parse(text, p)
    accounts.check_accounts(config.frameworks.user, config.frameworks.groups, p)
    return config
