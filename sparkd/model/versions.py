"""A node's software versions, and the consistency report between two nodes.

Before a deployment spans two nodes they compare what they run (DESIGN.md, "Consistency before
start"): the NCCL library by its bytes, not its version string (vllm #42354: a pip NCCL and DGX
OS's NCCL both said 2.28.9 and were different binaries), framework packages, the CUDA driver,
the NVIDIA driver, the kernel and sparkd itself. `compare` names the side that differs and says
what to do. Pure: `sparkd.engine.versions` collects a `Versions`, the peer layer carries it.

What blocks a deployment (`Difference.blocking`):

- `frameworks.<package>`: an allow-listed package installed on both nodes in different versions.
  Local labels count ("2.9.0+cu130" is not "2.9.0": a different build).
- `frameworks.<engine>`: an engine package (vllm, sglang, tensorrt-llm) installed on one node only.
- `nccl_sha256`: the NCCL libraries' SHA-256 differ.
- `cuda`: the CUDA driver versions' major.minor differ ("13.0" vs "12.9").
- `driver`: the NVIDIA driver branches differ (the first component: 580 vs 575).
- `sparkd`: the release series differ: major.minor from 1.0 on; below 1.0 semver promises nothing
  across minors, so 0.1 and 0.2 are different series, and for 0.0.x every patch is its own.

What only warns: the kernel release, the driver's minor/patch level (580.95.05 vs 580.82.07), CUDA
beyond major.minor, sparkd patch releases, a non-engine package (torch, ray, ...) on one node only.
An empty value means "unknown" (NVML unavailable, no NCCL library found): it is never a mismatch by
itself; it is reported as a warning "unknown on X" so nobody mistakes "not compared" for "equal".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The inference engines: one of them missing on a node means that node cannot take part.
ENGINE_PACKAGES = frozenset({"vllm", "sglang", "tensorrt-llm"})
#: The packages a node reports (PEP 503 normalised names); anything else is not collected.
FRAMEWORK_PACKAGES = ENGINE_PACKAGES | frozenset(
    {"torch", "ray", "nvidia-nccl-cu12", "nvidia-nccl-cu13", "flashinfer-python", "transformers"}
)
#: The longest value a message shows (a version; a SHA-256 in hex is 64 characters).
SHOWN = 64

_SEPARATORS = re.compile(r"[-_.]+")
_RELEASE = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def normalize_package(name: str) -> str:
    """The PEP 503 name: lowercase, runs of "-", "_" and "." as one "-" ("TensorRT_LLM" -> "tensorrt-llm")."""
    return _SEPARATORS.sub("-", name).lower()


@dataclass(frozen=True)
class Versions:
    """What one node runs. "" is unknown (or, for `nccl_sha256`, no library found)."""

    sparkd: str
    # (package, version) pairs, PEP 503 names, sorted; only FRAMEWORK_PACKAGES.
    frameworks: tuple[tuple[str, str], ...] = ()
    nccl_sha256: str = ""  # hex SHA-256 of libnccl.so.2 in the framework environment
    driver: str = ""  # NVIDIA driver version from NVML, "580.95.05"
    cuda: str = ""  # CUDA driver version from NVML, "13.0"
    kernel: str = ""  # uname release, "6.11.0-1016-nvidia"

    def __post_init__(self) -> None:
        object.__setattr__(self, "frameworks", tuple(sorted(self.frameworks)))

    def packages(self) -> dict[str, str]:
        """Package -> version by normalised name. A package listed twice (a stale second install, or a
        remote that sent it twice) maps to its distinct versions joined by ",", so it never compares equal
        to a clean single install by accident."""
        seen: dict[str, set[str]] = {}
        for name, version in self.frameworks:
            seen.setdefault(normalize_package(name), set()).add(version)
        return {name: ",".join(sorted(versions)) for name, versions in seen.items()}


@dataclass(frozen=True)
class Difference:
    """One way two nodes differ. `local`/`remote` are the raw values ("" = unknown or not installed)."""

    field: str  # "sparkd", "frameworks.vllm", "nccl_sha256", "cuda", "driver", "kernel"
    local: str
    remote: str
    blocking: bool  # True: a deployment across these nodes is refused
    message: str  # what differs, naming the sides: "vllm is 0.11.0 on spark1 but 0.10.2 on spark2"
    advice: str  # one sentence: what to do


def blocking(differences: list[Difference]) -> list[Difference]:
    """The differences that refuse a deployment."""
    return [d for d in differences if d.blocking]


def compare(local: Versions, remote: Versions, local_name: str, remote_name: str) -> list[Difference]:
    """Every difference between the two nodes, in a fixed order: sparkd, frameworks (by name), NCCL,
    CUDA, driver, kernel. Empty when they agree on everything both know."""
    r = _Report(_show(local_name), _show(remote_name))
    r.sparkd(local.sparkd, remote.sparkd)
    ours, theirs = local.packages(), remote.packages()
    for package in sorted(ours.keys() | theirs.keys()):
        r.package(package, ours.get(package, ""), theirs.get(package, ""))
    r.nccl(local.nccl_sha256, remote.nccl_sha256)
    r.cuda(local.cuda, remote.cuda)
    r.driver(local.driver, remote.driver)
    r.kernel(local.kernel, remote.kernel)
    return r.out


def _show(value: str) -> str:
    """`value` fit for a message: at most SHOWN characters, control characters as "?"."""
    text = "".join(c if c.isprintable() else "?" for c in value[:SHOWN])
    return text + ("..." if len(value) > SHOWN else "")


def _release(version: str) -> tuple[int, int, int] | None:
    """The leading numbers of a version, padded to three ("0.1.0.dev3+g1234" -> (0, 1, 0), "13" -> (13, 0, 0)),
    or None when it does not start with a number."""
    m = _RELEASE.match(version)
    if m is None:
        return None
    major, minor, patch = (int(part or 0) for part in m.groups())
    return major, minor, patch


class _Report:
    """Collects differences; one method per field."""

    def __init__(self, local_name: str, remote_name: str) -> None:
        self.a, self.b = local_name, remote_name
        self.out: list[Difference] = []

    def add(self, field: str, local: str, remote: str, block: bool, message: str, advice: str) -> None:
        self.out.append(Difference(field, local, remote, block, message, advice))

    def pair(self, local: str, remote: str) -> str:
        return f"{_show(local)} on {self.a} but {_show(remote)} on {self.b}"

    def older(self, local: str, remote: str) -> tuple[str, str] | None:
        """(the node with the lower version, the higher version), or None when they cannot be ordered."""
        lo, hi = _release(local), _release(remote)
        if lo is None or hi is None or lo == hi:
            return None
        return (self.b, _show(local)) if hi < lo else (self.a, _show(remote))

    def upgrade(self, local: str, remote: str, what: str) -> str:
        """ "sparkd on spark2 to 0.2.0": which node to bring to which version (both nodes when unordered)."""
        older = self.older(local, remote)
        if older is None:
            return f"{what} on {self.a} and {self.b} to one version"
        return f"{what} on {older[0]} to {older[1]}"

    def unknown(self, field: str, what: str, local: str, remote: str, check: str) -> bool:
        """Reports an unknown side (never blocking); True when there was one, so nothing else is compared."""
        if local and remote:
            return False
        if not local and not remote:
            message = f"{what} is unknown on both {self.a} and {self.b}"
            advice = f"{check} on both nodes; it is not compared until it is known."
        else:
            side, other, known = (self.a, self.b, remote) if not local else (self.b, self.a, local)
            message = f"{what} is unknown on {side} ({_show(known)} on {other})"
            advice = f"{check} on {side}; it is not compared until it is known."
        self.add(field, local, remote, False, message, advice)
        return True

    def sparkd(self, local: str, remote: str) -> None:
        if self.unknown("sparkd", "sparkd's version", local, remote, "Check sparkd --version") or local == remote:
            return
        lo, hi = _release(local), _release(remote)
        block = lo is None or hi is None or _series(lo) != _series(hi)
        upgrade = self.upgrade(local, remote, "sparkd")
        if block:
            advice = f"Upgrade {upgrade} (one release series on every node), then retry."
        else:
            advice = f"Upgrade {upgrade} when convenient; patch releases interoperate."
        self.add("sparkd", local, remote, block, f"sparkd is {self.pair(local, remote)}", advice)

    def package(self, name: str, local: str, remote: str) -> None:
        field, shown = f"frameworks.{name}", _show(name)
        if local == remote:
            return
        if local and remote:
            if "," in local + remote:
                advice = f"Remove the stale extra {shown} installs and install one {shown} version on both nodes."
            else:
                advice = (
                    f"Install one {shown} version in both nodes' framework environments "
                    f"({shown}=={_show(local)} on {self.b}, or {shown}=={_show(remote)} on {self.a}), then retry."
                )
            self.add(field, local, remote, True, f"{shown} is {self.pair(local, remote)}", advice)
            return
        side, other, version = (self.a, self.b, remote) if not local else (self.b, self.a, local)
        block = name in ENGINE_PACKAGES
        message = f"{shown} {_show(version)} is installed on {other} but not on {side}"
        if block:
            advice = (
                f"Install {shown} {_show(version)} in {side}'s framework environment, "
                "or deploy a framework both nodes have."
            )
        else:
            advice = f"Install {shown} {_show(version)} on {side} too if the deployment needs it."
        self.add(field, local, remote, block, message, advice)

    def nccl(self, local: str, remote: str) -> None:
        check = "Check that the framework environment has nvidia/nccl/lib/libnccl.so.2"
        if self.unknown("nccl_sha256", "the NCCL library", local, remote, check) or local == remote:
            return
        message = (
            f"the NCCL library differs: sha256 {_show(local)[:12]} on {self.a} but {_show(remote)[:12]} on {self.b}"
        )
        advice = (
            "Install the same NCCL binary on both nodes (the same nvidia-nccl wheel, or the same system libnccl); "
            "equal version strings are not enough, the bytes must match."
        )
        self.add("nccl_sha256", local, remote, True, message, advice)

    def cuda(self, local: str, remote: str) -> None:
        check = "Check the NVIDIA driver with nvidia-smi (NVML reports the CUDA driver version)"
        if self.unknown("cuda", "the CUDA driver version", local, remote, check) or local == remote:
            return
        lo, hi = _release(local), _release(remote)
        block = lo is None or hi is None or lo[:2] != hi[:2]
        upgrade = self.upgrade(local, remote, "the CUDA driver version")
        if block:
            advice = f"Install one NVIDIA driver branch on both nodes (bring {upgrade}), then reboot and retry."
        else:
            advice = f"Bring {upgrade} when convenient."
        self.add("cuda", local, remote, block, f"the CUDA driver version is {self.pair(local, remote)}", advice)

    def driver(self, local: str, remote: str) -> None:
        check = "Check the NVIDIA driver with nvidia-smi (NVML did not answer)"
        if self.unknown("driver", "the NVIDIA driver", local, remote, check) or local == remote:
            return
        lo, hi = _release(local), _release(remote)
        block = lo is None or hi is None or lo[0] != hi[0]
        upgrade = self.upgrade(local, remote, "the NVIDIA driver")
        if block:
            advice = f"Install one NVIDIA driver branch on both nodes (update {upgrade}), then reboot and retry."
        else:
            advice = f"Update {upgrade} when convenient; patch levels interoperate."
        self.add("driver", local, remote, block, f"the NVIDIA driver is {self.pair(local, remote)}", advice)

    def kernel(self, local: str, remote: str) -> None:
        if self.unknown("kernel", "the kernel release", local, remote, "Check uname -r") or local == remote:
            return
        advice = "Boot both nodes into the same kernel when convenient: RDMA and memory (CMA) behaviour can differ."
        self.add("kernel", local, remote, False, f"the kernel is {self.pair(local, remote)}", advice)


def _series(release: tuple[int, int, int]) -> tuple[int, ...]:
    """The components that must agree: major.minor; (0, minor) below 1.0; (0, 0, patch) for 0.0.x."""
    return release[:2] if release[0] or release[1] else release
