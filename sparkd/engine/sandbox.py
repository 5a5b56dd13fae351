"""As whom a deployment's units run, and the sandbox around them: the policy (pure).

sparkd runs as root (it configures links and starts units); the frameworks never do. `unit_sandbox`
turns `frameworks.user` (and `frameworks.groups`) into a unit's identity and hardening, for a native
rank or for a container rank's docker CLI; `sandbox_units` puts it on a node's units (after the runtime
wrapped them). docs/unit-sandbox.md is the operator's version of this text, with the exposure scores
that `systemd-analyze security` gives (benchmarks/unit_security.py prints them).

Identity:
- `frameworks.user = "dynamic"` (the default): DynamicUser=yes. systemd allocates a UID while the
  deployment runs and frees it after, so no account has to exist and nothing the unit writes outlives
  it except its cache directory. DynamicUser= also forces ProtectSystem=strict, ProtectHome=read-only,
  PrivateTmp, RemoveIPC, NoNewPrivileges and RestrictSUIDSGID. User= names it `sparkd-<deployment>`, so
  the units of one deployment on a node (a Ray node and the vLLM driver beside it) share one UID: they
  talk over sockets in /tmp and /dev/shm that a second UID could not open.
- An account name (or UID) runs every deployment as that account: for files that must stay owned by
  one user across runs (a model cache shared with other tools). Never root: "root", UID 0, "nobody"
  and an account whose UID is 0 are refused by the config (`sparkd.accounts`), and again here.
- `frameworks.groups`: supplementary groups (e.g. one that may read the model directory). Groups that
  are root-equivalent (root, sudo, docker, disk, the admin socket's group ...) are refused.

The cache directory: CacheDirectory=sparkd/<deployment>, HOME and XDG_CACHE_HOME point there (a dynamic
user's HOME is "/"; a named user's home is read-only under ProtectHome). vLLM, Triton, FlashInfer,
torch.compile, the CUDA JIT cache (~/.nv) and Hugging Face downloads write below HOME; they survive a
restart (a warm start compiles nothing). One per deployment: two dynamic UIDs cannot share a directory.

The sandbox of a native rank (vLLM, SGLang, TensorRT-LLM, command), option by option:
- NoNewPrivileges, RestrictSUIDSGID, CapabilityBoundingSet= (empty), AmbientCapabilities= (empty):
  nothing gains a privilege, no setuid helper works. NVIDIA's setuid nvidia-modprobe cannot create
  /dev/nvidia-uvm from inside: the device nodes must exist before the unit starts (DGX OS creates them).
- ProtectSystem=strict, ProtectHome=read-only, PrivateTmp, InaccessiblePaths= sparkd's own files: the
  whole tree is read-only but the cache directory, /dev/shm and a private /tmp; /etc/sparkd,
  /var/lib/sparkd (the node key) and /run/sparkd (the admin socket) are invisible. Models are read
  where they are, so a model under /home must be readable by the unit's user (ProtectHome=read-only,
  not yes, leaves it reachable).
- PrivateDevices=no and DevicePolicy=closed with DeviceAllow=: PrivateDevices would hide the GPU.
  Instead the device cgroup allows the pseudo devices, every NVIDIA device class (`char-nvidia*`:
  /dev/nvidia0, nvidiactl, nvidia-uvm, nvidia-modeset, nvidia-caps), RDMA verbs (`char-infiniband_verbs`:
  /dev/infiniband/uverbs*, NCCL's RoCE transport) and /dev/infiniband/rdma_cm; nothing else (no disks).
- LimitMEMLOCK=infinity: RDMA registers (pins) NCCL's buffers, and on GB10 the GPU's memory is host
  memory: the default limit (8 MiB) fails ibv_reg_mr and NCCL falls back to sockets or stops.
- MemoryDenyWriteExecute=no: CUDA's and Triton's JIT, numba (vLLM's n-gram drafter) and libffi closures
  (ctypes callbacks) map memory writable and executable; with it they fail.
- RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK: NCCL's bootstrap and socket transport,
  Gloo, Ray, ZeroMQ (vLLM's processes) and the API use IP and unix sockets; NCCL, libibverbs and
  getifaddrs(3) read interfaces and RDMA devices over netlink. AF_PACKET and the rest are refused.
- SystemCallFilter=@system-service pidfd_getfd, then ~@privileged, SystemCallErrorNumber=EPERM,
  SystemCallArchitectures=native: what services use; pidfd_getfd added for PyTorch's CUDA IPC with
  expandable segments. A refused call fails with EPERM rather than killing the rank mid-run.
- ProtectKernelTunables, ProtectKernelModules, ProtectKernelLogs, ProtectControlGroups, ProtectClock,
  ProtectHostname, RestrictRealtime, RestrictNamespaces, LockPersonality, PrivateMounts, RemoveIPC,
  UMask=0077, ProtectProc=invisible: none of these is used by the frameworks (/proc/sys and /sys are
  still readable: NCCL reads the topology there). ProcSubset=pid is NOT set: CUDA reads /proc/driver/nvidia
  and the frameworks /proc/meminfo and /proc/cpuinfo.
- Not set, and why: PrivateNetwork (NCCL and the API use the host's interfaces), IPAddressDeny (the
  API serves any client; downloads need the internet), PrivateUsers (a user namespace changes how the
  driver's root-only capability files and the docker socket's group are seen; untested on GB10, and the
  unit has no capability to lose), PrivateIPC (harmless, but Ray and MPI were not tried with it).

A container rank: the unit runs the docker CLI (`docker run` attached); the container is dockerd's
child and gets its GPU, RDMA devices, memlock limit and capabilities from `docker run`'s flags (see
`sparkd.engine.runtimes.container`). So the unit's sandbox confines the CLI only, and it can be tighter:
PrivateDevices=yes (the CLI opens no device), MemoryDenyWriteExecute=yes (Go has no JIT),
RestrictAddressFamilies=AF_UNIX and PrivateNetwork=yes (the CLI talks to /run/docker.sock only, which a
network namespace does not hide; `--network host` is dockerd's network, not the CLI's), ProtectHome=yes,
no LimitMEMLOCK, and SupplementaryGroups=docker, the socket's group. The docker group is root-equivalent
(whoever can talk to dockerd can mount / into a container): a container deployment is non-root only
as far as its image and `docker run`'s flags make it. The same identity choice applies (a dynamic user
works: it needs nothing but the socket).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sparkd import accounts
from sparkd.config import FrameworksConfig
from sparkd.model.unit import Sandbox, UnitSpec

#: The docker socket's group: a container unit's CLI gets it (and only a container unit's).
DOCKER_GROUP = "docker"
#: CacheDirectory= is relative to this (systemd's for system services).
CACHE_ROOT = "/var/cache"
#: sparkd's own configuration, state (the node key) and sockets: hidden from every unit ("-": if present).
HIDDEN_PATHS = ("/etc/sparkd", "/var/lib/sparkd", "/run/sparkd")
_DEPLOYMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_NAME_MAX = 31  # systemd's strict user names (utmp's limit)

#: The device classes a GPU and RDMA rank opens; DevicePolicy=closed adds /dev/null, zero, random, tty...
GPU_RDMA_DEVICES = (
    ("char-nvidia*", "rw"),  # /dev/nvidia0, nvidiactl, nvidia-uvm(-tools), nvidia-modeset, nvidia-caps/*
    ("char-infiniband_verbs", "rw"),  # /dev/infiniband/uverbs*: RDMA verbs (NCCL over RoCE)
    ("/dev/infiniband/rdma_cm", "rw"),  # the RDMA connection manager (UCX, MPI)
)
#: What every unit gets: no privilege, a read-only tree, no kernel knobs (module docstring says why).
_COMMON = Sandbox(
    no_new_privileges=True,
    protect_system="strict",
    private_tmp=True,
    private_mounts=True,
    protect_kernel_tunables=True,
    protect_kernel_modules=True,
    protect_kernel_logs=True,
    protect_control_groups=True,
    protect_clock=True,
    protect_hostname=True,
    restrict_realtime=True,
    restrict_suid_sgid=True,
    lock_personality=True,
    remove_ipc=True,
    restrict_namespaces=True,
    protect_proc="invisible",
    system_call_architectures=("native",),
    system_call_deny=("@privileged",),
    system_call_error_number=errno.EPERM,
    capability_bounding_set=(),
    ambient_capabilities=(),
    umask=0o077,
)
#: A native rank: the GPU and RDMA devices, W+X memory for the JITs, IP, unix and netlink sockets.
NATIVE = dataclasses.replace(
    _COMMON,
    protect_home="read-only",
    private_devices=False,
    device_policy="closed",
    device_allow=GPU_RDMA_DEVICES,
    memory_deny_write_execute=False,
    system_call_filter=("@system-service", "pidfd_getfd"),
    restrict_address_families=("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"),
)
#: A container rank's docker CLI: no device, no W+X, only the docker socket.
CONTAINER_CLI = dataclasses.replace(
    _COMMON,
    protect_home="yes",
    private_devices=True,
    private_network=True,
    memory_deny_write_execute=True,
    system_call_filter=("@system-service",),
    restrict_address_families=("AF_UNIX",),
)


@dataclass(frozen=True)
class SandboxFields:
    """The UnitSpec fields `unit_sandbox` decides (`apply_sandbox` sets them)."""

    user: str  # User=: the account, or the dynamic user's name
    dynamic_user: bool
    supplementary_groups: tuple[str, ...]
    sandbox: Sandbox
    limit_memlock: str  # "infinity" for a native rank (RDMA); "" for a container's CLI
    cache_directory: tuple[str, ...]  # ("sparkd/<deployment>",): below /var/cache
    environment: Mapping[str, str] = field(default_factory=dict)  # HOME, XDG_CACHE_HOME: the cache directory


def dynamic_user_name(deployment: str) -> str:
    """`sparkd-<deployment>`, or for a long name its start and a hash (systemd's user names: 31 at most)."""
    name = f"sparkd-{deployment}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:8]
    return f"{name[: _NAME_MAX - 9]}-{digest}"


def unit_sandbox(
    frameworks: FrameworksConfig,
    deployment: str,
    container: bool,
    hidden_paths: Sequence[str] = HIDDEN_PATHS,
) -> SandboxFields:
    """Identity and sandbox of `deployment`'s units on this node (a container rank's CLI if `container`).

    `hidden_paths`: sparkd's own directories (pass the config's state_dir and socket directory when they
    are not the defaults). ValueError for a user or group the config would have refused (root above all).
    """
    if not _DEPLOYMENT.fullmatch(deployment):
        raise ValueError(f"not a deployment name: {deployment!r}")
    problem = accounts.user_problem(frameworks.user)
    if problem:
        raise ValueError(f"frameworks.user {problem}")
    for group in frameworks.groups:
        problem = accounts.group_problem(group, socket_group="")
        if problem:
            raise ValueError(f"frameworks.groups {problem}")
    dynamic = frameworks.user == accounts.DYNAMIC
    groups = (*frameworks.groups, DOCKER_GROUP) if container else frameworks.groups
    cache = f"sparkd/{deployment}"
    home = f"{CACHE_ROOT}/{cache}"
    base = CONTAINER_CLI if container else NATIVE
    hidden = tuple(p if p.startswith("-") else f"-{p}" for p in hidden_paths)
    return SandboxFields(
        user=dynamic_user_name(deployment) if dynamic else frameworks.user,
        dynamic_user=dynamic,
        supplementary_groups=tuple(dict.fromkeys(groups)),
        sandbox=dataclasses.replace(base, inaccessible_paths=hidden),
        limit_memlock="" if container else "infinity",
        cache_directory=(cache,),
        environment={"HOME": home, "XDG_CACHE_HOME": home},
    )


def apply_sandbox(unit: UnitSpec, fields: SandboxFields, siblings: Sequence[str] = ()) -> UnitSpec:
    """`unit` run as `fields` say; its own environment wins over HOME/XDG_CACHE_HOME. `siblings`: the other
    units of the deployment on this node, whose /tmp it shares (JoinsNamespaceOf=). Apply it after the
    runtime's wrap: a container's environment is forwarded by name, and HOME is the CLI's, not the image's."""
    if fields.user in accounts.REFUSED_USERS:
        raise ValueError(f"a deployment unit never runs as {fields.user!r}")
    return dataclasses.replace(
        unit,
        user=fields.user,
        dynamic_user=fields.dynamic_user,
        supplementary_groups=fields.supplementary_groups,
        sandbox=fields.sandbox,
        limit_memlock=fields.limit_memlock,
        cache_directory=fields.cache_directory,
        environment={**fields.environment, **unit.environment},
        joins_namespace_of=tuple(name for name in siblings if name != unit.name),
    )


def sandbox_units(units: Sequence[UnitSpec], fields: SandboxFields) -> tuple[UnitSpec, ...]:
    """A node's units of one deployment, each sandboxed and sharing /tmp with the others."""
    names = [unit.name for unit in units]
    return tuple(apply_sandbox(unit, fields, names) for unit in units)
