"""Collects this node's software versions (`sparkd.model.versions.Versions`) for the peer handshake.

Sources, all through the host protocols (so tests and the lab read a fake sysroot):

- framework packages: the `<name>-<version>.dist-info` directory names of the framework
  environment's `lib/python3.X/site-packages` (also `lib64`, when it is a real directory and not
  the usual `lib64 -> lib` link). Only `FRAMEWORK_PACKAGES` are kept; names are normalised per
  PEP 503. A name that does not split into one name and one version (a legacy install such as
  `tensorrt-llm-1.2.0.dist-info`) is read from its METADATA, only when it may be one we keep.
- the NCCL library: `site-packages/nvidia/nccl/lib/libnccl.so.2`, where the nvidia-nccl-cu12 and
  -cu13 wheels put it (cu13's other CUDA libraries moved to `nvidia/cu13/lib`, NCCL did not:
  rapidsai/cuml #7304), and where torch's preloader and vLLM's pynccl find it. It is hashed
  (SHA-256), since equal version strings can be different binaries (vllm #42354). A unit that
  overrides it (`VLLM_NCCL_SO_PATH`, `LD_LIBRARY_PATH`) is not seen here. Seen on a real uv venv
  (torch 2.11.0, nvidia-nccl-cu13 2.28.9, `lib64 -> lib`): 218 MB, the first collection 0.38 s,
  then 1 ms from the cache.
- driver and CUDA driver versions: NVML, from the state loop's snapshot; the kernel: the snapshot.

- a container image (`image_digest`): the local image's ID from `docker image inspect --format
  '{{.Id}}'`, run through the host's Runner with a timeout; the head compares every node's.

Bounded: at most `MAX_DIST_INFO` dist-info entries per collection, names over `MAX_NAME`
characters skipped, versions cut at `MAX_VERSION` characters and matched against `_VERSION`,
METADATA read up to `METADATA_LIMIT` bytes, the library up to `NCCL_LIMIT`. Never leaves the
sysroot: directories inside the environment are entered only when they are not symlinks, and the
library's symlinks are resolved by `Files.sha256`, which refuses a target outside the sysroot.
"""

from __future__ import annotations

import asyncio
import errno
import re

import structlog

from sparkd import __version__
from sparkd.config import FrameworksConfig
from sparkd.engine.runtimes.container import DOCKER, image_problem
from sparkd.errors import HostOperationFailed
from sparkd.files import NotARegularFile
from sparkd.host.protocols import Files, Runner
from sparkd.model.inventory import GpuInfo
from sparkd.model.observed import Snapshot
from sparkd.model.versions import FRAMEWORK_PACKAGES, Versions, normalize_package

log = structlog.get_logger(__name__)

#: Where the nvidia-nccl wheels put the library, relative to site-packages.
NCCL_LIBRARY = "nvidia/nccl/lib/libnccl.so.2"
MAX_DIST_INFO = 4096
MAX_NAME = 200
MAX_VERSION = 64
MAX_PYTHONS = 8  # python3.X directories looked at per lib directory
NCCL_LIMIT = 1 << 30  # the real library is 200-300 MB
METADATA_LIMIT = 64 * 1024

IMAGE_INSPECT_TIMEOUT_S = 10.0  # a local lookup in dockerd: milliseconds when it answers at all
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_SHOWN = 200  # characters of docker's own words kept in a problem

_PYTHON = re.compile(r"python3\.\d{1,3}")
# PEP 440 versions as they appear in dist-info names and METADATA: "0.11.0", "2.9.0+cu130", "1.3.0rc13",
# "0.11.1.dev12+g1a2b3c.d20251101", "1!2.0". No "/", no spaces, nothing a message or path could trip on.
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]*")


async def collect(frameworks: FrameworksConfig, files: Files, snapshot: Snapshot) -> Versions:
    """This node's versions. The file work (a directory scan and a hash of hundreds of MB the first time)
    runs in a thread, so the event loop never waits on it."""
    driver, cuda = gpu_versions(snapshot.gpus)
    kernel = snapshot.kernel
    return await asyncio.to_thread(collect_sync, frameworks, files, driver, cuda, kernel)


