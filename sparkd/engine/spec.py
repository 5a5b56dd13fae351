"""Deployment spec validation: YAML or a mapping in, a DeploymentSpec or every bad field out.

Unknown keys are refused (a typo must not fall back to a default), and all violations
found are reported in one pass, each naming its field and the fix.

The YAML comes from any client of the daemon, so it is bounded before it is built: at most
MAX_SPEC_BYTES, one document, no anchors or aliases (an alias bomb of a few hundred bytes
expands to gigabytes), only the standard tags, and at most MAX_DEPTH levels of nesting. The
event stream is checked first (PyYAML's event parser is not recursive); only a document that
passes is constructed. Every value echoed in an error goes through `sparkd.errors.shown`.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from sparkd.errors import FieldViolation, InvalidSpec, shown
from sparkd.model.deployment import KV_CACHE_DTYPES, RENDEZVOUS_PORTS, DeploymentSpec, EngineOptions, Framework

# 1-40 of [a-z0-9-], starting with a letter, no '--' and no trailing '-' (unit names are
# sparkd-NAME-rankN.service: a name must not be able to look like another's unit). Anchored at
# both ends (\A, \Z) so that match, search and fullmatch all agree; a trailing newline never passes.
NAME_RE = re.compile(r"\A(?=[a-z0-9-]{1,40}\Z)[a-z](?:-?[a-z0-9])*\Z")
NAME_RULE = "1-40 lowercase letters, digits or single '-' between them, starting with a letter"
TOP_KEYS = ("name", "framework", "model", "served_model_name", "parallelism", "port", "engine")
PARALLELISM_KEYS = ("pipeline", "tensor")
ENGINE_KEYS = ("context_length", "concurrency", "memory_fraction", "kv_cache_dtype")
MAX_CONTEXT = 16 * 1024 * 1024  # tokens
MAX_CONCURRENCY = 4096
DEFAULT_PORT = 8000

MAX_SPEC_BYTES = 64 * 1024
MAX_DEPTH = 16
MAX_PARALLEL = 64  # per dimension and for the world size (pipeline * tensor)
MAX_PATH_BYTES = 4096  # PATH_MAX
MAX_PATH_COMPONENT_BYTES = 255  # NAME_MAX
MAX_SERVED_NAME_CHARS = 128
# Ports the head itself needs, so the deployment's API cannot take them.
RESERVED_PORTS = {
    7471: "the sparkd peer port (daemon-to-daemon traffic)",
    7472: "the sparkd discovery port",
    7473: "the sparkd pairing port",
} | {p: "in the rendezvous range 29501-29564 that sparkd hands out (--master-port)" for p in RENDEZVOUS_PORTS}

_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # control, format, surrogate, line/paragraph sep


def parse_yaml(text: str) -> DeploymentSpec:
    """Parses a spec document, bounded and checked before it is constructed (`spec_yaml`)."""
    from sparkd.engine import spec_yaml  # PyYAML is loaded only when a document is parsed

    return validate(spec_yaml.load(text))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _key_path(key: object, prefix: str = "") -> str:
    """The field path of a mapping key: the key itself if it is short plain text, else its repr."""
    if isinstance(key, str) and 0 < len(key) <= 60 and key.isprintable():
        return prefix + key
    return prefix + shown(key, 40)


def _bad_char(text: str) -> str | None:
    """The first control, format, surrogate or line-separator character of `text`, shown; None if none."""
    for c in text:
        if ord(c) < 0x20 or ord(c) == 0x7F or unicodedata.category(c) in _BAD_CATEGORIES:
            return shown(c)
    return None


def validate_name(value: object, field: str = "name") -> str:
    """Returns `value` if it is a valid deployment name; else raises InvalidSpec on `field`."""
    problem = _name_problem(value)
    if problem is not None:
        raise InvalidSpec.one(field, problem)
    assert isinstance(value, str)
    return value


def _name_problem(value: object) -> str | None:
    if value is None or value == "":
        return f"required: {NAME_RULE}"
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        return f"must be {NAME_RULE}; got {shown(value)}"
    return None


def _model_problem(model: object) -> str | None:
    if model is None or model == "":
        return "required: the absolute path of the model directory (holds config.json)"
    if not isinstance(model, str):
        return f"must be the absolute path of the model directory, got {shown(model)}"
    if (c := _bad_char(model)) is not None:
        return f"must not contain control or format characters (found {c}); got {shown(model)}"
    if len(model.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes long; got {shown(model)}"
    if not model.startswith("/"):
        return f"must be an absolute path (start with '/'); got {shown(model)}"
    parts = model.split("/")
    if ".." in parts:
        return f"must not contain '..'; write the path out; got {shown(model)}"
    if "//" in model:
        return f"must not contain '//'; got {shown(model)}"
    if posixpath.normpath(model) != model:
        return f"must be a normalized path, like {shown(posixpath.normpath(model))}; got {shown(model)}"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_PATH_COMPONENT_BYTES for p in parts):
        return f"has a path component longer than {MAX_PATH_COMPONENT_BYTES} bytes; got {shown(model)}"
    if "$" in model:
        return f"must not contain '$' (systemd would expand it as a variable in the command line); got {shown(model)}"
    return None


def _served_problem(served: object) -> str | None:
    rule = (
        f"1-{MAX_SERVED_NAME_CHARS} printable characters without whitespace "
        "(for example meta-llama/Llama-3.1-70B-Instruct)"
    )
    if not isinstance(served, str) or not served:
        return f"must be {rule}; got {shown(served)}"
    if len(served) > MAX_SERVED_NAME_CHARS:
        return f"must be at most {MAX_SERVED_NAME_CHARS} characters; got {shown(served)}"
    if (c := _bad_char(served)) is not None or not served.isprintable() or any(ch.isspace() for ch in served):
        found = c or shown(next(ch for ch in served if not ch.isprintable() or ch.isspace()))
        return f"must be {rule}; found {found} in {shown(served)}"
    if served.startswith("-"):
        return f"must not start with '-' (it would read as a framework option); got {shown(served)}"
    if "$" in served:
        return f"must not contain '$' (systemd would expand it as a variable in the command line); got {shown(served)}"
    return None


def _count(value: object) -> tuple[int, str | None]:
    """A parallelism size and the problem with it (None if it is fine)."""
    n = _int(value)
    rule = f"an integer from 1 to {MAX_PARALLEL}"
    if value is None:
        return 0, f"required: {rule}"
    if n is None or not 1 <= n <= MAX_PARALLEL:
        return 0, f"must be {rule}, got {shown(value)}"
    return n, None


def validate(doc: Mapping[Any, Any]) -> DeploymentSpec:
    """Validates a spec mapping (YAML keys); raises InvalidSpec listing every bad field.

    Never raises anything else, whatever `doc` holds.
    """
    if not isinstance(doc, Mapping):
        raise InvalidSpec.one("spec", f"must be a mapping with keys {', '.join(TOP_KEYS)}; got {shown(doc)}")
    bad: list[FieldViolation] = []

    name = doc.get("name")
    if (problem := _name_problem(name)) is not None:
        bad.append(FieldViolation("name", problem))

    framework_text = doc.get("framework")
    framework = None
    by_value = {f.value: f for f in Framework}
    if isinstance(framework_text, str) and framework_text in by_value:
        framework = by_value[framework_text]
    else:
        choices = ", ".join(by_value)
        what = "required" if framework_text in (None, "") else f"unknown framework {shown(framework_text)}"
        bad.append(FieldViolation("framework", f"{what}; use one of {choices}"))

    model = doc.get("model")
    if (problem := _model_problem(model)) is not None:
        bad.append(FieldViolation("model", problem))

    served = doc.get("served_model_name")
    if served is not None and (problem := _served_problem(served)) is not None:
        bad.append(FieldViolation("served_model_name", problem))

    sizes = {"pipeline": 0, "tensor": 0}
    par = doc.get("parallelism")
    if not isinstance(par, Mapping):
        got = "" if par is None else f"; got {shown(par)}"
        bad.append(FieldViolation("parallelism", f"required: a mapping like {{pipeline: 2, tensor: 1}}{got}"))
    else:
        for key in PARALLELISM_KEYS:
            sizes[key], problem = _count(par.get(key, 1 if key == "tensor" else None))
            if problem is not None:
                bad.append(FieldViolation(f"parallelism.{key}", problem))
        if sizes["pipeline"] and sizes["tensor"] and sizes["pipeline"] * sizes["tensor"] > MAX_PARALLEL:
            bad.append(
                FieldViolation(
                    "parallelism",
                    f"pipeline * tensor (the world size) must be at most {MAX_PARALLEL}, "
                    f"got {sizes['pipeline']} * {sizes['tensor']} = {sizes['pipeline'] * sizes['tensor']}",
                )
            )
        for key in par:
            if key not in PARALLELISM_KEYS:
                bad.append(
                    FieldViolation(_key_path(key, "parallelism."), "unknown key; known keys are pipeline, tensor")
                )

    raw_port = doc.get("port", DEFAULT_PORT)
    port = _int(raw_port)
    if port is None or not 1 <= port <= 65535:
        bad.append(FieldViolation("port", f"must be a TCP port from 1 to 65535, got {shown(raw_port)}"))
    elif port in RESERVED_PORTS:
        bad.append(
            FieldViolation(
                "port", f"{port} is {RESERVED_PORTS[port]}, which the head needs; the API port must be another"
            )
        )

    engine = _engine(doc.get("engine"), bad)

    # Unknown keys last: a flood of them must not push the real problems out of the (bounded) error.
    known = f"unknown key; known keys are {', '.join(TOP_KEYS)}"
    for key in doc:
        if key not in TOP_KEYS:
            bad.append(FieldViolation(_key_path(key), known))

    if bad:
        raise InvalidSpec(bad)
    assert isinstance(name, str) and isinstance(model, str) and framework is not None and port is not None
    return DeploymentSpec(
        name=name,
        framework=framework,
        model=model,
        served_model_name=served if isinstance(served, str) else name,
        pipeline=sizes["pipeline"],
        tensor=sizes["tensor"],
        port=port,
        engine=engine,
    )


def _engine(doc: object, bad: list[FieldViolation]) -> EngineOptions:
    """The `engine` mapping (every key optional); problems go to `bad`."""
    if doc is None:
        return EngineOptions()
    if not isinstance(doc, Mapping):
        bad.append(FieldViolation("engine", f"must be a mapping with keys {', '.join(ENGINE_KEYS)}; got {shown(doc)}"))
        return EngineOptions()
    values: dict[str, Any] = {}
    for key, high in (("context_length", MAX_CONTEXT), ("concurrency", MAX_CONCURRENCY)):
        raw = doc.get(key)
        if raw is None:
            continue
        n = _int(raw)
        if n is None or not 1 <= n <= high:
            bad.append(FieldViolation(f"engine.{key}", f"must be an integer from 1 to {high}, got {shown(raw)}"))
        else:
            values[key] = n
    raw = doc.get("memory_fraction")
    if raw is not None:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool) and 0.05 <= raw <= 1.0
        if not ok:
            bad.append(FieldViolation("engine.memory_fraction", f"must be a number from 0.05 to 1, got {shown(raw)}"))
        else:
            values["memory_fraction"] = float(raw)
    raw = doc.get("kv_cache_dtype", "auto")
    if raw not in KV_CACHE_DTYPES:
        bad.append(
            FieldViolation("engine.kv_cache_dtype", f"must be one of {', '.join(KV_CACHE_DTYPES)}, got {shown(raw)}")
        )
    else:
        values["kv_cache_dtype"] = raw
    for key in doc:
        if key not in ENGINE_KEYS:
            bad.append(
                FieldViolation(_key_path(key, "engine."), f"unknown key; known keys are {', '.join(ENGINE_KEYS)}")
            )
    return EngineOptions(**values)
