"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and they catch a wrong import.

Each test copies the `sparkd` and `sparkctl_client` packages and pyproject.toml into a temporary
directory, optionally appends one forbidden import to one module of the copy, and runs `lint-imports`
there. import-linter finds the root packages by importing them and puts its working directory first on
sys.path, so the copy (cwd and PYTHONPATH) is the tree it analyses, not the checkout or the editable
install. Each run takes well under a second (no cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "sparkd layers: system > api > peer > engine | rpc > render | host > model"


def contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("sparkd", "sparkctl_client"):
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extras (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def append_line(path: Path, line: str) -> int:
    """Appends `line` to the module at `path`; returns its line number."""
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    text += line + "\n"
    path.write_text(text)
    return text.count("\n")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    r = lint_imports(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in contract_names():
        assert f"{name} KEPT" in out, f"{name!r} not reported kept:\n{out}"
    assert "BROKEN" not in out


#: (module of the copy, the line appended to it, the contract that line breaks): one case at least per contract.
FORBIDDEN_IMPORTS = [
    ("sparkd/engine/twins.py", "import grpc", "the engine knows no gRPC and no peer layer"),
    (
        "sparkd/peer/manager.py",
        "from sparkd.api import convert",
        "the peer layer knows neither the API nor the engine's managers",
    ),
    ("sparkd/model/deployment.py", "import os", "model and render do no IO and know nothing else"),
    ("sparkd/render/nccl.py", "from sparkd.host import sysroot", "model and render do no IO and know nothing else"),
    (
        "sparkd/engine/hostcfg/links.py",
        "from sparkd.host import netlink",
        "engine, peer and API use host adapters only via sparkd.host.protocols",
    ),
    ("sparkd/host/runner.py", "from sparkd.host import systemd", "host adapters are independent of one another"),
    ("sparkd/api/node.py", "from sparkd.lab import nvml", "production code never imports the lab"),
    ("sparkd/api/host.py", "from sparkd.api import status", "API servicers are independent of one another"),
    ("sparkctl_client/client.py", "from sparkd.engine import spec", "the CLI uses only the generated API stubs"),
    (
        "sparkd/host/proc.py",
        "from sparkd.engine import twins",
        "host adapters know no engine, peer, API, rpc, system, lab, nor gRPC",
    ),
    ("sparkd/api/node.py", "from sparkd import system", "the API layer knows neither the composition root nor the lab"),
    ("sparkd/rpc/limits.py", "from sparkd.engine import spec", LAYERS),
    (
        "sparkd/launch_agent.py",
        "from sparkd import errors",
        "the launch agent runs in a deployment's unit: it imports nothing of sparkd",
    ),
]


def test_every_contract_is_tested_broken() -> None:
    broken = {case[2] for case in FORBIDDEN_IMPORTS}
    assert broken == set(contract_names())


@pytest.mark.parametrize(("module", "line", "contract"), FORBIDDEN_IMPORTS)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    assert contract in contract_names()
    copy_tree(tmp_path)
    lineno = append_line(tmp_path / module, line)
    r = lint_imports(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"{contract} BROKEN" in out, out
    # The report names the import just added to the copy: the copy, not the checkout, was analysed.
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> " in out and f"(l.{lineno})" in out, out


@pytest.mark.parametrize(
    ("new_module", "contract"),
    [
        ("sparkd/newlayer/__init__.py", LAYERS),
        ("sparkd/host/newadapter.py", "host adapters are independent of one another"),
    ],
)
def test_a_new_module_must_be_given_a_layer(tmp_path: Path, new_module: str, contract: str) -> None:
    """The exhaustive contracts: a new subpackage of sparkd, or a new host adapter, must be placed."""
    copy_tree(tmp_path)
    path = tmp_path / new_module
    path.parent.mkdir(exist_ok=True)
    path.write_text('"""New."""\n')
    r = lint_imports(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"{contract} BROKEN" in out, out
    name = new_module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert name in out, out
