"""Deployment spec validation: every bad field is named, with the fix."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkd.engine.spec import NAME_RE, PARALLELISM_KEYS, TOP_KEYS, parse_yaml, validate, validate_name
from sparkd.errors import FieldViolation, InvalidSpec, shown
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
    from sparkd.peer.convert import spec_from_proto, spec_to_proto
    from sparkd.v1 import deployment_pb2

    with pytest.raises(InvalidSpec) as e:
        spec_from_proto(deployment_pb2.DeploymentSpec(name="demo", model="/m"))
    assert {v.field for v in e.value.violations} == {"spec.framework", "spec.parallelism"}
    good = parse_yaml(GOOD)
    assert spec_from_proto(spec_to_proto(good)) == good


# --- hostile input (findings of the attack on a running daemon) ---

DEMO = GOOD.replace("parallelism: {pipeline: 2, tensor: 1}", "parallelism: {pipeline: 1}")


def refusal(text: str) -> FieldViolation:
    with pytest.raises(InvalidSpec) as e:
        parse_yaml(text)
    assert len(e.value.violations) == 1, e.value.violations
    return e.value.violations[0]


def alias_bomb() -> str:
    """Billion laughs: nine levels of nine aliases each, 9**9 strings once built."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]" for prev, cur in zip("abcdefgh", "bcdefghi", strict=True)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def no_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the spec module ever constructs the document."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("yaml.load reached")

    monkeypatch.setattr("sparkd.engine.spec_yaml.yaml.load", refuse)


@pytest.mark.usefixtures("no_loader")
def test_alias_bomb_is_refused_before_it_is_built() -> None:
    text = alias_bomb()
    assert len(text) < 400
    v = refusal(text)
    assert v.field == "spec_yaml"
    assert "aliases" in v.description


@pytest.mark.usefixtures("no_loader")
@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("[" * 50000, "nest", id="deep-flow-sequences"),  # libyaml stops it at depth 1000 itself
        pytest.param("{a: " * 16000, "nested deeper than 16 levels", id="deep-flow-mappings"),
        pytest.param("".join(f"{' ' * i}k{i}:\n" for i in range(20)) + " " * 20 + "x: 1\n", "deeper", id="deep-block"),
        pytest.param(DEMO + "# " + "x" * (70 * 1024) + "\n", "larger than 64 KiB", id="70-KiB"),
        pytest.param(DEMO + "# " + "é" * (33 * 1024) + "\n", "larger than 64 KiB", id="counted-in-utf8-bytes"),
        pytest.param(DEMO.replace("name: demo", "name: &n demo", 1), "aliases and anchors", id="anchor-without-alias"),
        pytest.param("- &a x\n- *a\n", "aliases and anchors", id="alias"),
        pytest.param(DEMO + "---\n" + DEMO, "more than one YAML document", id="two-documents"),
        pytest.param("---\n---\n", "more than one YAML document", id="two-empty-documents"),
        pytest.param("!!python/object:os.system {}\n", "YAML tag", id="python-object"),
        pytest.param("name: !!python/name:os.system demo\n", "YAML tag", id="python-name"),
        pytest.param(DEMO.replace("model: ", "model: !local "), "YAML tag", id="local-tag"),
        pytest.param(DEMO.replace("model: ", "model: !!binary "), "YAML tag", id="binary-tag"),
    ],
)
def test_hostile_yaml_is_refused_before_it_is_built(text: str, says: str) -> None:
    v = refusal(text)
    assert v.field == "spec_yaml"
    assert says in v.description


def test_standard_tags_and_sixteen_levels_are_fine() -> None:
    spec = parse_yaml(DEMO.replace("model: ", "model: !!str ").replace("port: 8000", "port: !!int 8000"))
    assert (spec.model, spec.port) == ("/models/demo", 8000)
    v = refusal(DEMO + "x: " + "[" * 15 + "]" * 15 + "\n")  # the top mapping and 15 sequences
    assert v.field == "x"  # parsed as far as validation: the nesting is not the problem


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("port: " + "9" * 5000 + "\n", id="int-longer-than-python-converts"),
        pytest.param("? [a, b]\n: x\n", id="unhashable-key"),
        pytest.param("a: \x00\n", id="raw-nul"),
        pytest.param("a: \ud800\n", id="lone-surrogate"),
        pytest.param("a: [1, 2\n", id="unclosed"),
    ],
)
def test_loader_failures_are_invalid_spec(text: str) -> None:
    assert refusal(text).field == "spec_yaml"


