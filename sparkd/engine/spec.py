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

import dataclasses
from collections.abc import Mapping
from typing import Any

from sparkd.engine import spec_engine
from sparkd.engine.launchers import launcher_for
from sparkd.engine.spec_fields import (
    MAX_PARALLEL,
    NAME_RE,
    NAME_RULE,
    count,
    integer,
    key_path,
    name_problem,
    path_problem,
    served_problem,
    system_dir_problem,
    validate_name,
)
from sparkd.errors import FieldViolation, InvalidSpec, shown
from sparkd.model.deployment import RENDEZVOUS_PORTS, DeploymentSpec, EngineOptions, Framework, LaunchMode

__all__ = ["NAME_RE", "NAME_RULE", "parse_yaml", "spec_document", "validate", "validate_name"]

TOP_KEYS = (
    "name",
    "framework",
    "mode",
    "runtime",
    "model",
    "served_model_name",
    "parallelism",
    "port",
    "engine",
    "extra_args",
    "env",
    "command",
)
PARALLELISM_KEYS = ("pipeline", "tensor")
DEFAULT_PORT = 8000

MAX_SPEC_BYTES = 64 * 1024
MAX_DEPTH = 16
# Ports the head itself needs, so the deployment's API cannot take them.
RESERVED_PORTS = {
    7471: "the sparkd peer port (daemon-to-daemon traffic)",
    7472: "the sparkd discovery port",
    7473: "the sparkd pairing port",
} | {p: "in the rendezvous range 29501-29564 that sparkd hands out (--master-port)" for p in RENDEZVOUS_PORTS}


def parse_yaml(text: str) -> DeploymentSpec:
    """Parses a spec document, bounded and checked before it is constructed (`spec_yaml`)."""
    from sparkd.engine import spec_yaml  # PyYAML is loaded only when a document is parsed

    return validate(spec_yaml.load(text))


def validate(doc: Mapping[Any, Any]) -> DeploymentSpec:
    """Validates a spec mapping (YAML keys); raises InvalidSpec listing every bad field.

    Never raises anything else, whatever `doc` holds.
    """
    if not isinstance(doc, Mapping):
        raise InvalidSpec.one("spec", f"must be a mapping with keys {', '.join(TOP_KEYS)}; got {shown(doc)}")
    bad: list[FieldViolation] = []

    name = doc.get("name")
    if (problem := name_problem(name)) is not None:
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
    if (problem := path_problem(model) or system_dir_problem(str(model))) is not None:
        bad.append(FieldViolation("model", problem))

    served = doc.get("served_model_name")
    if served is not None and (problem := served_problem(served)) is not None:
        bad.append(FieldViolation("served_model_name", problem))

    sizes = {"pipeline": 0, "tensor": 0}
    par = doc.get("parallelism")
    if not isinstance(par, Mapping):
        got = "" if par is None else f"; got {shown(par)}"
        bad.append(FieldViolation("parallelism", f"required: a mapping like {{pipeline: 2, tensor: 1}}{got}"))
    else:
        for key in PARALLELISM_KEYS:
            sizes[key], problem = count(par.get(key, 1 if key == "tensor" else None))
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
                    FieldViolation(key_path(key, "parallelism."), "unknown key; known keys are pipeline, tensor")
                )

    raw_port = doc.get("port", DEFAULT_PORT)
    port = integer(raw_port)
    if port is None or not 1 <= port <= 65535:
        bad.append(FieldViolation("port", f"must be a TCP port from 1 to 65535, got {shown(raw_port)}"))
    elif port in RESERVED_PORTS:
        bad.append(
            FieldViolation(
                "port", f"{port} is {RESERVED_PORTS[port]}, which the head needs; the API port must be another"
            )
        )

    mode = LaunchMode.NATIVE
    raw_mode = doc.get("mode", "native")
    modes = {m.value: m for m in LaunchMode}
    if not isinstance(raw_mode, str) or raw_mode not in modes:
        bad.append(FieldViolation("mode", f"must be one of {', '.join(modes)}, got {shown(raw_mode)}"))
    else:
        mode = modes[raw_mode]  # a str here
        if mode is LaunchMode.RAY and framework not in (Framework.VLLM, None):
            bad.append(FieldViolation("mode", f"ray is a vLLM launch mode; {framework.value} has only native"))
    engine = spec_engine.engine(doc.get("engine"), bad)
    runtime = spec_engine.runtime(doc.get("runtime"), bad)
    extra_args = spec_engine.words(doc.get("extra_args"), "extra_args", bad)
    env = spec_engine.env(doc.get("env"), bad)
    command = spec_engine.words(doc.get("command"), "command", bad, placeholders=True)
    if framework is Framework.COMMAND and not command and not any(v.field.startswith("command") for v in bad):
        bad.append(
            FieldViolation(
                "command",
                "required for framework command: the argv every rank runs, e.g. [/opt/x/bin/serve, --port, '{port}']",
            )
        )
    elif framework is Framework.COMMAND and command and not runtime.container and not command[0].startswith("/"):
        bad.append(
            FieldViolation(
                "command[0]", f"must be an absolute path (natively nothing is searched); got {shown(command[0])}"
            )
        )
    elif framework not in (Framework.COMMAND, None) and doc.get("command") is not None:
        bad.append(
            FieldViolation("command", f"is for framework command only; {framework.value} plans its own command line")
        )

    # Unknown keys last: a flood of them must not push the real problems out of the (bounded) error.
    known = f"unknown key; known keys are {', '.join(TOP_KEYS)}"
    for key in doc:
        if key not in TOP_KEYS:
            bad.append(FieldViolation(key_path(key), known))

    if runtime.container:
        bad += _container_problems(model, engine, env)
    if framework is None:
        raise InvalidSpec(bad)
    # What only the framework knows (its methods, its flags) is checked too, on the spec as far as it is
    # valid (placeholders stand in for the bad values), so one answer names every bad field.
    spec = DeploymentSpec(
        name=name if isinstance(name, str) and not _has(bad, "name") else "invalid",
        framework=framework,
        model=model if isinstance(model, str) and not _has(bad, "model") else "/invalid",
        served_model_name=served if isinstance(served, str) and not _has(bad, "served_model_name") else "",
        pipeline=sizes["pipeline"] or 1,
        tensor=sizes["tensor"] or 1,
        port=port if port is not None and not _has(bad, "port") else DEFAULT_PORT,
        engine=engine,
        mode=mode,
        runtime=runtime,
        extra_args=extra_args,
        env=env,
        command=command,
    )
    bad += launcher_for(spec).check(spec)
    if bad:
        raise InvalidSpec(bad)
    if not isinstance(served, str):
        # trtllm-serve has no served-name option: it serves the model under the path it was given.
        default = spec.model if framework is Framework.TRTLLM else spec.name
        spec = dataclasses.replace(spec, served_model_name=default)
    return spec


