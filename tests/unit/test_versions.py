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


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "/x.toml", "--sysroot", "/r", "run"],
        ["run", "--config", "/x.toml", "--sysroot", "/r"],
        ["--config", "/x.toml", "--sysroot", "/r"],
    ],
)
def test_daemon_options_before_or_after_run(argv: list[str]) -> None:
    from sparkd.__main__ import parser

    args = parser().parse_args(argv)
    assert (args.config, args.sysroot, args.log_format) == ("/x.toml", "/r", "")
