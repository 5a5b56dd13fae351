"""`sparkd`: the daemon (`sparkd run`, the default) and the lab (`sparkd lab ...`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import sys
from typing import Any

from sparkd import __version__
from sparkd.errors import ConfigError


def _run(args: argparse.Namespace) -> int:
    from sparkd import config as config_mod
    from sparkd import log

    # The stack of every thread to stderr (the journal) on a fatal signal: the watchdog's SIGABRT shows where
    # a wedged daemon was stuck (python3 -I ignores PYTHONFAULTHANDLER).
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # a stderr that is no file (tests)
        faulthandler.enable()

    try:
        config = config_mod.load(args.config)
    except ConfigError as e:
        print(f"sparkd: bad config: {e}", file=sys.stderr)
        return 2
    if args.sysroot:
        if not args.sysroot.startswith("/") or not args.sysroot.isprintable():
            print(f"sparkd: --sysroot must be an absolute path, got {args.sysroot[:100]!r}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, sysroot=args.sysroot)
        try:
            config_mod.check_socket_paths(config, "--sysroot")
        except ConfigError as e:
            print(f"sparkd: bad config: {e}", file=sys.stderr)
            return 2
    log.configure(args.log_format or config.log_format)
    from sparkd import identity
    from sparkd.errors import IdentityError
    from sparkd.host.sysroot import Sysroot
    from sparkd.system import System, real_host

    host = real_host(config)
    state_dir = Sysroot(config.sysroot).path(config.state_dir)
    try:
        node = asyncio.run(identity.load_in_subprocess(host.runner, state_dir))  # keeps libcrypto out of the daemon
        system = System(config, host, node)
    except IdentityError as e:
        print(f"sparkd: {e}", file=sys.stderr)
        return 2
    asyncio.run(system.run())
    return 0


def _daemon_options(p: argparse.ArgumentParser, with_defaults: bool) -> None:
    """The daemon's options, accepted before or after `run`. Only the top level sets defaults, so a
    value given before `run` is not reset by the subcommand's parser."""

    def default(value: str) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    p.add_argument("--config", default=default("/etc/sparkd/sparkd.toml"), help="config file (TOML)")
    p.add_argument("--sysroot", default=default(""), help="prefix for every host file sparkd reads or writes")
    p.add_argument("--log-format", default=default(""), choices=["auto", "console", "json", "journal"])


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkd", description="sparkd: one LLM across several DGX Sparks")
    parser.add_argument("--version", action="version", version=f"sparkd {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the daemon (the default)")
    _daemon_options(parser, with_defaults=True)
    _daemon_options(run, with_defaults=False)
    from sparkd.lab.cli import add_parser as add_lab

    add_lab(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "lab":
        return int(args.func(args))
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
