"""The committed generated code matches the protos (regenerated with the pinned grpcio-tools)."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / ".ci/gen-protos"), str(tmp_path)], check=True, env={**os.environ, "PYTHON": sys.executable}
    )
    for package in ("sparkd/v1", "sparkd/peer/v1"):
        fresh = sorted(p.name for p in (tmp_path / package).iterdir())
        committed = sorted(p.name for p in (ROOT / package).iterdir() if p.suffix in (".py", ".pyi"))
        assert fresh == committed, f"{package}: run .ci/gen-protos"
        _, mismatch, errors = filecmp.cmpfiles(tmp_path / package, ROOT / package, fresh, shallow=False)
        assert not mismatch and not errors, f"stale generated code in {package}: {mismatch}; run .ci/gen-protos"
