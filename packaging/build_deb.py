"""Builds sparkd's .deb: `packaging/build-deb [--target NAME|all] [--revision N] [--out DIR]`.

Run through `packaging/build-deb`, which makes the build environment first. For each target
(`targets.py`) it:
1. downloads the pinned wheels of that system's Python and architecture (`runtime.lock`, hashes required,
   binary wheels only: nothing is compiled, at build time or at install time);
2. installs them and sparkd's own wheel into a private environment, `/usr/lib/sparkd/venv`, whose
   interpreter is the distribution's `python3.X` and which sees the distribution's `python3-systemd`
   (system site packages: systemd-python ships no wheels);
3. adds the unit, the conffile, the sysusers entry, the man pages and completions (`gen_docs.py`, from
   the argument parsers), the docs, and the maintainer scripts (`deb/`);
4. writes the control files (`deb_meta.py`) and calls `dpkg-deb --root-owner-group --build`.

`packaging/build-deb lock` re-resolves `runtime.in` for every target into `runtime.lock`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import deb_meta
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from targets import TARGETS, Target

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = "/usr/lib/sparkd/venv"
SCRIPTS = ("postinst", "prerm", "postrm")  # deb/: the maintainer scripts
# The programs sparkd puts on the PATH (and the launch agent, for OpenMPI in a deployment's unit), each
# `-I`: isolated from PYTHON* variables, the user's site directory and the current directory.
ENTRY_POINTS = {
    "sparkd": "sparkd.__main__",
    "sparkctl-client": "sparkctl_client.__main__",
    "sparkd-launch-agent": "sparkd.launch_agent",
}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def wheel_args(target: Target) -> list[str]:
    """pip's options that pick the target's wheels, whatever machine builds."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python, "--abi", target.abi]
    for platform in target.platforms():
        args += ["--platform", platform]
    return args


def download(target: Target, into: Path) -> list[Path]:
    pip("download", "--no-deps", "--require-hashes", "-r", str(HERE / "runtime.lock"), "-d", str(into),
        *wheel_args(target))  # fmt: skip
    return sorted(into.glob("*.whl"))


def source_files() -> list[str]:
    """The files of sparkd's wheel: git's tracked files of the two packages (their working-tree contents), so
    a stray file in the checkout never lands in the package; without git, every file but bytecode."""
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--", "sparkd", "sparkctl_client"], capture_output=True
    )  # fmt: skip
    if tracked.returncode == 0 and tracked.stdout:
        return [f for f in tracked.stdout.decode().split("\0") if f and (REPO / f).is_file()]
    return [
        str(p.relative_to(REPO))
        for part in ("sparkd", "sparkctl_client")
        for p in (REPO / part).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def sparkd_wheel(into: Path) -> Path:
    """sparkd's own (pure Python) wheel, from this checkout, with the build environment's setuptools."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for name in [*source_files(), "pyproject.toml", "README.md"]:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, src / name)
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(into), str(src))
    (found,) = into.glob("sparkd-*.whl")
    return found


def install_wheels(target: Target, wheels: list[Path], root: Path) -> None:
    site = f"{VENV}/lib/python{target.python}/site-packages"
    scheme = {
        "purelib": site,
        "platlib": site,
        "headers": f"{VENV}/include/site/python{target.python}",
        "scripts": f"{VENV}/bin",
        "data": VENV,
    }
    destination = SchemeDictionaryDestination(
        scheme, interpreter=f"{VENV}/bin/python3", script_kind="posix", destdir=str(root),
        bytecode_optimization_levels=(),  # postinst compiles, for the Python that is there
    )  # fmt: skip
    for wheel in wheels:
        with WheelFile.open(wheel) as source:
            install(source=source, destination=destination, additional_metadata={"INSTALLER": b"sparkd build-deb\n"})


def write_venv(target: Target, root: Path) -> None:
    """The environment's interpreter and its config, as `python3 -m venv --system-site-packages` makes them."""
    venv = root / VENV.lstrip("/")
    bin_dir = venv / "bin"
    for script in bin_dir.iterdir():  # the wheels' own console scripts: only sparkd's programs are offered
        script.unlink()
    (bin_dir / "python3").symlink_to(f"../../../../bin/python{target.python}")
    # No system site packages: the root daemon imports only the pinned wheels and, of the distribution's
    # packages, python3-systemd alone (it ships no wheels), through one link into its directory.
    (venv / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {target.python}\n"
        f"executable = /usr/bin/python{target.python}\n"
    )
    (root / target.site_packages() / "systemd").symlink_to("../../../../../python3/dist-packages/systemd")
    for name, module in ENTRY_POINTS.items():
        script = bin_dir / name
        script.write_text(f"#!{VENV}/bin/python3 -I\nimport sys\n\nfrom {module} import main\n\nsys.exit(main())\n")
        script.chmod(0o755)
    for name in ("sparkd", "sparkctl-client"):
        link = root / "usr/bin" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f"../lib/sparkd/venv/bin/{name}")
    (root / "usr/lib/sparkd/sparkd-launch-agent").symlink_to("venv/bin/sparkd-launch-agent")


