"""Golden files: a case's output compared with `tests/golden/expected/<case>.txt`.

Run `pytest tests/golden --update-golden` to rewrite the expected files from the current
output (then read the diff before committing it: the diff is the change to the host).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

EXPECTED = Path(__file__).parent / "expected"


def check(request: pytest.FixtureRequest, case: str, actual: str) -> None:
    path = EXPECTED / f"{case}.txt"
    if request.config.getoption("--update-golden"):
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; run `pytest tests/golden --update-golden` and review it")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(path), "actual"))
        pytest.fail(f"golden file {path.name} differs (rerun with --update-golden if intended):\n{diff}")
