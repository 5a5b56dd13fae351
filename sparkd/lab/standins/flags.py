"""The stand-ins' argument parsers, built from `framework_flags.yaml` (framework-facts.md section 3, plus flags
verified in each framework's source; the YAML's top comment says how it was made).

A parser takes exactly the table's flags for its entrypoint, in the table's spelling: vLLM's, SGLang's and
Ray's dashes, TensorRT-LLM's underscores. vLLM alone also takes underscores (it rewrites `--a_b` to `--a-b`
itself). Anything else fails with argparse's exit status 2, as the real parsers (argparse, click) do.
Every parser refuses prefix abbreviations (`allow_abbrev=False`), although vLLM's and SGLang's real ones take
them (SGLang's `--tp` reaches `--tp-size` that way): sparkd must emit full names.

Standard library and PyYAML only: the stand-ins run as scripts in a deployment's unit.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

TABLE = Path(__file__).with_name("framework_flags.yaml")


@dataclass(frozen=True)
class Entrypoint:
    framework: str  # the table's top-level key
    prog: str
    sections: tuple[str, ...]  # dotted paths of the flag mappings it takes
    positionals: tuple[str, ...] = ()


ENTRYPOINTS = {
    "vllm serve": Entrypoint(
        "vllm",
        "vllm serve",
        ("common_flags", "multinode_mp.all_nodes", "multinode_mp.worker_only", "added_flags"),
        ("model",),
    ),
    "sglang serve": Entrypoint("sglang", "sglang serve", ("common_flags", "multinode.all_nodes", "added_flags")),
    "trtllm-serve": Entrypoint("trtllm", "trtllm-serve", ("common_flags", "added_flags"), ("model",)),
    "ray start": Entrypoint("ray", "ray start", ("start_head", "start_worker", "added_flags")),
}
_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("0", "false", "f", "no", "n", "off")


class TableError(ValueError):
    """The flag table is not what this module reads; the message says where."""


@dataclass(frozen=True)
class Flag:
    name: str
    type: str  # int, float, str, bool, boolval, json, hostport, enum
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    default: int | None = None  # from int(N)
    negatable: bool = False
    human: str = ""  # "", "true" or "or_auto"

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


@cache
def table(path: Path = TABLE) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise TableError(f"{path}: not a mapping")
    return doc


def _parse_type(where: str, text: str) -> tuple[str, tuple[str, ...], int | None]:
    text = text.strip()
    if m := re.fullmatch(r"enum\[(.*)\]", text):
        choices = tuple(c.strip() for c in m[1].split(","))
        if not all(choices) or "..." in choices:
            raise TableError(f"{where}: an enum must list every choice, got {text}")
        return "enum", choices, None
    if m := re.fullmatch(r"int\((-?\d+)\)", text):
        return "int", (), int(m[1])
    if text in ("int", "float", "str", "bool", "boolval", "json", "hostport"):
        return text, (), None
    raise TableError(f"{where}: unknown type {text!r}")


def _flag(where: str, name: str, spec: Any) -> Flag:
    if isinstance(spec, str):
        kind, choices, default = _parse_type(where, spec)
        return Flag(name, kind, choices=choices, default=default)
    if not isinstance(spec, dict) or "type" not in spec:
        raise TableError(f"{where}: a flag is a type or a mapping with a type")
    kind, choices, default = _parse_type(where, str(spec["type"]))
    aliases = tuple(str(a) for a in spec.get("aliases", ()))
    human = spec.get("human", "")
    return Flag(
        name,
        kind,
        aliases,
        choices,
        default,
        negatable=bool(spec.get("negatable", False)),
        human="true" if human is True else str(human or ""),
    )


def flags(entrypoint: str) -> list[Flag]:
    """The flags `entrypoint` (a key of ENTRYPOINTS) takes, in table order; a flag listed in two sections
    (ray's --node-ip-address) must have the same type in both."""
    ep = ENTRYPOINTS[entrypoint]
    doc = table()[ep.framework]
    found: dict[str, Flag] = {}
    for section in ep.sections:
        node: Any = doc
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        if not isinstance(node, dict):
            raise TableError(f"{ep.framework}.{section}: not a mapping")
        for name, spec in node.items():
            if not str(name).startswith("-"):
                raise TableError(f"{ep.framework}.{section}: {name!r} is not a flag")
            flag = _flag(f"{ep.framework}.{section}.{name}", str(name), spec)
            if name in found and found[name].type != flag.type:
                raise TableError(f"{ep.framework}: {name} has types {found[name].type} and {flag.type}")
            found.setdefault(str(name), flag)
    return list(found.values())


def human_int(value: str, or_auto: bool = False) -> int:
    """vLLM's and SGLang's human_readable_int: 25.6k = 25600, 1K = 1024 (no decimals with binary suffixes)."""
    value = value.strip()
    if or_auto and value in ("auto", "-1"):
        return -1
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt])", value):
        return int(float(m[1]) * 1000 ** ("kmgt".index(m[2]) + 1))
    if m := re.fullmatch(r"(\d+)([KMGT])", value):
        return int(m[1]) << (10 * ("KMGT".index(m[2]) + 1))
    return int(value)