def copy(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def write_files(target: Target, root: Path, docs: Path) -> None:
    """The unit, the conffile, the group, the docs, the man pages and the completions."""
    copy(REPO / "systemd/sparkd.service", root / target.unit_dir / "sparkd.service")
    copy(HERE / "sparkd.toml", root / "etc/sparkd/sparkd.toml")
    copy(HERE / "deb/sysusers.conf", root / "usr/lib/sysusers.d/sparkd.conf")
    doc = root / "usr/share/doc/sparkd"
    copy(REPO / "README.md", doc / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):
        copy(page, doc / page.name)
    copy(HERE / "sparkd.toml", doc / "examples/sparkd.toml")
    for spec in sorted((REPO / "examples").glob("*.yaml")):
        copy(spec, doc / "examples" / spec.name)
    for man, section in (("sparkd.8", "man8"), ("sparkctl-client.1", "man1")):
        deb_meta.gzip_to(docs / "man" / man, root / "usr/share/man" / section / f"{man}.gz")
    copy(docs / "completions/sparkctl-client", root / "usr/share/bash-completion/completions/sparkctl-client")
    copy(docs / "completions/_sparkctl-client", root / "usr/share/zsh/vendor-completions/_sparkctl-client")
    copy(HERE / "deb/lintian-overrides", root / "usr/share/lintian/overrides/sparkd")


def normalize(root: Path, epoch: int) -> None:
    """Modes as policy wants them and one timestamp: 0755 for directories, the environment's programs and
    the maintainer scripts, 0644 for everything else (the wheels' modes vary: protobuf's modules are 0755,
    and shared objects must not be executable); a rebuild of the same commit gives the same files."""
    programs = root / VENV.lstrip("/") / "bin"
    for path in [*sorted(root.rglob("*"), reverse=True), root]:
        if path.is_symlink():
            os.utime(path, (epoch, epoch), follow_symlinks=False)
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            program = path.parent == programs or (path.parent == root / "DEBIAN" and path.name in SCRIPTS)
            path.chmod(0o755 if program else 0o644)
        os.utime(path, (epoch, epoch))


def build(target: Target, revision: int, out: Path, work: Path, docs: Path, own: Path, epoch: int) -> Path:
    version = deb_meta.debian_version(target, revision)
    root = work / target.name / "root"
    shutil.rmtree(root.parent, ignore_errors=True)
    wheels = download(target, work / target.name / "wheels")
    install_wheels(target, [*wheels, own], root)
    write_venv(target, root)
    write_files(target, root, docs)
    deb_meta.write_docs(target, root, version, epoch)
    control = root / "DEBIAN"
    control.mkdir()
    for script in SCRIPTS:
        copy(HERE / "deb" / script, control / script, 0o755)
    normalize(root, epoch)
    deb_meta.write_control(target, root, version)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"sparkd_{version}_{target.arch}.deb"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)], check=True, env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return deb


def lock(work: Path) -> None:
    """Resolves runtime.in for every target and writes runtime.lock with each wheel's hash."""
    hashes: dict[str, set[str]] = {}
    for target in TARGETS.values():
        into = work / "lock" / target.name
        shutil.rmtree(into, ignore_errors=True)
        pip("download", "-r", str(HERE / "runtime.in"), "-d", str(into), *wheel_args(target))
        for wheel in into.glob("*.whl"):
            name, version = wheel.name.split("-")[:2]
            pin = f"{name.lower().replace('_', '-')}=={version}"
            hashes.setdefault(pin, set()).add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    lines = ["# Generated by `packaging/build-deb lock` from runtime.in: every wheel of every target, by hash.", ""]
    for pin in sorted(hashes):
        lines.append(pin + "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(hashes[pin])))
    (HERE / "runtime.lock").write_text("\n".join(lines) + "\n")


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time (a checkout without git: now)."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    found = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip().isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="packaging/build-deb", description=__doc__.split("\n", 1)[0])
    p.add_argument("command", nargs="?", choices=["build", "lock"], default="build")
    p.add_argument("--target", choices=[*TARGETS, "all"], default="all", help="the system to build for")
    p.add_argument("--revision", type=int, default=1, help="the Debian revision (0.1.0-N~deb12), 1 to 999")
    p.add_argument("--out", type=Path, default=REPO / "build/deb", help="where the .deb files go")
    args = p.parse_args(argv)
    if not 1 <= args.revision <= 999:
        p.error(f"--revision must be from 1 to 999, got {args.revision}")
    (REPO / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix="deb-work-", dir=REPO / "build"
    ) as tmp:  # one per build: builds may run side by side
        work = Path(tmp)
        if args.command == "lock":
            lock(work)
            return 0
        epoch = source_date_epoch() or 1
        docs = work / "docs"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}  # the pages' date: the commit's
        subprocess.run([sys.executable, str(HERE / "gen_docs.py"), str(docs)], check=True, cwd=REPO, env=env)
        own = sparkd_wheel(work / "own")
        for target in TARGETS.values() if args.target == "all" else [TARGETS[args.target]]:
            deb = build(target, args.revision, args.out.resolve(), work, docs, own, epoch)
            print(f"{deb}  ({target.system})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
