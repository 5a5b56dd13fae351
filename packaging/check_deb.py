"""Checks built .deb files: `packaging/check-deb build/deb/*.deb` (CI runs it; it prints what it found).

For each package:
- every ELF file is built for the package's architecture (x86-64 or AArch64), and grpcio's own extension
  module is among them: a wheel of the build machine's architecture can never slip into the arm64 package;
- lintian reports no error and no warning (each one that is accepted is an override with its reason, in
  packaging/deb/lintian-overrides; `--show-overrides` prints them);
- `systemd-analyze verify` passes on the unit inside the package (against the package's own tree), and
  `systemd-analyze security` prints the unit's exposure score.
Exits 1 naming each failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from targets import ELF_MACHINES

ARCH_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
ELF_MAGIC = b"\x7fELF"
GRPC_EXTENSION = re.compile(r"site-packages/grpc/_cython/cygrpc\.cpython-\d+-[\w-]+\.so$")


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file (both targets are little-endian), or None for any other file."""
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return None
    return int.from_bytes(head[18:20], "little")


def check_elf(deb: Path, tree: Path) -> list[str]:
    machine = ARCH_MACHINE[field(deb, "Architecture")]
    want = ELF_MACHINES[machine]
    elves = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink() and (m := elf_machine(path)) is not None:
            elves[str(path.relative_to(tree))] = m
    wrong = [f"{p}: e_machine {m}, not {want} ({machine})" for p, m in elves.items() if m != want]
    grpc = [p for p in elves if GRPC_EXTENSION.search(p)]
    right = len(elves) - len(wrong)
    print(f"  ELF: {len(elves)} files, {right} of them {machine}; grpcio's extension: {grpc or 'MISSING'}")
    return wrong + ([] if grpc else ["grpcio's extension module (grpc/_cython/cygrpc*.so) is not in the package"])


def check_lintian(deb: Path) -> list[str]:
    if shutil.which("lintian") is None:
        return ["lintian is not installed (apt-get install lintian)"]
    # The verdict, then the full report: --show-overrides alone makes lintian exit 2 however clean.
    verdict = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True)
    shown = subprocess.run(
        ["lintian", "--display-info", "--show-overrides", "--tag-display-limit", "0", str(deb)],
        capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in shown.stdout.splitlines() if line.strip()]
    counts = {kind: sum(line.startswith(f"{kind}: ") for line in lines) for kind in ("E", "W", "I", "O")}
    print(f"  lintian: {counts['E']} errors, {counts['W']} warnings, {counts['I']} info, {counts['O']} overridden")
    for line in lines:
        print(f"    {line}")
    if verdict.returncode != 0 or counts["E"] or counts["W"]:
        return [f"lintian: {counts['E']} errors, {counts['W']} warnings (exit {verdict.returncode})"]
    return []


def check_unit(tree: Path) -> list[str]:
    """`systemd-analyze verify` of the packaged unit, and its exposure score. The unit is checked against this
    machine's systemd (its targets and D-Bus), where the package's programs are not installed: the one
    complaint that its ExecStart program is missing is accepted only where the package holds that program,
    executable (the install test, tests/e2e/test_deb_install.py, verifies the installed unit in full)."""
    units = [u for u in tree.rglob("sparkd.service") if "systemd/system" in str(u)]
    if len(units) != 1:
        return [f"expected one sparkd.service in the package, found {len(units)}"]
    unit = units[0]
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    problems = []
    for line in verify.stderr.splitlines():
        missing = re.search(r"Command (/\S+) is not executable", line)
        program = tree / missing.group(1).lstrip("/") if missing else None
        if program is not None and program.exists() and os.access(program.resolve(), os.X_OK):
            continue  # in the package, not on this machine
        if line.strip():
            problems.append(line.strip())
    print(f"  systemd-analyze verify: {'clean' if not problems else '; '.join(problems)}")
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True
    )
    score = [line for line in security.stdout.splitlines() if "Overall exposure level" in line]
    print(f"  systemd-analyze security: {score[0].strip('→ ') if score else security.stderr.strip()}")
    return [f"systemd-analyze verify: {line}" for line in problems] + (
        [] if score else ["systemd-analyze security printed no score"]
    )


def check(deb: Path) -> list[str]:
    print(f"== {deb.name} ({field(deb, 'Architecture')}, {field(deb, 'Installed-Size')} KiB installed)")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        return check_elf(deb, tree) + check_lintian(deb) + check_unit(tree)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="packaging/check-deb", description=__doc__.split("\n", 1)[0])
    p.add_argument("debs", nargs="+", type=Path)
    failures = [f"{deb.name}: {problem}" for deb in p.parse_args(argv).debs for problem in check(deb)]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