def _container_problems(model: object, engine: EngineOptions, env: tuple[tuple[str, str], ...]) -> list[FieldViolation]:
    """What a container runtime cannot take: paths docker's --mount cannot say, variables of the CLI itself."""
    from sparkd.engine.runtimes.container import env_problem, mount_problem

    bad = []
    draft = engine.speculative.model if engine.speculative else ""
    for field, path in (("model", model), ("engine.speculative.model", draft)):
        if isinstance(path, str) and path and (problem := mount_problem(path)) is not None:
            bad.append(FieldViolation(field, problem))
    for name, _ in env:
        problem = env_problem(name)
        if problem is None and name.startswith("LD_"):
            problem = f"{name} would reach the docker CLI itself (which holds the docker group); set it in the image"
        if problem is not None:
            bad.append(FieldViolation(f"env.{name}", problem))
    return bad


def _has(bad: list[FieldViolation], field: str) -> bool:
    return any(v.field == field for v in bad)


def spec_document(spec: DeploymentSpec) -> dict[str, Any]:
    """The spec as its YAML mapping (defaults left out), which `validate` reads back to the same spec."""
    doc: dict[str, Any] = {
        "name": spec.name,
        "framework": spec.framework.value,
        "model": spec.model,
        "served_model_name": spec.served_model_name,
        "parallelism": {"pipeline": spec.pipeline, "tensor": spec.tensor},
        "port": spec.port,
    }
    if spec.mode is not LaunchMode.NATIVE:
        doc["mode"] = spec.mode.value
    runtime = {k: v for k, v in dataclasses.asdict(spec.runtime).items() if v}
    if runtime:
        doc["runtime"] = runtime
    engine = {k: v for k, v in dataclasses.asdict(spec.engine).items() if v is not None and k != "speculative"}
    engine = {k: v for k, v in engine.items() if not (k == "kv_cache_dtype" and v == "auto") and v != ""}
    if spec.engine.speculative is not None:
        engine["speculative"] = {k: v for k, v in dataclasses.asdict(spec.engine.speculative).items() if v}
    if engine:
        doc["engine"] = engine
    for key in ("extra_args", "command"):
        if getattr(spec, key):
            doc[key] = list(getattr(spec, key))
    if spec.env:
        doc["env"] = dict(spec.env)
    return doc
