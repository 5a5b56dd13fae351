"""The .deb's metadata: version, control, conffiles, md5sums, changelog and copyright (what debhelper's
dh_gencontrol, dh_md5sums and dh_installchangelogs would write, for a tree built without debhelper)."""

from __future__ import annotations

import email.parser
import gzip
import hashlib
import os
import subprocess
import time
from pathlib import Path

from targets import Target

REPO = Path(__file__).resolve().parent.parent
CONFFILES = ("/etc/sparkd/sparkd.toml",)
DESCRIPTION = """\
DGX Spark cluster daemon: one LLM across several Sparks
 sparkd runs on each NVIDIA DGX Spark. It configures the ConnectX-7 link
 between the machines, talks directly to the other Sparks' daemons over
 that link (mutual TLS, no central server, no SSH), starts vLLM, SGLang or
 TensorRT-LLM on every node in the right order as systemd units, checks
 that the cluster really serves, and restarts it through crashes.
 .
 sparkctl-client is its command line; its gRPC API listens on local unix
 sockets (read-only for any user, full for root and the group sparkd).
 .
 This build bundles its Python libraries (gRPC, protobuf, pyroute2,
 structlog, cryptography, nvidia-ml-py) in a private environment under
 /usr/lib/sparkd, for the distribution's Python {python}.
 It is built for {system}."""


def upstream_version() -> str:
    for line in (REPO / "sparkd/__init__.py").read_text().splitlines():
        if line.startswith("__version__ = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit("sparkd/__init__.py has no __version__")


def debian_version(target: Target, revision: int) -> str:
    return f"{upstream_version()}-{revision}{target.version_suffix}"


def maintainer() -> str:
    name = os.environ.get("DEBFULLNAME", "sparkd developers")
    return f"{name} <{os.environ.get('DEBEMAIL', 'sparkd-devel@example.org')}>"


def gzip_to(src: Path, dest: Path) -> None:
    """gzip -9n: no name and no time in the header, so the same input gives the same bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(src.read_bytes())
    dest.chmod(0o644)


def _commit() -> str:
    """The commit built, and whether the checkout's tracked files differ from it."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if found.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True
    )
    return found.stdout.strip() + (", with local changes" if dirty.stdout.strip() else "")


#: Metadata license names that are not SPDX identifiers, and theirs.
SPDX = {"3-Clause BSD License": "BSD-3-Clause", "MIT License": "MIT", "Apache Software License": "Apache-2.0"}


def _top(site: Path, recorded: str) -> str:
    """What a library owns of a path in its RECORD: its top-level module or package, or for a namespace
    package (google/, no __init__.py, shared by protobuf and googleapis-common-protos) the one below it;
    "" for a path outside site-packages (the wheels' scripts, not shipped)."""
    parts = recorded.split("/")
    if not parts[0] or parts[0] == "..":
        return ""
    namespace = (site / parts[0]).is_dir() and not (site / parts[0] / "__init__.py").exists()
    if len(parts) > 2 and namespace and not parts[0].endswith(".dist-info"):
        return "/".join(parts[:2])
    return parts[0]


def _bundled(target: Target, root: Path) -> list[tuple[str, str, str, list[str], str]]:
    """(name, version, license, top-level paths) of every library in the private environment, from its
    METADATA (License-Expression, else License, else the classifiers) and its RECORD."""
    site = root / target.site_packages()
    found = []
    for info in sorted(site.glob("*.dist-info")):
        msg = email.parser.Parser().parsestr((info / "METADATA").read_text(errors="replace"), headersonly=True)
        licence = msg.get("License-Expression") or (msg.get("License") or "").strip()
        if not licence or len(licence) > 60 or "\n" in licence:
            classifiers = [
                c.rsplit("::", 1)[1].strip() for c in msg.get_all("Classifier", []) if c.startswith("License")
            ]
            licence = " OR ".join(SPDX.get(c, c) for c in classifiers)
        tops = {_top(site, line.split(",", 1)[0]) for line in (info / "RECORD").read_text().splitlines() if line}
        tops.discard("")
        name, version = str(msg["Name"]), str(msg["Version"])
        found.append((name, version, SPDX.get(licence, licence) or "unknown", sorted(tops), info.name))
    return found


def write_docs(target: Target, root: Path, version: str, epoch: int) -> None:
    """changelog.Debian.gz and copyright in /usr/share/doc/sparkd."""
    doc = root / "usr/share/doc/sparkd"
    doc.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    suite = "bookworm" if target.version_suffix == "~deb12" else "noble"
    changelog = doc / "changelog.Debian"
    changelog.write_text(
        f"sparkd ({version}) {suite}; urgency=medium\n\n"
        f"  * Built by packaging/build-deb from sparkd {upstream_version()},\n    commit {_commit()},\n"
        f"    for {target.system}.\n\n -- {maintainer()}  {date}\n"
    )
    gzip_to(changelog, doc / "changelog.Debian.gz")
    changelog.unlink()
    stanzas = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: sparkd\n"
        "Comment: sparkd bundles the Python libraries below in /usr/lib/sparkd/venv; each one's own license\n"
        " files are in its .dist-info directory there.\n",
        "Files: *\nCopyright: 2026 sparkd developers\nLicense: Apache-2.0\n On Debian systems the full text of the "
        "Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n",
    ]
    for name, ver, licence, tops, info in _bundled(target, root):
        if name == "sparkd":
            continue  # Files: * above
        site = root / target.site_packages()
        paths = "\n ".join(f"{target.site_packages()}/{top}" + ("/*" if (site / top).is_dir() else "") for top in tops)
        stanzas.append(
            f"Files: {paths}\nCopyright: the authors of {name} {ver}\nLicense: {licence}\n"
            f" Its license files are in {target.site_packages()}/{info}.\n"
        )
    (doc / "copyright").write_text("\n".join(stanzas))


def _installed_size(root: Path) -> int:
    """In KiB, as dpkg-gencontrol counts it: each file rounded up, each directory and link one."""
    total = 0
    for path in root.rglob("*"):
        if path.relative_to(root).parts[0] == "DEBIAN":
            continue
        total += 1 if path.is_symlink() or path.is_dir() else -(-path.stat().st_size // 1024)
    return total


def write_control(target: Target, root: Path, version: str) -> None:
    """DEBIAN/control, conffiles and md5sums (after every file of the package is in place)."""
    control = root / "DEBIAN"
    fields = {
        "Package": "sparkd",
        "Version": version,
        "Architecture": target.arch,
        "Maintainer": maintainer(),
        "Installed-Size": str(_installed_size(root)),
        # libc6 2.34: cryptography's wheel is manylinux_2_34, the newest tag among the bundled wheels.
        # libstdc++6, libgcc-s1: grpcio's, protobuf's and cryptography's extensions link them (dpkg-shlibdeps).
        "Depends": f"python{target.python}, python3-systemd, systemd, libc6 (>= 2.34), libstdc++6, libgcc-s1",
        "Suggests": "openmpi-bin, docker.io | docker-ce",
        "Section": "net",
        "Priority": "optional",
        "Description": DESCRIPTION.format(python=target.python, system=target.system),
    }
    (control / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    (control / "conffiles").write_text("".join(f"{c}\n" for c in CONFFILES))
    sums = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] != "DEBIAN" and path.is_file() and not path.is_symlink():
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")  # dpkg reads md5sums
    (control / "md5sums").write_text("".join(sums))
    for name in ("control", "conffiles", "md5sums"):
        (control / name).chmod(0o644)
