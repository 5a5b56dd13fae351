"""Reading one table of the daemon config (`sparkd.config`): typed, bounded values, and every key recorded.

A `Reader` records each key it is asked for, so that `finish()` can refuse the rest (a typo must not
silently fall back to a default) and `keys()` can list every key the config accepts (packaging/sparkd.toml
documents each one; tests/unit/test_conffile.py checks it).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

from sparkd.errors import ConfigError

MAX_STRING = 4096  # any string value, paths included (PATH_MAX)
# C0 controls, DEL and C1 controls: never legitimate in a path, name or address.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Reader:
    """Reads one TOML table, recording which keys were used so the rest can be refused."""

    def __init__(self, path: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.path, self.prefix, self.table = path, prefix, table
        self.used: set[str] = set()
        self.subs: dict[str, Reader] = {}

    def _name(self, key: str) -> str:
        # A quoted TOML key may hold control characters: never echo them raw to a terminal.
        return f"{self.prefix}{key}" if not CONTROL.search(key) else f"{self.prefix}{key!r}"

    def error(self, key: str, description: str) -> ConfigError:
        return ConfigError(self.path, self._name(key), description)

    def has(self, key: str) -> bool:
        """Whether the table sets `key`: for a key read only when it is set (it is a known key either way)."""
        self.used.add(key)
        return key in self.table

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.error(key, f"must be a {kind.__name__}, got {type(value).__name__}")
        if kind is str:
            if CONTROL.search(value):
                raise self.error(key, "must not contain NUL or other control characters; remove them")
            if len(value) > MAX_STRING:
                raise self.error(key, f"is too long ({len(value)} characters; at most {MAX_STRING})")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def path_value(self, key: str, default: str, *, optional: bool = False) -> str:
        """An absolute path (or, if `optional`, the empty string for "not set")."""
        value: str = self.get(key, str, default)
        if optional and value == "":
            return value
        if not value.startswith("/"):
            unset = ", or empty to leave it unset" if optional else ""
            raise self.error(key, f"must be an absolute path (starting with /){unset}; got {value!r}")
        if ".." in value.split("/"):
            # Paths are mapped under the sysroot; ".." would step out of it.
            raise self.error(key, f"must not contain '..' components; write the path out in full, got {value!r}")
        return value

    def label(self, key: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        """A name matched in full against `pattern` (re.fullmatch: no trailing newline slips through)."""
        value: str = self.get(key, str, default)
        if pattern.fullmatch(value) is None:
            source = "" if key in self.table else " (the default)"
            raise self.error(key, f"must be {what}; got {value!r}{source}; set it in the config file")
        return value

    def seconds(self, key: str, default: float, low: float, high: float) -> float:
        """A finite number of seconds in [low, high]."""
        value: float = self.get(key, float, default)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number of seconds, got {value}; use e.g. {default}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high} seconds, got {value}; use e.g. {default}")
        return value

    def network(self, key: str, default: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        text = self.get(key, str, str(default))
        try:
            return ipaddress.IPv4Network(text)
        except ValueError as e:
            raise self.error(key, f"must be an IPv4 network like 192.168.100.0/24 ({e})") from e

    def sub(self, key: str) -> Reader:
        self.used.add(key)
        table = self.table.get(key, {})
        if not isinstance(table, dict):
            raise self.error(key, "must be a table")
        reader = self.subs[key] = Reader(self.path, f"{self.prefix}{key}.", table)
        return reader

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key; remove it or check its spelling")

    def keys(self) -> list[str]:
        """The dotted name of every key read so far (`peer.port`), sorted; a sub-table's keys, not the table."""
        names: list[str] = []
        for key in self.used:
            names.extend(self.subs[key].keys() if key in self.subs else [f"{self.prefix}{key}"])
        return sorted(names)
