"""The spec's optional sections: `engine` (with `speculative`), `runtime`, `extra_args`, `env` and
`command`. Each reads its part of the document, appends every problem to `bad` (naming the field)
and returns the value to use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sparkd.engine.launchers.command import unknown_placeholders
from sparkd.engine.launchers.interfaces import MANAGED as MANAGED_ENV
from sparkd.engine.spec_fields import bad_char, integer, key_path, path_problem, system_dir_problem, word_problem
from sparkd.errors import FieldViolation, shown
from sparkd.model.deployment import KV_CACHE_DTYPES, SPECULATIVE_METHODS, EngineOptions, Runtime, Speculative

ENGINE_KEYS = (
    "context_length",
    "concurrency",
    "memory_fraction",
    "kv_cache_dtype",
    "max_batched_tokens",
    "quantization",
    "chunked_prefill",
    "speculative",
)
SPECULATIVE_KEYS = ("method", "model", "tokens", "steps", "topk")
RUNTIME_KEYS = ("image", "venv")
MAX_CONTEXT = 16 * 1024 * 1024  # tokens
MAX_CONCURRENCY = 4096
MAX_BATCHED_TOKENS = 16 * 1024 * 1024
MAX_DRAFT = 1024
MAX_ARGS = 128
MAX_ENV = 64
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
QUANT_NAME = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,39}\Z")


def _unknown(doc: Mapping[Any, Any], known: tuple[str, ...], prefix: str, bad: list[FieldViolation]) -> None:
    for key in doc:
        if key not in known:
            bad.append(FieldViolation(key_path(key, prefix), f"unknown key; known keys are {', '.join(known)}"))


def _mapping(doc: object, field: str, keys: tuple[str, ...], bad: list[FieldViolation]) -> Mapping[Any, Any] | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        bad.append(FieldViolation(field, f"must be a mapping with keys {', '.join(keys)}; got {shown(doc)}"))
        return None
    return doc


def _bounded(doc: Mapping[Any, Any], key: str, high: int, prefix: str, bad: list[FieldViolation]) -> int | None:
    raw = doc.get(key)
    if raw is None:
        return None
    n = integer(raw)
    if n is None or not 1 <= n <= high:
        bad.append(FieldViolation(f"{prefix}{key}", f"must be an integer from 1 to {high}, got {shown(raw)}"))
        return None
    return n


def engine(raw: object, bad: list[FieldViolation]) -> EngineOptions:
    """The `engine` mapping (every key optional)."""
    doc = _mapping(raw, "engine", ENGINE_KEYS, bad)
    if doc is None:
        return EngineOptions()
    values: dict[str, Any] = {}
    for key, high in (
        ("context_length", MAX_CONTEXT),
        ("concurrency", MAX_CONCURRENCY),
        ("max_batched_tokens", MAX_BATCHED_TOKENS),
    ):
        if (n := _bounded(doc, key, high, "engine.", bad)) is not None:
            values[key] = n
    raw = doc.get("memory_fraction")
    if raw is not None:
        if isinstance(raw, int | float) and not isinstance(raw, bool) and 0.05 <= raw <= 1.0:
            values["memory_fraction"] = float(raw)
        else:
            bad.append(FieldViolation("engine.memory_fraction", f"must be a number from 0.05 to 1, got {shown(raw)}"))
    raw = doc.get("kv_cache_dtype", "auto")
    if raw in KV_CACHE_DTYPES:
        values["kv_cache_dtype"] = raw
    else:
        bad.append(
            FieldViolation("engine.kv_cache_dtype", f"must be one of {', '.join(KV_CACHE_DTYPES)}, got {shown(raw)}")
        )
    raw = doc.get("quantization")
    if raw is not None:
        if isinstance(raw, str) and QUANT_NAME.fullmatch(raw):
            values["quantization"] = raw  # the framework's launcher checks it is one of its methods
        else:
            bad.append(FieldViolation("engine.quantization", f"must be a quantization method name, got {shown(raw)}"))
    raw = doc.get("chunked_prefill")
    if raw is not None:
        if isinstance(raw, bool):
            values["chunked_prefill"] = raw
        else:
            bad.append(FieldViolation("engine.chunked_prefill", f"must be true or false, got {shown(raw)}"))
    values["speculative"] = speculative(doc.get("speculative"), bad)
    _unknown(doc, ENGINE_KEYS, "engine.", bad)
    return EngineOptions(**values)


def speculative(raw: object, bad: list[FieldViolation]) -> Speculative | None:
    doc = _mapping(raw, "engine.speculative", SPECULATIVE_KEYS, bad)
    if doc is None:
        return None
    p = "engine.speculative."
    method = doc.get("method")
    if method not in SPECULATIVE_METHODS:
        what = "required" if method is None else f"unknown method {shown(method)}"
        bad.append(FieldViolation(f"{p}method", f"{what}; use one of {', '.join(SPECULATIVE_METHODS)}"))
    model = doc.get("model", "")
    needs_model = method in ("draft_model", "eagle", "eagle3")
    if needs_model and not model:
        bad.append(FieldViolation(f"{p}model", f"required for method {method}: the draft model's directory"))
    elif model and (problem := path_problem(model, "the draft model's directory") or system_dir_problem(model)):
        bad.append(FieldViolation(f"{p}model", problem))
    elif model and not needs_model:
        bad.append(FieldViolation(f"{p}model", f"method {method} drafts without a model; remove it"))
    counts = {k: _bounded(doc, k, MAX_DRAFT, p, bad) or 0 for k in ("tokens", "steps", "topk")}
    _unknown(doc, SPECULATIVE_KEYS, p, bad)
    if method not in SPECULATIVE_METHODS:
        return None
    return Speculative(str(method), model if isinstance(model, str) else "", **counts)


def runtime(raw: object, bad: list[FieldViolation]) -> Runtime:
    doc = _mapping(raw, "runtime", RUNTIME_KEYS, bad)
    if doc is None:
        return Runtime()
    image, venv = doc.get("image", ""), doc.get("venv", "")
    if image:
        from sparkd.engine.runtimes.container import image_problem

        if (problem := image_problem(image)) is not None:
            bad.append(FieldViolation("runtime.image", problem))
    if venv and (problem := path_problem(venv, "the framework's virtual environment") or system_dir_problem(venv)):
        bad.append(FieldViolation("runtime.venv", problem))
    if image and venv:
        bad.append(FieldViolation("runtime", "give image (a container) or venv (native), not both"))
    _unknown(doc, RUNTIME_KEYS, "runtime.", bad)
    ok = not any(v.field.startswith("runtime") for v in bad)
    return Runtime(str(image), str(venv)) if ok else Runtime()


def words(raw: object, field: str, bad: list[FieldViolation], *, placeholders: bool = False) -> tuple[str, ...]:
    """A list of command-line words (`extra_args`, `command`)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ARGS:
        bad.append(FieldViolation(field, f"must be a list of at most {MAX_ARGS} strings, got {shown(raw)}"))
        return ()
    before = len(bad)
    for i, word in enumerate(raw):
        if (problem := word_problem(word)) is not None:
            bad.append(FieldViolation(f"{field}[{i}]", problem))
        elif placeholders and (unknown := unknown_placeholders(word)):
            from sparkd.engine.launchers.command import PLACEHOLDERS

            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            bad.append(FieldViolation(f"{field}[{i}]", f"unknown placeholder {{{unknown[0]}}}; known: {known}"))
    return tuple(raw) if len(bad) == before else ()


def env(raw: object, bad: list[FieldViolation]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or len(raw) > MAX_ENV:
        bad.append(FieldViolation("env", f"must be a mapping of at most {MAX_ENV} NAME: value pairs, got {shown(raw)}"))
        return ()
    before, pairs = len(bad), []
    for name, value in raw.items():
        field = key_path(name, "env.")
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            bad.append(
                FieldViolation(field, "must be a variable name: letters, digits and '_', not starting with a digit")
            )
        elif name in MANAGED_ENV:
            bad.append(FieldViolation(field, f"{name} is set by sparkd from the interconnect; remove it"))
        elif not isinstance(value, str) or len(value) > 4096 or bad_char(value) is not None:
            bad.append(
                FieldViolation(field, f"must be a string of at most 4096 printable characters, got {shown(value)}")
            )
        else:
            pairs.append((name, value))
    return tuple(sorted(pairs)) if len(bad) == before else ()