def collect_sync(
    frameworks: FrameworksConfig,
    files: Files,
    driver: str,
    cuda: str,
    kernel: str,
    *,
    max_entries: int = MAX_DIST_INFO,
) -> Versions:
    """`collect` without the thread (blocking)."""
    site = site_packages(files, frameworks.vllm_venv)
    return Versions(
        sparkd=__version__,
        frameworks=scan_packages(files, site, max_entries=max_entries),
        nccl_sha256=nccl_sha256(files, site),
        driver=driver,
        cuda=cuda,
        kernel=kernel,
    )


async def image_digest(
    runner: Runner,
    image: str,
    *,
    node: str = "this node",
    docker: str = DOCKER,
    timeout: float = IMAGE_INSPECT_TIMEOUT_S,
) -> tuple[str, str]:
    """(the local image ID of `image`, "") or ("", why not): `docker image inspect --format {{.Id}}`. The ID
    is the digest of the image's config, equal on every node that pulled the same image for the same
    platform; it never contacts a registry. The problem names `node` and the remedy."""
    problem = image_problem(image)
    if problem:
        return "", f"image {image[:_SHOWN]!r}: {problem}"
    argv = (docker, "image", "inspect", "--format", "{{.Id}}", "--", image)
    try:
        result = await runner.run(argv, timeout)
    except HostOperationFailed as e:
        if "did not finish" in e.message:  # the runner's timeout
            return "", f"docker did not answer on {node} ({_shown(e.message)}): check `systemctl status docker`"
        remedy = "install Docker and the NVIDIA Container Toolkit"
        return "", f"docker is not available on {node} ({_shown(e.message)}): {remedy}"
    err = _shown(result.stderr)
    if result.returncode != 0:
        if "no such image" in err.lower() or "no such object" in err.lower():
            return "", f"image {image} is not on {node}: docker pull {image}"
        if "docker daemon" in err.lower() or "docker.sock" in err.lower():
            return "", f"the Docker daemon on {node} does not answer: {err}"
        return "", f"docker image inspect {image} failed on {node} (exit status {result.returncode}): {err}"
    digest = result.stdout.strip()
    if not _IMAGE_ID.fullmatch(digest):
        return "", f"docker image inspect {image} on {node} answered no image ID: {_shown(result.stdout)!r}"
    return digest, ""


