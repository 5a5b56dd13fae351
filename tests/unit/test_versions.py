"""Both programs answer --version (the installed console scripts, as an operator runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparkd import __version__

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["sparkd", "sparkctl-client"])
def test_version(program: str) -> None:
    r = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"{program} {__version__}"
