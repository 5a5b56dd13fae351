"""The lab's executable wrappers: the framework stand-ins', the real Ray CLI's, and sparkd's launch agent's.

`sparkd lab up` writes them under the lab's directory (`frameworks/`, where each node's config points its
framework venvs and launch agent). Each is a small shell script that runs Python, with the fault switches'
directory in its environment: a stand-in (`sparkd/lab/standins/`), Ray's own CLI, or sparkd's OpenMPI launch
agent. Deployment units run as a non-root user, so the interpreter must be one that user can run
(`standin_python`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from pathlib import Path

from sparkd.lab import faults
from sparkd.lab.errors import LabError

STANDIN = """#!/bin/sh
# sparkd lab stand-in for {what} (sparkd/lab/standins/{module}.py); not the real {what}.
# Its fault switches (`sparkd lab fault`, docs/lab.md) are files under $SPARKD_LAB_FAULTS_DIR.
export {faults_env}={faults}
{pythonpath}exec {python} -m sparkd.lab.standins.{module} {command}"$@"
"""
#: The stand-in wrappers under LAB_DIR/frameworks: path -> (framework, module, leading argument).
STANDINS = {
    "vllm/bin/vllm": ("vLLM", "vllm", ""),
    "sglang/bin/sglang": ("SGLang", "sglang", ""),
    "trtllm/bin/trtllm-serve": ("TensorRT-LLM", "trtllm", "serve "),
    "trtllm/bin/trtllm-llmapi-launch": ("TensorRT-LLM", "trtllm", "launch "),
}
#: sparkd's own OpenMPI launch agent (sparkd/launch_agent.py, the real one), as the lab's nodes run it.
AGENT_WRAPPER = "sparkd/bin/sparkd-launch-agent"
AGENT = """#!/bin/sh
# sparkd's OpenMPI launch agent (sparkd/launch_agent.py), run with the lab's interpreter; not a stand-in.
{pythonpath}exec {python} -m sparkd.launch_agent "$@"
"""
#: The wrapper of the REAL Ray CLI (vLLM on Ray: `ray start` units), under LAB_DIR/frameworks, and what it runs.
RAY_WRAPPER = "vllm/bin/ray"
RAY_CLI = """#!/bin/sh
# sparkd lab wrapper for the real Ray CLI (ray.scripts.scripts:main), not a stand-in. Ray's workers inherit
# this environment: the vLLM stand-in's stage actors (sparkd/lab/standins/vllm_ray.py) import sparkd from it
# and read their fault switches under $SPARKD_LAB_FAULTS_DIR.
export {faults_env}={faults}
{pythonpath}exec {python} -c {code} "$@"
"""
RAY_MAIN = """import sys
try:
    from ray.scripts.scripts import main
except ImportError as e:
    sys.exit(f"sparkd lab: the Ray CLI needs ray (pip install ray==2.60.0): {e}")
sys.argv[0] = "ray"
sys.exit(main())
"""


#: Where the lab mirrors what its non-root units import when this checkout or its environment lies under a
#: directory other users cannot enter (a clone in /root): the sparkd package copied, the environment's
#: site-packages hard-linked (no space used) where the filesystem allows. Rebuilt when either changes.
MIRROR = Path(os.environ.get("SPARKD_LAB_PYTHON_DIR", "/var/cache/sparkd-lab/python"))


def _reachable(path: Path) -> bool:
    """Whether a user other than root can reach `path`: it and every directory above it, as written and as
    resolved, searchable (or runnable) by others."""
    try:
        return all(q.stat().st_mode & stat.S_IXOTH for p in (path.absolute(), path.resolve()) for q in (p, *p.parents))
    except OSError:
        return False


def _stamp(checkout: Path, site: list[Path]) -> str:
    newest = max((f.stat().st_mtime_ns for f in (checkout / "sparkd").rglob("*.py")), default=0)
    return json.dumps(
        {"checkout": str(checkout), "newest": newest, "site": [(str(p), p.stat().st_mtime_ns) for p in site]}
    )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _mirror(checkout: Path, site: list[Path]) -> Path:
    """MIRROR, up to date: lib/ (the sparkd package) and site/ (the environment's site-packages)."""
    stamp = _stamp(checkout, site)
    stamp_file = MIRROR / "stamp.json"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return MIRROR
    MIRROR.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fresh = MIRROR.with_name(MIRROR.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(checkout / "sparkd", fresh / "lib/sparkd", ignore=ignore)
    for path in site:
        shutil.copytree(
            path, fresh / "site", symlinks=True, ignore=ignore, copy_function=_link_or_copy, dirs_exist_ok=True
        )
    for d in (fresh, *fresh.rglob("*")):
        if d.is_dir() and not d.is_symlink():
            d.chmod(0o755)
    (fresh / "stamp.json").write_text(stamp)
    shutil.rmtree(MIRROR, ignore_errors=True)
    fresh.rename(MIRROR)
    return MIRROR


def standin_python() -> tuple[str, str]:
    """The interpreter the stand-ins run with, and the PYTHONPATH it needs ("" for none).

    Deployment units run as a non-root (dynamic) user, which cannot run a Python, nor import a checkout or
    an environment, under a root-only directory (pyenv's under /root, a clone in /root are 0700): then the
    distribution's python3.X of the same version runs the stand-ins, with a mirror of this checkout's sparkd
    package and of the environment's site-packages (`MIRROR`) on its path."""
    checkout = Path(__file__).resolve().parents[2]
    site = [Path(p) for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    if _reachable(Path(sys.executable)) and _reachable(checkout / "sparkd/lab/standins") and all(map(_reachable, site)):
        return sys.executable, ""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    if not _reachable(system):
        raise LabError(
            f"the lab's deployment units run as a non-root user, who cannot run {sys.executable}; "
            f"install {version} (apt-get install {version}) or make a virtual environment from a Python others can run"
        )
    mirror = _mirror(checkout, site)
    return str(system), f"{mirror / 'lib'}:{mirror / 'site'}"


def write_standins(lab_dir: Path) -> None:
    """The stand-ins' wrappers under `lab_dir`/frameworks, and the real Ray CLI's and the launch agent's,
    each run with the stand-ins' interpreter (`standin_python`)."""
    python, pythonpath = standin_python()
    common = {
        "python": shlex.quote(python),
        "pythonpath": f"export PYTHONPATH={shlex.quote(pythonpath)}\n" if pythonpath else "",
        "faults_env": faults.FAULTS_DIR_ENV,
        "faults": shlex.quote(str(faults.faults_dir(lab_dir))),
    }
    wrappers = {path: STANDIN.format(what=w, module=m, command=c, **common) for path, (w, m, c) in STANDINS.items()}
    wrappers[RAY_WRAPPER] = RAY_CLI.format(code=shlex.quote(RAY_MAIN), **common)
    wrappers[AGENT_WRAPPER] = AGENT.format(**common)
    for path, text in wrappers.items():
        wrapper = lab_dir / "frameworks" / path
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
