"""structlog configuration, done once at start-up.

Under systemd (JOURNAL_STREAM set, or `--log-format journal`) events go to the journal
through systemd-python with their key-value pairs as journal fields (SPARKD_*), without
a timestamp (journald adds its own). Otherwise a console renderer on a terminal, JSON
lines elsewhere. Events are dotted lowercase nouns and verbs: `peer.connected`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def _to_journal(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    from systemd import journal

    message = str(event.pop("event", ""))
    level = str(event.pop("level", method))
    fields = {f"SPARKD_{k.upper()}": str(v) for k, v in event.items() if k != "exception"}
    text = " ".join([message] + [f"{k}={v}" for k, v in event.items() if k != "exception"])
    if "exception" in event:
        text += "\n" + str(event["exception"])
    journal.send(text, PRIORITY=_PRIORITY.get(level, 6), SYSLOG_IDENTIFIER="sparkd", SPARKD_EVENT=message, **fields)
    raise structlog.DropEvent


def resolve_format(fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if os.environ.get("JOURNAL_STREAM"):
        return "journal"
    return "console" if sys.stderr.isatty() else "json"


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    fmt = resolve_format(fmt)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
    ]
    if fmt == "journal":
        processors.append(_to_journal)
    elif fmt == "json":
        processors += [structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.JSONRenderer()]
    else:
        processors += [
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
