"""Deployment spec validation: YAML or a mapping in, a DeploymentSpec or every bad field out.

Unknown keys are refused (a typo must not fall back to a default), and all violations
found are reported in one pass, each naming its field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from sparkd.errors import FieldViolation, InvalidSpec
from sparkd.model.deployment import DeploymentSpec, Framework

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
TOP_KEYS = ("name", "framework", "model", "served_model_name", "parallelism", "port")
PARALLELISM_KEYS = ("pipeline", "tensor")
DEFAULT_PORT = 8000


def parse_yaml(text: str) -> DeploymentSpec:
    """Parses a spec document."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidSpec.one("spec_yaml", f"not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidSpec.one("spec_yaml", "must be a YAML mapping with keys " + ", ".join(TOP_KEYS))
    return validate(doc)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def validate(doc: Mapping[str, Any]) -> DeploymentSpec:
    """Validates a spec mapping (YAML keys); raises InvalidSpec listing every bad field."""
    bad: list[FieldViolation] = []
    for key in doc:
        if key not in TOP_KEYS:
            bad.append(FieldViolation(str(key), f"unknown key; known keys are {', '.join(TOP_KEYS)}"))

    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        bad.append(FieldViolation("name", "required: 1-40 lowercase letters, digits or '-', starting with a letter"))

    framework_text = doc.get("framework")
    framework = None
    try:
        framework = Framework(framework_text)
    except ValueError:
        choices = ", ".join(f.value for f in Framework)
        what = "required" if framework_text in (None, "") else f"unknown framework {framework_text!r}"
        bad.append(FieldViolation("framework", f"{what}; use one of {choices}"))

    model = doc.get("model")
    if not isinstance(model, str) or not model:
        bad.append(FieldViolation("model", "required: the absolute path of the model directory (holds config.json)"))
    elif not model.startswith("/"):
        bad.append(FieldViolation("model", f"must be an absolute path, got {model!r}"))

    served = doc.get("served_model_name", name)
    if served is not None and (not isinstance(served, str) or not served):
        bad.append(FieldViolation("served_model_name", "must be a non-empty string"))

    sizes = {"pipeline": 0, "tensor": 0}
    par = doc.get("parallelism")
    if not isinstance(par, Mapping):
        bad.append(FieldViolation("parallelism", "required: a mapping like {pipeline: 2, tensor: 1}"))
    else:
        for key in par:
            if key not in PARALLELISM_KEYS:
                bad.append(FieldViolation(f"parallelism.{key}", "unknown key; known keys are pipeline, tensor"))
        for key in PARALLELISM_KEYS:
            value = _int(par.get(key, 1 if key == "tensor" else None))
            if value is None or value < 1:
                bad.append(FieldViolation(f"parallelism.{key}", f"must be an integer >= 1, got {par.get(key)!r}"))
            else:
                sizes[key] = value

    port = _int(doc.get("port", DEFAULT_PORT))
    if port is None or not 1 <= port <= 65535:
        bad.append(FieldViolation("port", f"must be a TCP port from 1 to 65535, got {doc.get('port')!r}"))

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
    )
