"""The deployment spec's framework keys: every bad field named at once (the framework's own rules too),
and a spec surviving every way it travels (its YAML mapping in records, its proto between peers)."""

from __future__ import annotations

from typing import Any

import pytest

from sparkd.engine.spec import parse_yaml, spec_document, validate
from sparkd.errors import InvalidSpec
from sparkd.model.deployment import Framework, LaunchMode, Speculative
from sparkd.peer.convert import spec_from_proto, spec_to_proto
from tests.unit.test_launch_golden_specs import SEED

BASE: dict[str, Any] = {"name": "d", "framework": "vllm", "model": "/models/m", "parallelism": {"pipeline": 2}}


def fields(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSpec) as e:
        validate(doc)
    return {v.field: v.description for v in e.value.violations}


def test_one_answer_names_every_bad_field_the_frameworks_own_rules_included() -> None:
    bad = fields(
        BASE
        | {
            "name": "Bad Name",
            "mode": "slurm",
            "runtime": {"image": "-evil", "venv": "relative"},
            "engine": {"quantization": "fp4", "chunked_prefill": "yes", "speculative": {"method": "draft_model"}},
            "extra_args": ["--tensor-parallel-size=2", "ok", "$HOME"],
            "env": {"NCCL_SOCKET_IFNAME": "eth0", "1BAD": "x", "GOOD": "\x1b[31m"},
            "command": ["/bin/true"],
        }
    )
    assert set(bad) == {
        "name",
        "mode",
        "runtime.image",
        "runtime.venv",
        "runtime",
        "engine.quantization",
        "engine.chunked_prefill",
        "engine.speculative.model",
        "engine.speculative.tokens",
        "extra_args[2]",
        "env.NCCL_SOCKET_IFNAME",
        "env.1BAD",
        "env.GOOD",
        "command",
    }
    assert "modelopt_fp4" in bad["engine.quantization"]  # the fix is named
    assert "set by sparkd from the interconnect" in bad["env.NCCL_SOCKET_IFNAME"]


def test_a_managed_flag_in_extra_args_names_the_spec_key_that_sets_it() -> None:
    bad = fields(BASE | {"extra_args": ["--max-model-len=4096", "--node_rank", "1"]})
    assert bad["extra_args[0]"].startswith("--max-model-len is set by sparkd from engine.context_length")
    assert "--node-rank is set by sparkd" in bad["extra_args[1]"]  # vLLM reads underscores as dashes


def test_ray_is_a_vllm_mode_only() -> None:
    assert "ray is a vLLM launch mode" in fields(BASE | {"framework": "sglang", "mode": "ray"})["mode"]
    assert validate(BASE | {"mode": "ray"}).mode is LaunchMode.RAY


def test_sglang_needs_steps_topk_and_tokens_together() -> None:
    doc = BASE | {"framework": "sglang", "engine": {"speculative": {"method": "eagle", "model": "/m/e", "steps": 5}}}
    problem = fields(doc)["engine.speculative"]
    assert "engine.speculative.topk" in problem and "engine.speculative.tokens" in problem


def test_trtllm_refuses_what_its_pinned_version_lacks() -> None:
    bad = fields(
        BASE | {"framework": "trtllm", "engine": {"kv_cache_dtype": "fp8"}, "extra_args": ["--engine_dir", "/e"]}
    )
    assert "no --kv_cache_dtype" in bad["engine.kv_cache_dtype"]
    assert "never had --engine_dir" in bad["extra_args[0]"]


def test_command_takes_an_absolute_argv_with_known_placeholders_only() -> None:
    doc = BASE | {"framework": "command"}
    assert "required for framework command" in fields(doc)["command"]
    assert "absolute path" in fields(doc | {"command": ["serve"]})["command[0]"]
    # Placeholders are words, never format fields: "{rank.__class__}" is kept as written, not evaluated.
    assert validate(doc | {"command": ["/x", "{rank.__class__}"]}).command[1] == "{rank.__class__}"
    assert "unknown placeholder {secret}" in fields(doc | {"command": ["/x", "{secret}"]})["command[1]"]
    spec = validate(doc | {"command": ["/x", "--port", "{port}"]})
    assert spec.framework is Framework.COMMAND and spec.command == ("/x", "--port", "{port}")


@pytest.mark.parametrize("key", sorted(SEED))
def test_every_seed_spec_survives_its_record_and_the_peer_protocol(key: str) -> None:
    spec = parse_yaml(SEED[key])
    assert validate(spec_document(spec)) == spec
    assert spec_from_proto(spec_to_proto(spec)) == spec


def test_the_sglang_seed_adds_the_draft_token_count_it_lacked() -> None:
    spec = parse_yaml(SEED["sglang-eagle"])
    assert spec.engine.speculative == Speculative("eagle3", "/models/eagle3-llama3.1-70b", tokens=64, steps=5, topk=8)


@pytest.mark.parametrize(
    "path", ["/var/run/docker.sock", "/run/sparkd", "/var/lib/sparkd", "/etc", "/root/m", "/tmp/m"]
)
def test_a_model_in_a_system_or_private_directory_is_refused(path: str) -> None:
    assert "must not be under" in fields(BASE | {"model": path})["model"]
    draft = {"engine": {"speculative": {"method": "draft_model", "model": path, "tokens": 5}}}
    assert "must not be under" in fields(BASE | draft)["engine.speculative.model"]


def test_a_container_spec_names_what_docker_cannot_take_instead_of_failing_later() -> None:
    image = {"runtime": {"image": "nvcr.io/nvidia/vllm:26.05-py3"}}
    bad = fields(BASE | image | {"model": "/models/a,b", "env": {"DOCKER_HOST": "tcp://x", "LD_PRELOAD": "/x.so"}})
    assert "--mount" in bad["model"]
    assert "docker CLI's own setting" in bad["env.DOCKER_HOST"] and "docker CLI itself" in bad["env.LD_PRELOAD"]


def test_what_a_container_cannot_run_yet_is_refused_at_validation() -> None:
    image = {"runtime": {"image": "nvcr.io/nvidia/vllm:26.05-py3"}}
    assert "share no /tmp/ray" in fields(BASE | image | {"mode": "ray"})["runtime.image"]
    assert "runs natively for now" in fields(BASE | image | {"framework": "trtllm"})["runtime.image"]
    assert validate(BASE | image | {"framework": "trtllm", "parallelism": {"pipeline": 1}}).runtime.container
