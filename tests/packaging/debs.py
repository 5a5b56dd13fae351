"""The .deb files the tests install and inspect, built by the real one command (`packaging/build-deb`), once
per test session for each target and revision (the first build also makes build/deb-venv: about a minute)."""

from __future__ import annotations

import atexit
import functools
import runpy
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
BUILD_DEB = ROOT / "packaging/build-deb"


@functools.cache
def _out() -> Path:
    path = Path(tempfile.mkdtemp(prefix="sparkd-debs-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def build(target: str, revision: int = 1) -> Path:
    """packaging/build-deb --target TARGET --revision N, into this session's own directory."""
    out = _out() / f"{target}-{revision}"
    subprocess.run(
        [str(BUILD_DEB), "--target", target, "--revision", str(revision), "--out", str(out)], check=True, timeout=900
    )
    (deb,) = out.glob("sparkd_*.deb")
    return deb


def host_target() -> str | None:
    """The target whose package fits this machine (packaging/targets.py), or None."""
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    system = release.get("ID", "").strip('"') + release.get("VERSION_ID", "").strip('"')
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    name = f"{system}-{arch}"
    return name if name in packaging_module("targets")["TARGETS"] else None


def packaging_module(name: str) -> dict[str, Any]:
    """A program of packaging/ (build_deb, check_deb, targets...), run as a module would be: `packaging` is
    also a PyPI library's name, so packaging/ is never imported as a package."""
    import sys

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        return runpy.run_path(str(ROOT / "packaging" / f"{name}.py"), run_name=f"packaging_{name}")
    finally:
        sys.path.remove(str(ROOT / "packaging"))


def extract(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def control(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    fields: dict[str, str] = {}
    key = ""
    for line in out.splitlines():
        if line[:1].isspace() and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields
