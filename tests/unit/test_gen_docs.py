"""packaging/gen_docs.py: the .deb's man pages and completions, generated from the argparse parsers, and
what the real tools say of them: `man --warnings` (lintian's check), the text `man` renders, the bash
completion function driven in a real bash, `zsh -n`.

gen_docs.py is a program, not a module (`packaging` is a PyPI library's name): it runs as a subprocess, and
runpy loads it where a test calls one of its functions."""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparkctl_client import cli
from sparkd import __main__ as daemon
from sparkd import __version__

pytest.importorskip("shtab", reason="needs shtab (pip install -r packaging/build-requirements.txt)")

GEN_DOCS = Path(__file__).resolve().parents[2] / "packaging" / "gen_docs.py"
PAGES = {"sparkd.8": daemon.parser, "sparkctl-client.1": cli.parser}
EPOCH = "1700000000"  # 2023-11-14 22:13:20 UTC: already the 15th east of UTC+2, so the date shows it is UTC's
MAN = shutil.which("man")
needs_man = pytest.mark.skipif(MAN is None, reason="no man (Debian packages man-db and groff-base)")


def generate(out: Path, **env: str) -> Path:
    base = {k: v for k, v in os.environ.items() if k not in ("SPARKD_SOCKET", "SOURCE_DATE_EPOCH")}
    subprocess.run([sys.executable, str(GEN_DOCS), str(out)], env={**base, **env}, check=True)
    return out


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("docs"), SOURCE_DATE_EPOCH=EPOCH)


def rendered(page: Path) -> str:
    """The page as `man` shows it, without formatting, wide enough that no line of interest wraps."""
    env = {**os.environ, "MANWIDTH": "250", "LC_ALL": "C.UTF-8"}
    return subprocess.run([MAN or "man", "-l", str(page)], env=env, capture_output=True, text=True, check=True).stdout


def paths(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command under the parser, by walking its subparsers (independently of gen_docs)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{path} {name}", sub), *paths(sub, f"{path} {name}")]
    return found


def test_it_writes_the_pages_and_the_completions(out: Path) -> None:
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "completions/_sparkctl-client",
        "completions/sparkctl-client",
        "man/sparkctl-client.1",
        "man/sparkd.8",
    ]
    assert f'.TH SPARKD 8 "2023-11-14" "sparkd {__version__}"' in (out / "man/sparkd.8").read_text()
    assert f'.TH SPARKCTL\\-CLIENT 1 "2023-11-14" "sparkd {__version__}"' in (out / "man/sparkctl-client.1").read_text()


