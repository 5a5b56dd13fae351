"""packaging/sparkd.toml, the config file the package installs as /etc/sparkd/sparkd.toml.

As shipped it sets nothing but `version = 1`, so sparkd runs on its defaults; every key parse() accepts is
in it as a commented example `# key = value`, in its section, at its default. The accepted keys come from
the code (the keys `sparkd.config.parse` reads, and the fields of the `Config` dataclasses), so a key added
to config.py without documenting it fails here, and so does a default changed on one side only.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from sparkd.config import Config, accepted_keys, load, parse

CONFFILE = Path(__file__).resolve().parents[2] / "packaging/sparkd.toml"
LINES = CONFFILE.read_text().splitlines()
HEADER = re.compile(r"\[([A-Za-z0-9_]+)\]")
EXAMPLE = re.compile(r"# ([A-Za-z0-9_]+) = (.+)")
HOST_NAME = "conffile-host"

# The keys whose example is not their default, and why (the test below checks their example values).
NOT_DEFAULT = {
    "node.name": "defaults to the host name, which differs from machine to machine; the example shows one",
    "node.role": "tests and labs only; its default, unset (pairing decides), cannot be written",
    "node.index": "tests and labs only, with node.role; its default, unset, cannot be written in TOML",
}


@dataclasses.dataclass(frozen=True)
class Example:
    """One commented example line: `# key = value` under `[section]` ("" above the first section)."""

    section: str
    key: str
    value: str  # TOML text
    line: int  # its index in LINES

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    def parsed(self) -> Any:
        return tomllib.loads(f"v = {self.value}")["v"]


def _examples() -> list[Example]:
    section, found = "", []
    for i, line in enumerate(LINES):
        if header := HEADER.fullmatch(line):
            section = header[1]
        elif example := EXAMPLE.fullmatch(line):
            found.append(Example(section, example[1], example[2], i))
    return found


def _uncommented(examples: list[Example]) -> str:
    lines = list(LINES)
    for e in examples:
        lines[e.line] = lines[e.line].removeprefix("# ")
    return "\n".join(lines) + "\n"


def _fields(cls: Any, prefix: str = "") -> set[str]:
    """The dotted names of a config dataclass's fields, a nested dataclass's (a section's) included."""
    hints = typing.get_type_hints(cls)
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        names |= _fields(kind, f"{prefix}{f.name}.") if dataclasses.is_dataclass(kind) else {prefix + f.name}
    return names


EXAMPLES = _examples()
DOCUMENTED = {e.name: e for e in EXAMPLES}
ACCEPTED = sorted(set(accepted_keys()) | _fields(Config))


@pytest.fixture(autouse=True)
def _host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # node.name defaults to the host name: one that is a valid node name, whatever this machine's is.
    monkeypatch.setattr(socket, "gethostname", lambda: HOST_NAME)


def _defaults() -> Config:
    return parse("version = 1")


def test_only_version_is_set() -> None:
    active = [line for line in LINES if line.strip() and not line.startswith("#") and not HEADER.fullmatch(line)]
    assert active == ["version = 1"]


def test_the_shipped_file_is_the_defaults() -> None:
    assert parse(CONFFILE.read_text(), str(CONFFILE)) == _defaults()
    assert load(CONFFILE) == _defaults()  # load() also checks frameworks.user and groups on this machine
    assert _defaults().node.name == HOST_NAME


def test_the_accepted_keys_come_from_the_code() -> None:
    # The keys parse() reads and the dataclasses' fields are the same set: a key read but not kept, or a
    # field never read from the file, shows here.
    assert set(accepted_keys()) == _fields(Config)
    assert {"version", "sysroot", "node.name", "node.role", "peer.timeout_s", "lab.nvml_fixture"} <= set(ACCEPTED)


@pytest.mark.parametrize("key", ACCEPTED)
def test_every_accepted_key_is_documented(key: str) -> None:
    # `version = 1` is the one key set (test_only_version_is_set); every other one is a commented example.
    line = LINES.index("version = 1") if key == "version" else DOCUMENTED.get(key, Example("", "", "", -1)).line
    assert line >= 0, f"{key} is not in {CONFFILE.name}: add `# {key.rpartition('.')[2]} = <default>` in its section"
    above = LINES[line - 1]
    assert above.startswith("# ") and not EXAMPLE.fullmatch(above), f"{key}: say above it what it does"


def test_every_documented_key_is_accepted_and_documented_once() -> None:
    names = [e.name for e in EXAMPLES]
    assert len(names) == len(set(names))
    assert set(names) <= set(ACCEPTED)  # no stale key, none in the wrong section
    assert set(NOT_DEFAULT) <= set(names)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.name not in NOT_DEFAULT], ids=lambda e: e.name)
def test_each_example_is_the_default(example: Example) -> None:
    assert parse(_uncommented([example])) == _defaults()


def test_every_example_uncommented_parses_to_the_defaults() -> None:
    defaults = _defaults()
    pinned = {key.partition(".")[2]: DOCUMENTED[key].parsed() for key in NOT_DEFAULT}
    assert pinned == {"name": "spark1", "role": "head", "index": 0}
    assert parse(_uncommented(EXAMPLES)) == dataclasses.replace(
        defaults, node=dataclasses.replace(defaults.node, **pinned)
    )


def test_the_reader_records_a_key_read_only_when_set() -> None:
    # node.role is read only when the file sets it; it is an accepted key all the same.
    assert "node.role" in accepted_keys()
    assert parse('[node]\nrole = "worker"\n').node.role == "worker"
