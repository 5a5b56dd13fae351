"""Collects the fuzz runs' counts per method and prints them at the end of the session."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

#: method -> status code name -> calls
RESULTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fuzz: calls per method and status")
    for method in sorted(RESULTS):
        counts = RESULTS[method]
        codes = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
        terminalreporter.write_line(f"{method}: {sum(counts.values())} calls ({codes})")