def _shown(text: str) -> str:
    """The first non-empty line of `text`, printable characters only, at most _SHOWN characters."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    return "".join(c for c in line.strip()[:_SHOWN] if c.isprintable())


def gpu_versions(gpus: tuple[GpuInfo, ...]) -> tuple[str, str]:
    """(driver, CUDA driver) version of the first GPU NVML reported; ("", "") when there is none."""
    if not gpus:
        return "", ""
    return _clip(gpus[0].driver_version), _clip(gpus[0].cuda_version)


def site_packages(files: Files, venv: str) -> list[str]:
    """The environment's `lib*/python3.X/site-packages` host paths, never through a symlinked directory
    inside it. The environment's own path is the operator's configuration and may be a link
    (`/opt/vllm -> /opt/vllm-0.11.0`)."""
    if not venv.startswith("/") or ".." in venv.split("/") or "\0" in venv:
        return []
    found = []
    for lib in ("lib", "lib64"):
        lib_path = f"{venv.rstrip('/')}/{lib}"
        if not _real_dir(files, lib_path):
            continue  # absent, or the usual lib64 -> lib link (scanned as lib already)
        pythons = [name for name in files.list_dir(lib_path) if _PYTHON.fullmatch(name)]
        for name in pythons[:MAX_PYTHONS]:
            site = f"{lib_path}/{name}/site-packages"
            if _real_dir(files, f"{lib_path}/{name}") and _real_dir(files, site):
                found.append(site)
    return found


def scan_packages(files: Files, sites: list[str], *, max_entries: int = MAX_DIST_INFO) -> tuple[tuple[str, str], ...]:
    """The allow-listed packages in `sites`, as sorted (name, version) pairs. A package found more than
    once in different versions (a stale install left behind) is reported with them joined by ",", so the
    peer comparison sees it."""
    versions: dict[str, set[str]] = {}
    seen = 0
    for site in sites:
        for entry in files.list_dir(site):
            if not entry.endswith(".dist-info"):
                continue
            seen += 1
            if seen > max_entries:
                log.warning("versions.scan_truncated", site=site, max_entries=max_entries)
                return _pairs(versions)
            if len(entry) > MAX_NAME:
                continue
            found = _dist_info(files, site, entry)
            if found is not None:
                versions.setdefault(found[0], set()).add(found[1])
    return _pairs(versions)


def nccl_sha256(files: Files, sites: list[str]) -> str:
    """The hex SHA-256 of the first `nvidia/nccl/lib/libnccl.so.2` in `sites`; "" when there is none or it
    cannot be read (a symlink out of the sysroot, not a regular file, too large)."""
    for site in sites:
        path = f"{site}/{NCCL_LIBRARY}"
        try:
            digest = files.sha256(path, NCCL_LIMIT)
        except OSError as e:
            log.warning("versions.nccl_unreadable", path=path, error=e.strerror or str(e))
            continue
        if digest is not None:
            return digest
    return ""


def _pairs(versions: dict[str, set[str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, ",".join(sorted(found))) for name, found in versions.items()))


def _dist_info(files: Files, site: str, entry: str) -> tuple[str, str] | None:
    """(normalised name, version) of one `*.dist-info` entry if it is an allow-listed package, else None."""
    stem = entry.removesuffix(".dist-info")
    parts = stem.split("-")
    if len(parts) == 2:  # what wheels write: "-" in names and versions is escaped to "_"
        name = normalize_package(parts[0])
        version = _valid_version(parts[1])
        return (name, version) if name in FRAMEWORK_PACKAGES and version else None
    candidates = {normalize_package("-".join(parts[:i])) for i in range(1, len(parts) + 1)}
    if not candidates & FRAMEWORK_PACKAGES:
        return None  # cannot be one we keep: no need to read anything
    return _metadata(files, f"{site}/{entry}")


def _metadata(files: Files, dist_info: str) -> tuple[str, str] | None:
    """(normalised name, version) from the METADATA headers of an ambiguous dist-info directory."""
    if not _real_dir(files, dist_info):
        return None
    try:
        data = files.read_bounded(f"{dist_info}/METADATA", METADATA_LIMIT)
    except OSError:
        return None
    if data is None:
        return None
    headers: dict[str, str] = {}
    for line in data[:METADATA_LIMIT].decode("utf-8", "replace").splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            headers.setdefault(key, value.strip())
    name = normalize_package(headers.get("Name", ""))
    version = _valid_version(headers.get("Version", ""))
    return (name, version) if name in FRAMEWORK_PACKAGES and version else None


def _valid_version(text: str) -> str:
    """`text` cut at MAX_VERSION characters if it looks like a version, else ""."""
    text = text[:MAX_VERSION]
    return text if _VERSION.fullmatch(text) else ""


def _clip(text: str) -> str:
    """A value from NVML, cut at MAX_VERSION characters, printable characters only."""
    return "".join(c for c in text[:MAX_VERSION] if c.isprintable())


def _real_dir(files: Files, host_path: str) -> bool:
    """Whether `host_path` is a directory and not a symlink to one. `Files.read_bounded` never follows a
    symlink (ELOOP) and refuses a directory as NotARegularFile, which tells the two apart without a stat.
    A FIFO or device also answers NotARegularFile; listing it then finds nothing."""
    try:
        files.read_bounded(host_path, 0)
    except NotARegularFile:
        return True
    except OSError as e:
        if e.errno != errno.ELOOP:
            log.warning("versions.unreadable", path=host_path, error=e.strerror or str(e))
        return False
    return False  # absent, or a regular file
