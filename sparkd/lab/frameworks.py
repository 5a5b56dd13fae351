"""Makes a lab framework environment look installed, as far as `sparkd.engine.versions` reads it.

sparkd reads package versions from the `<name>-<version>.dist-info` directory names in
`<venv>/lib/python3.X/site-packages` and hashes `nvidia/nccl/lib/libnccl.so.2` there (the
nvidia-nccl wheel layout). The lab has neither a real vLLM nor a real NCCL, so this writes empty
dist-info directories and a small stand-in file with the library's name. sparkd reads the
environment through the node's sysroot: pass the directory under that sysroot, e.g.
`sysroot(node) / "var/lib/sparkd-lab/frameworks/vllm"` for `vllm_venv = "/var/lib/sparkd-lab/frameworks/vllm"`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: Versions a lab node reports by default (framework-facts.md's current vLLM and Ray; NCCL as recorded on Sparks).
LAB_FRAMEWORK_VERSIONS = {"vllm": "0.33.0", "torch": "2.13.0", "ray": "2.60.0", "nvidia-nccl-cu13": "2.28.9"}
#: The versions of the SGLang and TensorRT-LLM lab environments (framework-facts.md's current releases).
LAB_SGLANG_VERSIONS = {"sglang": "0.5.23", "torch": "2.13.0", "nvidia-nccl-cu13": "2.28.9"}
LAB_TRTLLM_VERSIONS = {"tensorrt-llm": "1.2.1", "torch": "2.13.0", "nvidia-nccl-cu13": "2.28.9"}
#: Each lab framework environment (a directory under LAB_DIR/frameworks) and its packages.
LAB_FRAMEWORK_VENVS = {"vllm": LAB_FRAMEWORK_VERSIONS, "sglang": LAB_SGLANG_VERSIONS, "trtllm": LAB_TRTLLM_VERSIONS}
#: The stand-in's bytes: the same on every lab node, so the nodes agree on the NCCL hash.
NCCL_STAND_IN = b"sparkd lab stand-in for libnccl.so.2 (not a real NCCL library)\n"
PYTHON = "python3.12"

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!]{0,63}")


def write_lab_framework_versions(venv: Path, versions: dict[str, str], *, nccl: bytes = NCCL_STAND_IN) -> None:
    """Creates `<venv>/lib/python3.12/site-packages/<name>-<version>.dist-info/` (empty) for each package,
    removing another version's dist-info of the same package, and the NCCL stand-in. Idempotent. Pass a
    different `nccl` on one node to make the nodes disagree on purpose. ValueError for a name or version
    that a wheel could not have."""
    site = venv / "lib" / PYTHON / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    for name, version in sorted(versions.items()):
        if not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
            raise ValueError(f"not a package name and version a wheel could have: {name!r} {version!r}")
        escaped = re.sub(r"[-_.]+", "_", name).lower()  # the wheel spec's escaping of the name
        wanted = site / f"{escaped}-{version}.dist-info"
        for old in site.glob(f"{escaped}-*.dist-info"):
            if old != wanted and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
        wanted.mkdir(exist_ok=True)
    library = site / "nvidia/nccl/lib/libnccl.so.2"
    library.parent.mkdir(parents=True, exist_ok=True)
    # A lab stand-in: a few bytes named like the library, so the hash is compared as on real nodes.
    if not library.exists() or library.read_bytes() != nccl:
        library.write_bytes(nccl)


def write_lab_framework_venvs(root: Path, frameworks_dir: str) -> None:
    """Makes every lab framework environment (`LAB_FRAMEWORK_VENVS`) look installed under the sysroot `root`:
    `<root>/<frameworks_dir>/{vllm,sglang,trtllm}`, where `frameworks_dir` is a host path such as
    `/var/lib/sparkd-lab/frameworks` (its stand-in wrappers' `bin/` beside them)."""
    for name, versions in LAB_FRAMEWORK_VENVS.items():
        write_lab_framework_versions(root / frameworks_dir.lstrip("/") / name, versions)