def _human(or_auto: bool) -> Callable[[str], int]:
    def human(value: str) -> int:
        try:
            return human_int(value, or_auto)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer (such as 8192, 8k or 8K)") from None

    return human


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None


def _hostport(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not host:port")
    return value


def _boolval(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a valid boolean")


class _Negatable(argparse.Action):
    """`--X` sets True; `--no-X` (and vLLM's `--disable-Y` of `--enable-Y`) sets False."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.negative = {o for o in option_strings if o.startswith("--no-") or o.startswith("--disable-")}
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, opt: Any = None) -> None:
        setattr(ns, self.dest, opt not in self.negative)


def _dashes(arg: str) -> str:
    """vLLM's rewrite: underscores to dashes in a long option's name (up to `=` and the first `.`)."""
    if not arg.startswith("--"):
        return arg
    key, eq, value = arg.partition("=")
    head, dot, tail = key.partition(".")
    return head.replace("_", "-") + dot + tail + eq + value


class TableParser(argparse.ArgumentParser):
    """An ArgumentParser that can rewrite underscores as vLLM's does, before parsing (also as a subparser)."""

    convert_underscores = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None and self.convert_underscores:
            args = [_dashes(a) for a in args]
        return super().parse_known_args(args, namespace)


def add_flags(p: argparse.ArgumentParser, entrypoint: str) -> argparse.ArgumentParser:
    """Adds `entrypoint`'s positionals and flags to `p` (every value defaults to None unless the table gives one)."""
    ep = ENTRYPOINTS[entrypoint]
    for name in ep.positionals:
        p.add_argument(name)
    for f in flags(entrypoint):
        names = [f.name, *f.aliases]
        if f.type == "bool" and f.negatable:
            names += [f"--no-{n[2:]}" for n in [f.name, *f.aliases] if n.startswith("--")]
            if ep.framework == "vllm":  # EnableDisableAction (vllm/utils/argparse_utils.py)
                names += [f"--disable-{n[9:]}" for n in [f.name, *f.aliases] if n.startswith("--enable-")]
            p.add_argument(*names, dest=f.dest, action=_Negatable, default=None)
        elif f.type == "bool":
            p.add_argument(*names, dest=f.dest, action="store_true", default=None)
        else:
            kwargs: dict[str, Any] = {"dest": f.dest, "default": f.default}
            if f.type == "int":
                kwargs["type"] = _human(f.human == "or_auto") if f.human else int
            elif f.type == "float":
                kwargs["type"] = float
            elif f.type == "enum":
                kwargs["choices"] = f.choices
            elif f.type == "json":
                kwargs["type"] = _json
            elif f.type == "hostport":
                kwargs["type"] = _hostport
            elif f.type == "boolval":
                kwargs["type"] = _boolval
            p.add_argument(*names, **kwargs)
    if isinstance(p, TableParser):
        p.convert_underscores = bool(table()[ep.framework].get("accepts_underscores", False))
    return p


def parser(entrypoint: str, prog: str | None = None) -> TableParser:
    """A parser for `entrypoint`'s arguments after its command words (`vllm serve` parses from the model on)."""
    p = TableParser(prog=prog or ENTRYPOINTS[entrypoint].prog, allow_abbrev=False)
    add_flags(p, entrypoint)
    return p
