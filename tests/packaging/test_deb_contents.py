"""What the built .deb holds, read from the real packages (`packaging/build-deb`; tests/packaging/debs.py):
the arm64 package for DGX OS holds only AArch64 binaries, grpcio's own among them; each package installs the
programs, the unit, the conffile, the group, the man pages and the completions where an operator looks for
them, and depends on its system's Python. Installing them is tests/e2e/test_deb_install.py's work."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.packaging import debs

ROOT = Path(__file__).parents[2]
TARGETS = debs.packaging_module("targets")["TARGETS"]
CHECK = debs.packaging_module("check_deb")


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return debs.extract(debs.build("ubuntu24.04-arm64"), tmp_path_factory.mktemp("arm64"))


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return debs.extract(debs.build("debian12-amd64"), tmp_path_factory.mktemp("debian12"))


def elves(tree: Path) -> dict[str, int]:
    return {
        str(p.relative_to(tree)): m
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and (m := CHECK["elf_machine"](p)) is not None
    }


def test_the_arm64_package_holds_only_arm64_binaries_grpcios_among_them(arm64: Path) -> None:
    found = elves(arm64)
    print(f"\narm64 package: {len(found)} ELF files: {sorted(found)}")
    assert found, "no ELF file at all: the bundled wheels are missing"
    assert {m for m in found.values()} == {183}, {p: m for p, m in found.items() if m != 183}  # EM_AARCH64
    grpc = [p for p in found if p.endswith("grpc/_cython/cygrpc.cpython-312-aarch64-linux-gnu.so")]
    assert grpc == [
        f"{TARGETS['ubuntu24.04-arm64'].site_packages()}/grpc/_cython/cygrpc.cpython-312-aarch64-linux-gnu.so"
    ]
    assert CHECK["check_elf"](debs.build("ubuntu24.04-arm64"), arm64) == []


def test_the_check_refuses_a_binary_of_another_architecture(arm64: Path, debian: Path, tmp_path: Path) -> None:
    """check-deb's ELF check is what CI relies on: an x86-64 object slipped into the arm64 tree is named."""
    (x86,) = [p for p in debian.rglob("cygrpc.cpython-311-x86_64-linux-gnu.so")]
    stray = arm64 / "usr/lib/sparkd/stray.so"
    stray.write_bytes(x86.read_bytes())
    try:
        problems = CHECK["check_elf"](debs.build("ubuntu24.04-arm64"), arm64)
    finally:
        stray.unlink()
    assert problems == ["usr/lib/sparkd/stray.so: e_machine 62, not 183 (aarch64)"]


@pytest.mark.parametrize("target", ["debian12-amd64", "ubuntu24.04-arm64"])
def test_the_package_installs_what_an_operator_looks_for(target: str, tmp_path: Path) -> None:
    deb = debs.build(target)
    tree = debs.extract(deb, tmp_path)
    t = TARGETS[target]
    for program in ("sparkd", "sparkctl-client"):
        link = tree / "usr/bin" / program
        assert os.readlink(link) == f"../lib/sparkd/venv/bin/{program}"
        script = link.resolve()
        assert script.read_text().startswith("#!/usr/lib/sparkd/venv/bin/python3 -I\n")
        assert stat.S_IMODE(script.stat().st_mode) == 0o755
    # The config's default launch agent (frameworks.launch_agent) is where the package puts it.
    assert os.readlink(tree / "usr/lib/sparkd/sparkd-launch-agent") == "venv/bin/sparkd-launch-agent"
    assert os.readlink(tree / "usr/lib/sparkd/venv/bin/python3") == f"../../../../bin/python{t.python}"
    # The distribution's packages stay out of the root daemon's path, python3-systemd alone linked in.
    assert "include-system-site-packages = false" in (tree / "usr/lib/sparkd/venv/pyvenv.cfg").read_text()
    systemd = tree / t.site_packages() / "systemd"
    assert (systemd.parent / os.readlink(systemd)).resolve() == (tree / "usr/lib/python3/dist-packages/systemd")
    assert (tree / t.unit_dir / "sparkd.service").read_bytes() == (ROOT / "systemd/sparkd.service").read_bytes()
    assert (tree / "etc/sparkd/sparkd.toml").read_bytes() == (ROOT / "packaging/sparkd.toml").read_bytes()
    assert (tree / "usr/lib/sysusers.d/sparkd.conf").read_text().splitlines()[-1] == "g sparkd -"
    for path in (
        "usr/share/man/man8/sparkd.8.gz",
        "usr/share/man/man1/sparkctl-client.1.gz",
        "usr/share/bash-completion/completions/sparkctl-client",
        "usr/share/zsh/vendor-completions/_sparkctl-client",
        "usr/share/doc/sparkd/copyright",
        "usr/share/doc/sparkd/changelog.Debian.gz",
        "usr/share/doc/sparkd/examples/sparkd.toml",
        "usr/share/lintian/overrides/sparkd",
        f"{t.site_packages()}/sparkd/__init__.py",
    ):
        assert (tree / path).is_file(), path
    everything = [p.relative_to(tree) for p in tree.rglob("*")]
    assert not [p for p in everything if p.parts[0] == "opt"], "nothing under /opt (Debian policy)"
    assert not [p for p in everything if p.name == "__pycache__" or p.suffix == ".pyc"], "postinst compiles"
    fields = debs.control(deb)
    assert fields["Architecture"] == t.arch
    assert fields["Version"] == f"0.1.0-1{t.version_suffix}"
    assert fields["Depends"].split(", ")[:2] == [f"python{t.python}", "python3-systemd"]
    depends = {d.split()[0] for d in fields["Depends"].split(", ")}
    assert not depends & {"python3-pip", "python3-dev", "gcc", "build-essential", "libsystemd-dev"}


def test_the_same_checkout_builds_the_same_bytes(tmp_path: Path) -> None:
    """Reproducible: modes and times normalised to the commit's, no time in the gzip and xz streams."""
    first = debs.build("debian12-amd64")
    again = tmp_path / "again"
    subprocess.run([str(debs.BUILD_DEB), "--target", "debian12-amd64", "--out", str(again)], check=True, timeout=900)
    (second,) = again.glob("*.deb")
    assert second.name == first.name
    assert hashlib.sha256(second.read_bytes()).digest() == hashlib.sha256(first.read_bytes()).digest()