def test_non_string_keys_are_violations_named_by_their_repr() -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_yaml(DEMO + "1: x\nnull: y\n2.5: z\n" + "x" * 100 + ": w\n")
    fields = [v.field for v in e.value.violations]
    assert fields[:3] == ["1", "None", "2.5"]
    assert fields[3].startswith("'xxx") and "…(102 chars)" in fields[3]
    with pytest.raises(InvalidSpec) as e:
        validate({**parse_doc(DEMO), "parallelism": {"pipeline": 1, 7: 1, ("t",): 2}})
    assert [v.field for v in e.value.violations] == ["parallelism.7", "parallelism.('t',)"]


def parse_doc(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


# --- names ---


@pytest.mark.parametrize("name", ["a", "demo", "demo-2", "llama-3-70b", "a" * 40, "a1-b2-c3"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name
    assert parse_yaml(DEMO.replace("name: demo", f"name: {name}", 1)).name == name


@pytest.mark.parametrize(
    "name",
    [
        "demo\n",
        "demo\r\n",
        "\ndemo",
        "../etc",
        "a/b",
        "",
        "A",
        "Demo",
        "a" * 41,
        "demo-",
        "de--mo",
        "-demo",
        "1demo",
        "de mo",
        "démo",
        "demo\x00",
        None,
        7,
        True,
        ["demo"],
    ],
)
def test_bad_names_are_refused_by_validate_and_validate_name(name: object) -> None:
    with pytest.raises(InvalidSpec) as e:
        validate_name(name, "deployment_name")
    assert [v.field for v in e.value.violations] == ["deployment_name"]
    with pytest.raises(InvalidSpec) as e:
        validate({**parse_doc(DEMO), "name": name, "served_model_name": "demo"})
    assert [v.field for v in e.value.violations] == ["name"]


def test_name_pattern_is_anchored_whatever_the_method() -> None:
    for bad in ("demo\n", "demo-", "Xdemo", "demo--x"):
        assert not NAME_RE.match(bad) and not NAME_RE.search(bad) and not NAME_RE.fullmatch(bad)


def test_trailing_newline_name_is_refused_in_yaml() -> None:
    assert refusal(DEMO.replace("name: demo", 'name: "demo\\n"', 1)).field == "name"


# --- model and served name ---


@pytest.mark.parametrize(
    "model",
    [
        "/models/demo\x00/x",
        "/models/\x1bdemo",
        "/models/de\u202emo",
        "/models/demo\x7f",
        "models/demo",
        "./demo",
        "/models/../etc",
        "/..",
        "//models/demo",
        "/models//demo",
        "/models/./demo",
        "/models/demo/",
        "/" + "a" * 4096,
        "/models/" + "a" * 256,
        "/models/$HOME",
        "",
        7,
        ["/m"],
    ],
)
def test_bad_model_paths(model: object) -> None:
    with pytest.raises(InvalidSpec) as e:
        validate({**parse_doc(DEMO), "model": model})
    assert [v.field for v in e.value.violations] == ["model"]


@pytest.mark.parametrize("model", ["/models/demo", "/m", "/models/Llama-3.1-70B Instruct", "/mnt/modèles/x"])
def test_good_model_paths(model: str) -> None:
    assert validate({**parse_doc(DEMO), "model": model}).model == model


def test_nul_in_yaml_escapes_is_refused() -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_yaml(
            DEMO.replace("model: /models/demo", 'model: "/models/demo\\0"').replace(
                "served_model_name: demo", 'served_model_name: "de\\0mo"'
            )
        )
    assert {v.field for v in e.value.violations} == {"model", "served_model_name"}
    assert "\x00" not in str(e.value) and "\\x00" in str(e.value)


@pytest.mark.parametrize(
    "served",
    [
        "de\x00mo",
        "de mo",
        "demo\n",
        "de\tmo",
        "de\u200bmo",
        "de\u2028mo",
        "",
        "x" * 129,
        "--trust-remote-code",
        "$HOME",
        7,
        None,
    ],
)
def test_bad_served_model_names(served: object) -> None:
    doc = {**parse_doc(DEMO), "served_model_name": served}
    if served is None:  # an explicit null means the default: the deployment's name
        assert validate(doc).served_model_name == "demo"
        return
    with pytest.raises(InvalidSpec) as e:
        validate(doc)
    assert [v.field for v in e.value.violations] == ["served_model_name"]


@pytest.mark.parametrize("served", ["meta-llama/Llama-3.1-70B-Instruct", "demo", "org:model_v2.1", "x" * 128, "模型"])
def test_good_served_model_names(served: str) -> None:
    assert validate({**parse_doc(DEMO), "served_model_name": served}).served_model_name == served


# --- numbers ---


@pytest.mark.parametrize(
    ("parallelism", "field"),
    [
        ({"pipeline": 10**30}, "parallelism.pipeline"),
        ({"pipeline": 2**32}, "parallelism.pipeline"),
        pytest.param({"pipeline": 10**5000}, "parallelism.pipeline", id="5001-digits"),
        ({"pipeline": 65}, "parallelism.pipeline"),
        ({"pipeline": 1, "tensor": 2**63}, "parallelism.tensor"),
        ({"pipeline": True}, "parallelism.pipeline"),
        ({"pipeline": 2.0}, "parallelism.pipeline"),
        ({"pipeline": "2"}, "parallelism.pipeline"),
        ({"pipeline": 8, "tensor": 9}, "parallelism"),
    ],
)
def test_bad_parallelism(parallelism: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        validate({**parse_doc(DEMO), "parallelism": parallelism})
    assert [v.field for v in e.value.violations] == [field]
    assert len(str(e.value)) < 300


def test_largest_parallelism() -> None:
    spec = validate({**parse_doc(DEMO), "parallelism": {"pipeline": 8, "tensor": 8}})
    assert spec.world_size == 64
    assert validate({**parse_doc(DEMO), "parallelism": {"pipeline": 64}}).world_size == 64


@pytest.mark.parametrize(
    ("port", "says"),
    [
        (True, "from 1 to 65535"),
        (False, "from 1 to 65535"),
        (0, "from 1 to 65535"),
        (65536, "from 1 to 65535"),
        (10**30, "from 1 to 65535"),
        ("8000", "from 1 to 65535"),
        (7471, "peer port"),
        (29501, "rendezvous range"),
        (29564, "rendezvous range"),
        (7473, "pairing port"),
    ],
)
def test_bad_ports(port: object, says: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        validate({**parse_doc(DEMO), "port": port})
    assert [v.field for v in e.value.violations] == ["port"]
    assert says in e.value.violations[0].description


def test_true_as_port_in_yaml() -> None:
    assert refusal(DEMO.replace("port: 8000", "port: true")).field == "port"


# --- bounded errors ---


def trailer_bytes(error: InvalidSpec) -> int:
    """About what gRPC puts in trailing metadata for `error`: grpc-message and the base64 status details."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain="sparkd.dev", metadata=error.metadata)
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )
    status = status_pb2.Status(code=3, message=error.message)
    for detail in (info, bad):
        status.details.add().Pack(detail)
    grpc_message = sum(1 if 0x20 <= b <= 0x7E and b != ord("%") else 3 for b in error.message.encode())
    return grpc_message + len(base64.b64encode(status.SerializeToString()))


def test_huge_bad_values_are_not_echoed_whole() -> None:
    doc: dict[Any, Any] = {**parse_doc(DEMO), "framework": "x" * 20000}
    doc.update({f"unknown{i}": i for i in range(10000)})
    with pytest.raises(InvalidSpec) as e:
        validate(doc)
    error = e.value
    assert len(str(error).encode()) < 8192
    assert len(error.violations) <= 21
    assert error.violations[0].field == "framework"  # the real problem comes before the flood of unknown keys
    assert "…(20002 chars)" in error.violations[0].description
    assert error.violations[-1].field.endswith(" more)")
    assert len(error.metadata["field"]) <= 128
    assert trailer_bytes(error) < 6 * 1024


def test_huge_bad_value_in_yaml() -> None:
    v = refusal(DEMO.replace("framework: vllm", "framework: " + "x" * 60000))
    assert v.field == "framework" and len(v.description) < 200


@pytest.mark.parametrize("char", ["x", "é", "模", "\U0001f600"])
def test_invalid_spec_stays_bounded_whatever_it_is_given(char: str) -> None:
    error = InvalidSpec([FieldViolation(char * 10000, char * 100000) for _ in range(1000)])
    assert len(error.violations) <= 21
    assert all(len(v.field) <= 128 and len(v.description) <= 512 for v in error.violations)
    assert len(error.metadata["field"]) <= 128
    assert len(error.message.encode()) <= 512
    assert trailer_bytes(error) < 6 * 1024


def test_invalid_spec_cut_short_keeps_its_count_when_rewrapped() -> None:
    error = InvalidSpec([FieldViolation(f"f{i}", "bad") for i in range(50)])
    assert len(error.violations) == 21
    assert error.violations[-1].field == "(30 more)"
    again = InvalidSpec([FieldViolation(f"spec.{v.field}", v.description) for v in error.violations])
    assert [v.field for v in again.violations] == [f"spec.f{i}" for i in range(20)] + ["(30 more)"]
    few = InvalidSpec([FieldViolation("a", "b")])
    assert few.violations == [FieldViolation("a", "b")] and str(few) == "invalid spec: a: b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("demo", "'demo'"),
        ("a\x00\n", "'a\\x00\\n'"),
        (7, "7"),
        (None, "None"),
        ("x" * 100, "'" + "x" * 59 + "…(102 chars)"),
        pytest.param(10**5000, "<16610-bit integer>", id="5001-digits"),
    ],
)
def test_shown(value: object, expected: str) -> None:
    assert shown(value) == expected


def test_shown_bounds_containers_and_bad_reprs() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert shown(Hostile()).startswith("<Hostile")
    nested: list[Any] = []
    for _ in range(10000):
        nested = [nested]
    assert len(shown(nested)) < 100
    assert len(shown(list(range(10**6)), limit=20)) < 40
    assert len(shown("x" * 1000, limit=200)) == 200 + len("…(1002 chars)")


# --- never anything but InvalidSpec ---

HOSTILE_TEXT = [
    "demo\n",
    "\x00",
    "\x7f",
    "\u202e",
    "\ud800",
    "../etc",
    "//",
    "-",
    "--",
    "$HOME",
    "%n",
    "'",
    '"',
    "\\",
    "x" * 5000,
    "",
    " ",
    "\t",
    "\u2028",
    "\ufeff",
    "A",
    "1",
]
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.sampled_from([0, 1, 64, 65, 7471, 29501, 65535, 65536, 2**31, 2**32, 2**63, 10**30])
    | st.just(5000).map(lambda digits: 10**digits)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=50)
    | st.sampled_from(HOSTILE_TEXT)
    | st.sampled_from([f.value for f in Framework])
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(PARALLELISM_KEYS) | st.text(max_size=5) | st.integers(), children, max_size=4)
    ),
    max_leaves=10,
)
keys: st.SearchStrategy[Any] = (
    st.sampled_from(TOP_KEYS)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
    | st.integers()
    | st.none()
    | st.booleans()
    | st.tuples(st.integers())
    | st.sampled_from(HOSTILE_TEXT)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=8), st.dictionaries(st.sampled_from(TOP_KEYS), values, max_size=6))
def test_validate_never_raises_anything_but_invalid_spec(doc: dict[Any, Any], top: dict[str, Any]) -> None:
    for candidate in (doc, {**parse_doc(GOOD), **top}, {**parse_doc(GOOD), **doc}):
        try:
            spec = validate(candidate)
        except InvalidSpec as e:
            assert len(str(e).encode()) <= 512
            assert 1 <= len(e.violations) <= 21
        else:
            assert NAME_RE.fullmatch(spec.name) and 1 <= spec.world_size <= 64 and 1 <= spec.port <= 65535


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("[]{}:,&*!|>-?#%'\"\\ \t\nax0.~@`\x00\x85\ufeff")), max_size=200))
def test_parse_yaml_never_raises_anything_but_invalid_spec(text: str) -> None:
    try:
        parse_yaml(text)
    except InvalidSpec as e:
        assert len(str(e).encode()) <= 512


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=8), st.dictionaries(st.sampled_from(TOP_KEYS), values, max_size=6))
def test_dumped_hostile_documents_are_valid_or_invalid_spec(doc: dict[Any, Any], top: dict[str, Any]) -> None:
    for candidate in (doc, {**parse_doc(GOOD), **top}):
        try:
            text = yaml.safe_dump(candidate, allow_unicode=bool(len(candidate) % 2))
        except (yaml.representer.RepresenterError, ValueError):  # tuples, and ints too long to print
            continue
        try:
            parse_yaml(text)
        except InvalidSpec as e:
            assert len(str(e).encode()) <= 512


def test_engine_options_are_validated_all_at_once() -> None:
    doc = {**parse_doc(DEMO), "engine": {"context_length": 0, "memory_fraction": 2, "kv_cache_dtype": "int2", "x": 1}}
    with pytest.raises(InvalidSpec) as e:
        validate(doc)
    assert [v.field for v in e.value.violations] == [
        "engine.context_length",
        "engine.memory_fraction",
        "engine.kv_cache_dtype",
        "engine.x",
    ]


def test_engine_options_survive_the_proto_round_trip() -> None:
    from sparkd.peer.convert import spec_from_proto, spec_to_proto

    doc = {**parse_doc(DEMO), "engine": {"context_length": 8192, "concurrency": 4, "memory_fraction": 0.9}}
    spec = validate(doc)
    assert (spec.engine.context_length, spec.engine.concurrency, spec.engine.memory_fraction) == (8192, 4, 0.9)
    assert spec_from_proto(spec_to_proto(spec)) == spec
