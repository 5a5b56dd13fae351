"""The container runtime: a rank runs in a Docker image, started by `docker run` as the unit's main process.

The unit's main process is the docker CLI, attached (no `-d`): the rank's output reaches the unit's
journal through it, and it proxies the signals systemd sends (SIGTERM on stop) to the container, then
exits with the container's status. The container itself is a child of dockerd, not of the unit's
cgroup, so systemd cannot kill it: `ExecStartPre=-/usr/bin/docker rm --force NAME` removes a leftover
of an earlier run (dockerd killed, the node rebooted) and the same `ExecStopPost=` makes sure the
container never outlives its unit (the CLI killed after TimeoutStopSec, or crashed).

Environment values never appear in the argv (so not in `ps` nor in a plan's argv): the unit's
environment is the CLI's, and `-e NAME` without a value makes docker copy NAME from it.

Why each flag is there, and why `--privileged` and `--ipc=host` are not: docs/container-runtime.md.
All pure: validation here (`image_problem`, `mount_problem`, `env_problem`) is what spec validation
calls; the local image's ID is read by `sparkd.engine.versions.image_digest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sparkd.model.unit import UnitSpec

DOCKER = "/usr/bin/docker"
#: systemd's own stop timeout (DefaultTimeoutStopSec), used when a unit does not set one.
SYSTEMD_STOP_TIMEOUT_S = 90
#: NGC images ask for a 64 MiB stack (their start banner: `--ulimit stack=67108864`).
STACK_BYTES = 64 * 1024 * 1024

# Image references, after distribution/reference's grammar, narrowed: [registry[:port]/]path[:tag][@sha256:hex],
# or a local image ID (sha256:hex). Path components are lowercase; a registry is a hostname (a dot, a port or
# "localhost" tells it from a path component; either reading is valid here). No IPv6 registries.
MAX_IMAGE = 512
MAX_NAME = 255  # distribution/reference's NameTotalLengthMax: registry and path together
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_REGISTRY = rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REFERENCE_CHARS = re.compile(r"[A-Za-z0-9._:/@-]+")

# Docker's container names (daemon/names: [a-zA-Z0-9][a-zA-Z0-9_.-]+); kept short enough to read.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}")
# Environment names that `-e NAME` can carry: POSIX names ("=" would turn `-e NAME` into `-e NAME=value`).
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: The CLI's own environment: forwarding it would point the CLI at another daemon or config (DOCKER_*).
CLI_ENV_PREFIXES = ("DOCKER_",)
#: Variables the unit's environment has for the CLI that the image sets for itself: not forwarded.
NOT_FORWARDED = ("PATH",)
# Container paths a read-only bind mount may not cover: the container's own kernel interfaces.
_MOUNT_FORBIDDEN = ("/proc", "/sys", "/dev")
_SHM = re.compile(r"[1-9][0-9]{0,5}[kmg]?")


def image_problem(ref: str) -> str | None:
    """Why `ref` is not an image reference sparkd runs, or None: `[registry[:port]/]path:tag`, with
    `@sha256:<64 hex>` after the tag or instead of it, or a local image ID `sha256:<64 hex>`. A tag or a
    digest is required (no implicit `latest`); nothing that could be read as an option or expanded."""
    if not isinstance(ref, str) or not ref:
        return "required: an image reference such as nvcr.io/nvidia/vllm:26.05-py3"
    if len(ref) > MAX_IMAGE:
        return f"must be at most {MAX_IMAGE} characters; got {len(ref)}"
    if ref.startswith("-"):
        return f"must not start with '-' (docker would read it as an option); got {ref[:80]!r}"
    if not _REFERENCE_CHARS.fullmatch(ref):
        bad = sorted({c for c in ref if not _REFERENCE_CHARS.fullmatch(c)})
        return f"may contain only letters, digits and . _ - : / @; got {''.join(bad)!r} in {ref[:80]!r}"
    if ref.startswith("sha256:"):
        return None if _DIGEST.fullmatch(ref) else f"an image ID is sha256: and 64 lowercase hex digits; got {ref!r}"
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"the digest after '@' must be sha256: and 64 lowercase hex digits; got {digest[:80]!r}"
    # A tag is what follows the last ':' when no '/' comes after it (a registry's port is followed by one).
    colon = name.rfind(":")
    path, tag = (name[:colon], name[colon + 1 :]) if colon > name.rfind("/") else (name, "")
    if colon > name.rfind("/") and not _TAG.fullmatch(tag):
        return f"the tag must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'; got {tag!r}"
    if not tag and not at:
        return f"needs a tag or a digest (:TAG or @sha256:...), so that every node runs the same image; got {ref!r}"
    if len(path) > MAX_NAME:
        return f"the name before the tag must be at most {MAX_NAME} characters; got {len(path)}"
    if not _NAME.fullmatch(path):
        return (
            f"{path!r} is not an image name: [registry[:port]/]path, path components of lowercase letters "
            "and digits joined by '.', '_', '__' or '-'"
        )
    return None


def mount_problem(path: str) -> str | None:
    """Why host directory `path` cannot be mounted read-only at the same path in a container, or None."""
    if not path.startswith("/"):
        return f"must be an absolute path; got {path[:200]!r}"
    if posixpath.normpath(path) != path or path.startswith("//"):
        return f"must be a normalised path (no '.', '..', '//' or trailing '/'); got {path[:200]!r}"
    if any(c in path for c in ',"') or not path.isprintable():
        return f"must not contain ',', '\"' or control characters (docker's --mount syntax); got {path[:200]!r}"
    if path == "/" or any(path == d or path.startswith(d + "/") for d in _MOUNT_FORBIDDEN):
        return f"cannot be mounted over the container's / , /proc, /sys or /dev; got {path[:200]!r}"
    return None


def env_problem(name: str) -> str | None:
    """Why environment variable `name` cannot be handed to a container by name (`-e NAME`), or None."""
    if not _ENV_NAME.fullmatch(name):
        return f"must be 1-128 letters, digits or '_', not starting with a digit; got {name[:80]!r}"
    if name.startswith(CLI_ENV_PREFIXES):
        return f"{name} is the docker CLI's own setting (it would change the daemon or config the CLI uses)"
    return None


def container_name(unit_name: str) -> str:
    """The container of unit `unit_name`: its name without `.service` when that is a valid docker name
    (`sparkd-demo-rank0.service` -> `sparkd-demo-rank0`), else a sanitised form with a hash of the unit
    name, so that two units never share a container."""
    stem = unit_name.removesuffix(".service")
    if _CONTAINER_NAME.fullmatch(stem):
        return stem
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "_", stem).lstrip("_.-")[:100] or "sparkd"
    return f"{safe}-{hashlib.sha256(unit_name.encode()).hexdigest()[:12]}"


def stop_timeout(unit: UnitSpec) -> int:
    """Seconds docker waits after SIGTERM before SIGKILL (`docker stop`, dockerd's shutdown): the unit's
    own TimeoutStopSec, so that the container gets the same time however it is stopped."""
    return math.ceil(unit.timeout_stop_s) if unit.timeout_stop_s > 0 else SYSTEMD_STOP_TIMEOUT_S


@dataclass(frozen=True)
class ContainerRuntime:
    """Runs a rank's argv in `image` with `docker run` (module docstring; docs/container-runtime.md).

    `cdi` selects the GPU by CDI (`--device nvidia.com/gpu=all`, the NVIDIA Container Toolkit's spec in
    /etc/cdi or /var/run/cdi) instead of `--gpus all` (the toolkit's runtime hook, what DGX OS sets up).
    `rdma` passes /dev/infiniband (RDMA verbs over RoCE for NCCL); off only for a node without it.
    """

    image: str
    docker: str = DOCKER
    shm_size: str = "16g"
    cdi: bool = False
    rdma: bool = True
    kind: str = "container"

    def __post_init__(self) -> None:
        problem = image_problem(self.image)
        if problem:
            raise ValueError(f"image: {problem}")
        if not self.docker.startswith("/") or posixpath.normpath(self.docker) != self.docker:
            raise ValueError(f"docker: must be an absolute, normalised path; got {self.docker!r}")
        if not _SHM.fullmatch(self.shm_size):
            raise ValueError(f"shm_size: must be a size such as 16g (digits and k, m or g); got {self.shm_size!r}")

    def executable(self, name: str) -> str:
        """The bare name: the image's PATH finds it (`vllm`, `ray`, `mpirun`, `trtllm-llmapi-launch`)."""
        return name

    def wrap(self, unit: UnitSpec, mounts: Sequence[str]) -> UnitSpec:
        """`unit` run in the image: the argv as `docker run ... IMAGE ARGV`, the environment passed by name,
        each of `mounts` bound read-only at the same path, the working directory inside the container.
        ValueError for a mount or an environment name that cannot be passed (spec validation refuses them
        first: `mount_problem`, `env_problem`)."""
        name = container_name(unit.name)
        for path in mounts:
            problem = mount_problem(path)
            if problem:
                raise ValueError(f"mount {path[:200]!r}: {problem}")
        forwarded = sorted(n for n in unit.environment if n not in NOT_FORWARDED)
        for env_name in forwarded:
            problem = env_problem(env_name)
            if problem:
                raise ValueError(f"environment {env_name[:80]!r}: {problem}")
        workdir = unit.working_directory
        if workdir and (not workdir.startswith("/") or posixpath.normpath(workdir) != workdir):
            raise ValueError(f"working directory: must be an absolute, normalised path; got {workdir[:200]!r}")
        argv = [self.docker, "run", *self.run_options(name, unit)]
        for path in dict.fromkeys(mounts):  # each once, in the launcher's order
            argv += ["--mount", f"type=bind,source={path},target={path},readonly"]
        for env_name in forwarded:
            argv += ["-e", env_name]
        if workdir:
            argv += ["--workdir", workdir]
        argv += [self.image, *unit.argv]
        remove = (f"-{self.docker}", "rm", "--force", name)  # "-": nothing to remove is no failure
        return dataclasses.replace(
            unit,
            argv=tuple(argv),
            working_directory="",  # the directory is the container's; the CLI needs none on the host
            exec_start_pre=(remove, *unit.exec_start_pre),  # the unit's own steps stay (on the host)
            exec_stop_post=(*unit.exec_stop_post, remove),
        )

    def run_options(self, name: str, unit: UnitSpec) -> list[str]:
        """The options of `docker run` before the mounts and the environment."""
        gpus = ["--device", "nvidia.com/gpu=all"] if self.cdi else ["--gpus", "all"]
        rdma = ["--device", "/dev/infiniband"] if self.rdma else []
        return [
            "--rm",
            "--name",
            name,
            "--pull",
            "never",
            "--init",
            "--stop-timeout",
            str(stop_timeout(unit)),
            "--log-driver",
            "none",
            "--network",
            "host",
            "--shm-size",
            self.shm_size,
            "--ulimit",
            "memlock=-1:-1",
            "--ulimit",
            f"stack={STACK_BYTES}",
            *gpus,
            *rdma,
            "--cap-drop",
            "ALL",  # on the host's network: no NET_RAW (sniffing or spoofing the LAN and the cable) and the rest
            "--cap-add",
            "IPC_LOCK",
            "--security-opt",
            "no-new-privileges",
        ]