@needs_man
@pytest.mark.parametrize("name", sorted(PAGES))
def test_man_prints_no_warning(out: Path, name: str) -> None:
    """lintian's own check (groff-message): every warning of groff and man's preprocessors."""
    page = out / "man" / name
    command = [MAN or "man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)]
    r = subprocess.run(command, env={**os.environ, "LC_ALL": "C.UTF-8"}, capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    if groff := shutil.which("groff"):
        r = subprocess.run([groff, "-ww", "-man", "-z", str(page)], capture_output=True, text=True)
        assert (r.returncode, r.stderr) == (0, "")


@needs_man
@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_command_and_option_is_in_its_page(out: Path, name: str) -> None:
    parser = PAGES[name]()
    text = rendered(out / "man" / name)
    commands = paths(parser, parser.prog)
    assert len(commands) > 5
    for path, sub in [(parser.prog, parser), *commands]:
        assert f"\n   {path}\n" in text or path == parser.prog, path  # a subsection of its own
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, (path, option)
    (source,) = [line for line in (out / "man" / name).read_text().splitlines() if line.startswith(".TH")]
    assert f'"sparkd {__version__}"' in source


@needs_man
def test_the_client_page_has_every_noun_and_verb(out: Path) -> None:
    text = rendered(out / "man" / "sparkctl-client.1")
    commands = {path for path, _ in paths(cli.parser(), "sparkctl-client")}
    assert {"sparkctl-client deploy up", "sparkctl-client deploy down", "sparkctl-client peer pair join"} <= commands
    for path in commands:
        assert f"\n   {path}\n" in text, path
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n{section}\n" in text, section
    assert "sparkctl-client - command-line client of the sparkd daemon" in text  # whatis (lintian bad-whatis-entry)
    assert "       SPARKD_SOCKET\n" in text
    assert "/run/sparkd/sparkd.sock" in text and "/run/sparkd/sparkd-ro.sock" in text
    assert "SEE ALSO\n       sparkd(8)" in text


@needs_man
def test_the_daemon_page_names_its_files(out: Path) -> None:
    text = rendered(out / "man" / "sparkd.8")
    assert "sparkd - run one LLM across several NVIDIA DGX Spark workstations" in text
    for path in ("/etc/sparkd/sparkd.toml", "/run/sparkd/sparkd.sock", "/run/sparkd/sparkd-ro.sock", "/var/lib/sparkd"):
        assert f"\n       {path}\n" in text, path
    assert "root and group sparkd" in text and "any local user" in text
    assert "sparkctl-client(1)" in text.split("SEE ALSO")[1]


def test_the_same_checkout_gives_the_same_bytes(tmp_path: Path, out: Path) -> None:
    """Whatever the time zone, the terminal width or $SPARKD_SOCKET (the --socket help names its value)."""
    other = generate(tmp_path / "a", SOURCE_DATE_EPOCH=EPOCH, TZ="Pacific/Kiritimati", COLUMNS="40", SPARKD_SOCKET="/x")
    for page in out.rglob("*"):
        if page.is_file():
            assert (other / page.relative_to(out)).read_bytes() == page.read_bytes(), page
    undated = generate(tmp_path / "b")
    assert f'.TH SPARKD 8 "" "sparkd {__version__}"' in (undated / "man/sparkd.8").read_text()


def test_a_bad_source_date_epoch_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(GEN_DOCS), str(tmp_path)],
        env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "SOURCE_DATE_EPOCH" in r.stderr


@needs_man
def test_help_text_that_starts_like_a_request_is_printed(tmp_path: Path) -> None:
    """The reason for gen_docs's own renderer: a line starting with `'` or `.` is a troff request."""
    docs: dict[str, Any] = runpy.run_path(str(GEN_DOCS))
    p = argparse.ArgumentParser(prog="demo", description=".so /etc/passwd is text")
    p.add_argument("--quote", help="'single' starts this, \\fB stays, -- too")
    sub = p.add_subparsers().add_parser("verb", help=".B not bold")
    sub.add_argument("thing", help="'x")
    page = tmp_path / "demo.1"
    page.write_text(docs["page"](p, 1, "a demo", [], {}, ""))
    text = rendered(page)
    for visible in (".so /etc/passwd is text", "'single' starts this, \\fB stays, -- too", ".B not bold", "'x"):
        assert visible in text
    assert docs["commands"](p) == ["demo verb"]


def complete(out: Path, *words: str) -> list[str]:
    """What the generated bash completion offers for the command line `words` (the last one being typed)."""
    script = (
        'source "$1"; shift; fn=$(complete -p sparkctl-client | sed -E "s/.* -F ([^ ]+) .*/\\1/")\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); "$fn"; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    bash = shutil.which("bash") or "bash"
    completion = str(out / "completions" / "sparkctl-client")
    r = subprocess.run([bash, "--norc", "-c", script, "bash", completion, *words], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_nouns_verbs_and_options(out: Path) -> None:
    assert complete(out, "sparkctl-client", "dep") == ["deploy"]
    assert {"up", "down"} <= set(complete(out, "sparkctl-client", "deploy", ""))
    assert {"up", "down"} <= set(complete(out, "sparkctl-client", "-o", "json", "deploy", ""))
    assert complete(out, "sparkctl-client", "peer", "pair", "") == ["begin", "join", "reset"]
    assert complete(out, "sparkctl-client", "-o", "") == ["table", "json"]
    assert "--wait" in complete(out, "sparkctl-client", "deploy", "up", "--")
    assert complete(out, "sparkctl-client", "deploy", "up", "-f", str(out / "completions" / "_")) == [
        str(out / "completions" / "_sparkctl-client")  # -f completes file names
    ]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh (Debian package zsh): zsh -n not run")
def test_the_zsh_completion_parses(out: Path) -> None:
    zsh_file = out / "completions" / "_sparkctl-client"
    assert zsh_file.read_text().startswith("#compdef sparkctl-client\n")
    r = subprocess.run([shutil.which("zsh") or "zsh", "-n", str(zsh_file)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
