#!/usr/bin/env python3
"""Writes the .deb's man pages and shell completions, from the programs' own argparse parsers.

    python packaging/gen_docs.py OUT_DIR

writes OUT_DIR/man/sparkd.8, OUT_DIR/man/sparkctl-client.1 (plain troff: the builder gzips them) and
OUT_DIR/completions/sparkctl-client (bash) and OUT_DIR/completions/_sparkctl-client (zsh), so that neither
can drift from the command line. The completions are shtab's (packaging/build-requirements.txt pins it).

The man pages are rendered here, not by argparse-manpage (4.8, the newest): it does not escape a line that
starts with `.` or `'`, and argparse wraps help text wherever it likes, so a help string whose wrapped line
began with `'word` vanished from the page (or ran as a request); its date ignores UTC, and it files the
commands under "POSITIONAL ARGUMENTS". What follows is a small renderer that writes every text as a
single escaped line and every command (`sparkctl-client peer pair join`) as a subsection with its options.

Reproducible: the same checkout gives the same bytes. The date in the page's footer is SOURCE_DATE_EPOCH's
(UTC), as the reproducible-builds spec asks; without it the footer shows only the version (no date is
better than a made-up one): the builder sets it, e.g. from debian/changelog or the commit being packaged.
The help of --socket names $SPARKD_SOCKET's value, so the parsers are built with SPARKD_SOCKET unset.

This is a program, not a module: `packaging` is a PyPI library's name too, so nothing imports this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the checkout being packaged, not some installed sparkd

try:
    import shtab
except ModuleNotFoundError:
    sys.exit("gen_docs: needs shtab: pip install -r packaging/build-requirements.txt")

from sparkctl_client import cli, client, exit_codes  # noqa: E402
from sparkd import __main__ as daemon  # noqa: E402
from sparkd import __version__, config  # noqa: E402


def esc(text: str) -> str:
    """Text as one line of filled troff: whitespace collapsed, `\\` and `-` escaped, a leading `.`/`'` disarmed."""
    line = " ".join(text.split()).replace("\\", "\\(rs").replace("-", "\\-")
    return "\\&" + line if line.startswith((".", "'")) else line


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


Command = tuple[str, str, argparse.ArgumentParser]  # its path (`sparkctl-client peer pair join`), help, parser


def walk(parser: argparse.ArgumentParser, path: str, help_: str = "") -> Iterator[Command]:
    """(command path, its help, its parser) for the parser and every subcommand below it, in order."""
    parser.color = False  # type: ignore[attr-defined]  # Python 3.14 colours help under FORCE_COLOR
    yield path, help_, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if helps.get(name) != argparse.SUPPRESS:
                    yield from walk(sub, f"{path} {name}", helps.get(name, ""))


def commands(parser: argparse.ArgumentParser) -> list[str]:
    """Every command path below the program (`sparkctl-client peer pair join`, ...)."""
    return [path for path, _, _ in list(walk(parser, parser.prog))[1:]]


def documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A parser's own arguments and options, without --help and the subcommand choice."""
    return [
        a
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


def argument(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """One argument or option as a tagged paragraph: `-n LINES, --lines LINES`, then its help."""
    fmt = parser._get_formatter()
    if action.option_strings:
        value = "" if action.nargs == 0 else fmt._format_args(action, fmt._get_default_metavar_for_optional(action))
        tag = ", ".join(bold(o) + (" " + italic(value) if value else "") for o in action.option_strings)
    else:
        tag = italic(str(action.metavar or action.dest))  # as --help lists it: `cmd`, not `...`
    text = fmt._expand_help(action) if action.help else ""
    if action.choices is not None and not isinstance(action.choices, range):
        text += f"{'; ' if text else ''}one of: {', '.join(map(str, action.choices))}"
    return [".TP", tag, *([esc(text)] if text else [])]


def usage(parser: argparse.ArgumentParser, path: str) -> str:
    """argparse's usage line, command in bold, the ubiquitous [-h] left out (DESCRIPTION says it once)."""
    rest = " ".join(parser.format_usage().split()).removeprefix(f"usage: {path}").replace(" [-h]", "", 1)
    return f"{bold(path)} {esc(rest)}".rstrip()


def definitions(items: list[tuple[str, str]]) -> list[str]:
    return [line for tag, text in items for line in (".TP", tag, esc(text))]


def page(
    parser: argparse.ArgumentParser,
    section: int,
    summary: str,
    description: list[str],
    extra: dict[str, list[str]],
    date: str,
) -> str:
    prog = parser.prog
    lines = [
        f".\\\" Generated by packaging/gen_docs.py from {prog}'s argparse parser: edit the parser, not this file.",
        f'.TH {esc(prog.upper())} {section} "{date}" "sparkd {esc(__version__)}" "sparkd manual"',
        ".nh",  # no hyphenation, left-adjusted: option names and usage lines stay whole
        ".ad l",
        ".SH NAME",
        f"{esc(prog)} \\- {esc(summary)}",
        ".SH SYNOPSIS",
        usage(parser, prog),
        ".SH DESCRIPTION",
        esc(parser.description or ""),
    ]
    for paragraph in [*description, f"Every command accepts {bold('-h')}, {bold('--help')}: its usage."]:
        lines += [".PP", paragraph]
    lines += [".SH OPTIONS"] + [line for a in documented(parser) for line in argument(parser, a)]
    lines.append(".SH COMMANDS")
    for path, help_, sub in list(walk(parser, prog))[1:]:
        lines += [".SS " + bold(path), *([esc(help_)] if help_ else []), ".PP", usage(sub, path)]
        if sub.description:
            lines += [".PP", esc(sub.description)]
        lines += [line for a in documented(sub) for line in argument(sub, a)]
    for heading, body in extra.items():
        lines += [f".SH {heading}", *body]
    return "\n".join(lines) + "\n"


def date_of_build() -> str:
    """SOURCE_DATE_EPOCH as a UTC date, or "" (then the footer shows the version only)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ""
    if not epoch.isdigit():
        raise SystemExit(f"gen_docs: SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%d")


def files() -> list[tuple[str, str]]:
    """The config, the two sockets, the state directory: their defaults in sparkd.config."""
    api = config.ApiConfig()
    state_dir = {f.name: f.default for f in dataclasses.fields(config.Config)}["state_dir"]
    return [
        (italic(config.DEFAULT_PATH), "the daemon's configuration (TOML); sparkd does not start without it"),
        (italic(api.socket), f"the admin socket (0660): root and group {api.socket_group}, root-equivalent"),
        (italic(api.ro_socket), "the read-only socket (0666): any local user, every change refused"),
        (
            italic(str(state_dir)),
            "state (0700): the node key node.key and its certificate, the pairing and deployment records",
        ),
    ]


def sparkd_page(date: str) -> str:
    p = daemon.parser()
    description = [
        f"Without a command, or with {bold('run')}, it runs the daemon, as root; systemd starts it "
        f"({bold('sparkd.service')}). {bold('sparkd lab')} builds a simulated cluster on this machine, for "
        "development and tests.",
        f"Local programs talk to it over two unix sockets, with {bold('sparkctl-client')}(1).",
    ]
    extra = {
        "FILES": definitions(files()),
        "SEE ALSO": [f"{bold('sparkctl-client')}(1), {bold('systemctl')}(1), {bold('journalctl')}(1)"],
    }
    return page(p, 8, "run one LLM across several NVIDIA DGX Spark workstations", description, extra, date)


#: What each of sparkctl_client.exit_codes means (a new code without its text here stops the build).
EXIT_STATUSES = {
    "OK": "success",
    "ERROR": "the daemon answered with an error (printed on standard error, with its reason)",
    "USAGE": "a bad command line",
    "UNREACHABLE": "no daemon answers on the socket",
    "PRECONDITION": "the cluster is not ready for the request (FAILED_PRECONDITION)",
}


def client_page(date: str) -> str:
    p = cli.parser()
    description = [
        f"Commands are a noun and a verb ({bold('deploy up')}). Changes take the admin socket "
        f"{esc(client.DEFAULT_SOCKET)} (root or group sparkd); every read also works on the read-only socket, "
        f"for any user ({bold('--socket')} {esc(config.ApiConfig().ro_socket)}).",
    ]
    codes = sorted((v, k) for k, v in vars(exit_codes).items() if k.isupper() and isinstance(v, int))
    extra = {
        "EXIT STATUS": definitions([(bold(str(value)), EXIT_STATUSES[name]) for value, name in codes]),
        "ENVIRONMENT": definitions(
            [(bold("SPARKD_SOCKET"), f"the socket to use without --socket (default {client.DEFAULT_SOCKET})")]
        ),
        "FILES": definitions(files()[1:3]),  # the two sockets
        "SEE ALSO": [f"{bold('sparkd')}(8)"],
    }
    return page(p, 1, "command-line client of the sparkd daemon", description, extra, date)


def completing_files(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Marks the options that take a path, so that shtab completes file names for them."""
    for _, _, sub in walk(parser, parser.prog):
        for action in sub._actions:
            if {"--file", "--socket"} & set(action.option_strings):
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    return parser


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: gen_docs.py OUT_DIR", file=sys.stderr)
        return 2
    os.environ.pop("SPARKD_SOCKET", None)
    out, date = Path(argv[1]), date_of_build()
    outputs = {
        "man/sparkd.8": sparkd_page(date),
        "man/sparkctl-client.1": client_page(date),
        "completions/sparkctl-client": shtab.complete(completing_files(cli.parser()), shell="bash"),
        "completions/_sparkctl-client": shtab.complete(completing_files(cli.parser()), shell="zsh"),
    }
    for name, text in outputs.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
