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
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"


def _bundled(target: Target, root: Path) -> list[tuple[str, str, str]]:
    """(name, version, license) of every distribution in the private environment, from its METADATA."""
    found = []
    for meta in sorted((root / target.site_packages()).glob("*.dist-info/METADATA")):
        msg = email.parser.Parser().parsestr(meta.read_text(errors="replace"), headersonly=True)
        licence = msg.get("License-Expression") or ""
        if not licence:
            classifiers = [
                c.rsplit("::", 1)[1].strip() for c in msg.get_all("Classifier", []) if c.startswith("License")
            ]
            short = (msg.get("License") or "").strip()
            licence = " or ".join(classifiers) or (short if short and len(short) < 60 and "\n" not in short else "")
        found.append((str(msg["Name"]), str(msg["Version"]), licence or "see its license files"))
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
        f"  * Built by packaging/build-deb from sparkd {upstream_version()} (commit {_commit()}) for\n"
        f"    {target.system}.\n\n -- {maintainer()}  {date}\n"
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
    for name, ver, licence in _bundled(target, root):
        if name == "sparkd":
            continue
        stanzas.append(
            f"Files: {target.site_packages()}/*\nCopyright: the authors of {name} {ver}\n"
            f"License: {licence}\n See {name.replace('-', '_')}-{ver}.dist-info in that directory.\n"
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
        "Depends": f"python{target.python}, python3-systemd, systemd, libc6 (>= 2.34)",
        "Suggests": "openmpi-bin, docker.io",
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
