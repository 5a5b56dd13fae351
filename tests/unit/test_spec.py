"""Deployment spec validation: every bad field is named, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkd.engine.spec import parse_yaml
from sparkd.errors import InvalidSpec
from sparkd.model.deployment import Framework

GOOD = """
name: demo
framework: vllm
model: /models/demo
served_model_name: demo
parallelism: {pipeline: 2, tensor: 1}
port: 8000
"""


def test_demo_example_parses() -> None:
    with open(Path(__file__).parents[2] / "examples/demo.yaml") as f:
        spec = parse_yaml(f.read())
    assert spec.framework is Framework.VLLM
    assert (spec.pipeline, spec.tensor, spec.world_size, spec.port) == (2, 1, 2, 8000)


def test_defaults() -> None:
    spec = parse_yaml("name: x\nframework: sglang\nmodel: /m\nparallelism: {pipeline: 1}\n")
    assert (spec.served_model_name, spec.tensor, spec.port) == ("x", 1, 8000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("framework: vllm", "framework: ollama"), "framework"),
        (("pipeline: 2", "pipeline: 0"), "parallelism.pipeline"),
        (("tensor: 1", "tensor: -1"), "parallelism.tensor"),
        (("port: 8000", "port: 8000\ngpus: 2"), "gpus"),
        (("model: /models/demo\n", ""), "model"),
        (("model: /models/demo", "model: models/demo"), "model"),
        (("name: demo", "name: Demo_1"), "name"),
        (("{pipeline: 2, tensor: 1}", "{pipeline: 2, tensor: 1, expert: 2}"), "parallelism.expert"),
        (("port: 8000", "port: 70000"), "port"),
    ],
)
def test_bad_spec_names_the_field(change: tuple[str, str], field: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(InvalidSpec) as e:
        parse_yaml(text)
    assert [v.field for v in e.value.violations] == [field]
    assert e.value.metadata["field"] == field


def test_all_violations_reported_in_one_pass() -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_yaml("framework: x\nparallelism: {pipeline: 0}\nbogus: 1\n")
    fields = {v.field for v in e.value.violations}
    assert fields == {"bogus", "name", "framework", "model", "parallelism.pipeline"}


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_yaml("- a\n- b\n")
    assert e.value.violations[0].field == "spec_yaml"


def test_structured_spec_uses_the_same_rules_with_spec_field_paths() -> None:
    from sparkd.api.convert import spec_from_proto, spec_to_proto
    from sparkd.v1 import deployment_pb2

    with pytest.raises(InvalidSpec) as e:
        spec_from_proto(deployment_pb2.DeploymentSpec(name="demo", model="/m"))
    assert {v.field for v in e.value.violations} == {"spec.framework", "spec.parallelism"}
    good = parse_yaml(GOOD)
    assert spec_from_proto(spec_to_proto(good)) == good
