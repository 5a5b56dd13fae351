"""The memory planner (sparkd.model.memory, sparkd.model.model_config) on Meta's published Llama 3.1 configs.

The configs in tests/data/model-configs are the config.json files published with the weights. The
published figures the counts are checked against: 8.03 B, 70.6 B and 405.9 B parameters; 16.06, 141.1 and
811.7 GB of BF16 weights. A node is a GB10 Spark as the lab's /proc/meminfo fixture has it: MemTotal
127600748 kB, 130.66 GB.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from sparkd.model.memory import ACTIVATION_RESERVE, gb, model_weight_bytes, pipeline_split, plan_memory, render
from sparkd.model.model_config import ModelShape, NumberFormat, Precision, precision_from_config, shape_from_config

CONFIGS = Path(__file__).parents[1] / "data" / "model-configs"
SPARK = 127600748 * 1024  # bytes
NVFP4 = {"quant_method": "modelopt", "quant_algo": "NVFP4"}


def config(size: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CONFIGS / f"llama-3.1-{size}-instruct.json").read_text())
    doc.update(changes)
    return doc


def sparks(n: int) -> list[tuple[str, int]]:
    return [(f"spark{i + 1}", SPARK) for i in range(n)]


def plan(doc: dict[str, Any], pipeline: int = 1, tensor: int = 1, context: int = 131072, **kw: Any) -> Any:
    return plan_memory(
        shape_from_config(doc),
        precision_from_config(doc),
        pipeline=pipeline,
        tensor=tensor,
        context_length=context,
        concurrency=kw.pop("concurrency", 1),
        nodes=sparks(pipeline * tensor),
        **kw,
    )


@pytest.mark.parametrize(
    ("size", "parameters", "weights_gb", "kv_per_token"),
    [("8b", 8.03e9, 16.06, 131072), ("70b", 70.6e9, 141.1, 327680), ("405b", 405.9e9, 811.7, 516096)],
)
def test_published_figures(size: str, parameters: float, weights_gb: float, kv_per_token: int) -> None:
    p = plan(config(size), pipeline=1, context=1)
    assert p.parameters == pytest.approx(parameters, rel=0.02)
    assert p.weight_bytes / 1e9 == pytest.approx(weights_gb, rel=0.02)
    assert p.kv_bytes_per_token == kv_per_token  # 2 x layers x 8 KV heads x 128 x 2 bytes
    assert p.precision == Precision(NumberFormat.BF16, NumberFormat.BF16)


def test_exact_parameter_counts() -> None:
    """Embedding, layers of q, k, v, o, gate, up, down and 2 norms, final norm, lm_head: exactly half the
    BF16 checkpoints' total_size in model.safetensors.index.json (16,060,522,496 and 141,107,412,992 bytes)."""
    shape = shape_from_config(config("8b"))
    assert shape == ModelShape(32, 4096, 32, 8, 128, 14336, 128256, max_position=131072)
    assert shape.parameters() == 8_030_261_248
    assert shape_from_config(config("70b")).parameters() == 70_553_706_496


def test_70b_bf16_on_one_node_is_refused_with_the_shortfall() -> None:
    p = plan(config("70b"))
    assert not p.fits
    assert p.refusals == [
        "rank 0 on spark1: weights 141.1 GB + reserve 2.0 GB exceed the budget of 120.2 GB (0.92 of 130.7 GB) "
        "by 22.9 GB; use more nodes (pipeline) or a smaller precision"
    ]
    assert p.nodes[0].kv_capacity_tokens == 0


def test_70b_bf16_on_two_nodes_fits() -> None:
    p = plan(config("70b"), pipeline=2)
    assert p.fits and p.refusals == []
    first, last = p.nodes
    assert (first.layers, last.layers) == ((0, 40), (40, 80))
    assert (first.stage, last.stage) == (0, 1)
    # 40 layers of q, o (8192 x 8192), k, v (8192 x 1024), gate, up, down (8192 x 28672) and two norms, and
    # the embedding (first) or the lm_head and the final norm (last), 2 bytes each
    layer = 2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    assert first.weight_bytes == 2 * (40 * layer + 128256 * 8192) == 70_553_698_304
    assert last.weight_bytes == first.weight_bytes + 2 * 8192
    assert first.kv_bytes_per_token == last.kv_bytes_per_token == 163840  # 160 KiB: half the layers
    assert first.budget_bytes == int(0.92 * SPARK)
    assert first.kv_capacity_tokens == (first.budget_bytes - first.weight_bytes - ACTIVATION_RESERVE) // 163840
    assert first.kv_capacity_tokens == 290_871
    lines = render(p)
    assert (
        lines[0] == "model: 70.55 B parameters, weights 141.1 GB (bf16), KV cache 320 KiB/token (kv_cache_dtype auto)"
    )
    assert lines[3].split() == [
        *["0", "spark1", "0-39", "(40)", "70.6", "GB", "160", "KiB", "290,871", "tokens"],
        *["120.2", "GB", "of", "130.7", "GB", "fits"],
    ]


def nvfp4_405b(context: int) -> Any:
    doc = config("405b", quantization_config=NVFP4)
    return plan(doc, pipeline=2, context=context, memory_fraction=0.95, kv_cache_dtype="fp8")


def test_405b_nvfp4_on_two_nodes_fits_8k_but_not_128k_context() -> None:
    """Each rank: 63 layers of 4.5-bit linear weights (112.96 GB) and a BF16 embedding or lm_head (4.2 GB),
    117.2 GB of a 124.1 GB budget; with the 2 GB reserve 4.8 GB are left for a 126 KiB/token FP8 KV cache:
    about 38,400 tokens."""
    refused = nvfp4_405b(131072)
    assert refused.precision == Precision(NumberFormat.NVFP4, NumberFormat.BF16)
    assert refused.weight_bytes / 1e9 == pytest.approx(234.3, abs=0.05)
    first, last = refused.nodes
    assert (first.layers, last.layers) == ((0, 63), (63, 126))
    assert gb(first.weight_bytes) == gb(last.weight_bytes) == "117.2 GB"
    assert first.kv_bytes_per_token == 2 * 63 * 8 * 128 * 1 == 129024
    assert (first.kv_capacity_tokens, last.kv_capacity_tokens) == (38_443, 38_442)
    assert refused.refusals == [
        f"rank {n.rank} on {n.name}: KV cache holds {n.kv_capacity_tokens:,} tokens, the spec needs 131,072 "
        "(context 131072 x concurrency 1): short by 12.0 GB; lower context_length or concurrency or raise "
        "memory_fraction"
        for n in refused.nodes
    ]
    accepted = nvfp4_405b(8192)
    assert accepted.fits
    assert [n.kv_capacity_tokens for n in accepted.nodes] == [38_443, 38_442]


def test_kv_refusal_suggests_fp8_when_the_cache_is_16_bit() -> None:
    p = plan(config("70b"), pipeline=2, context=131072, concurrency=4)
    assert not p.fits
    assert p.refusals[0].startswith("rank 0 on spark1: KV cache holds 290,871 tokens, the spec needs 524,288")
    assert p.refusals[0].endswith(
        "short by 38.2 GB; lower context_length or concurrency, use kv_cache_dtype fp8, or raise memory_fraction"
    )


@pytest.mark.parametrize(
    ("layers", "stages", "sizes"),
    [
        (126, 4, [31, 32, 32, 31]),  # the remainder goes to the stages just before the last
        (80, 2, [40, 40]),
        (81, 2, [41, 40]),
        (10, 4, [2, 3, 3, 2]),
        (11, 4, [3, 3, 3, 2]),
        (7, 7, [1] * 7),
        (5, 1, [5]),
    ],
)
def test_pipeline_split_is_vllms(layers: int, stages: int, sizes: list[int]) -> None:
    bounds = pipeline_split(layers, stages)
    assert [end - start for start, end in bounds] == sizes
    assert bounds[0][0] == 0 and bounds[-1][1] == layers
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_pipeline_beyond_the_layers_is_an_error() -> None:
    with pytest.raises(ValueError, match="pipeline"):
        pipeline_split(4, 5)


def test_tensor_parallelism_divides_weights_and_kv_heads() -> None:
    one = plan(config("70b"), pipeline=2, context=1).nodes[0]
    two = plan(config("70b"), pipeline=2, tensor=2, context=1).nodes
    assert [n.stage for n in two] == [0, 0, 1, 1]  # rank r is stage r // tensor
    assert two[0].kv_bytes_per_token * 2 == one.kv_bytes_per_token  # 4 of the 8 KV heads each
    norms = 40 * 2 * 8192 * 2  # replicated on every tensor rank
    assert two[0].weight_bytes == (one.weight_bytes - norms) // 2 + norms
    # tensor 16 > 8 KV heads: each rank keeps one (replicated), not half of one
    shape = shape_from_config(config("70b"))
    wide = plan_memory(
        shape,
        Precision(NumberFormat.BF16),
        pipeline=1,
        tensor=16,
        context_length=1,
        concurrency=1,
        nodes=sparks(16),
    )
    assert wide.nodes[0].kv_bytes_per_token == 2 * 80 * 1 * 128 * 2


def test_tensor_must_divide_the_heads() -> None:
    with pytest.raises(ValueError, match="tensor 3 does not divide"):
        plan(config("8b"), tensor=3, context=1)


def test_tied_embeddings() -> None:
    untied = shape_from_config(config("8b"))
    tied = shape_from_config(config("8b", tie_word_embeddings=True))
    assert untied.parameters() - tied.parameters() == 128256 * 4096
    precision = Precision(NumberFormat.BF16)
    assert model_weight_bytes(untied, precision) - model_weight_bytes(tied, precision) == 128256 * 4096 * 2
    one = plan(config("8b", tie_word_embeddings=True), context=1).nodes[0]
    assert one.weight_bytes == model_weight_bytes(tied, precision)  # one copy on one stage
    first, last = plan(config("8b", tie_word_embeddings=True), pipeline=2, context=1).nodes
    assert last.weight_bytes - first.weight_bytes == 4096 * 2  # the last stage loads its own copy (+ final norm)


MIXTRAL = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def test_moe_counts_every_expert_and_the_router() -> None:
    """Mixtral 8x7B: published 46.7 B parameters."""
    shape = shape_from_config(MIXTRAL)
    assert shape.experts == 8
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 8 * 3 * 4096 * 14336 + 4096 * 8 + 2 * 4096
    assert shape.parameters() == 32 * per_layer + 2 * 32000 * 4096 + 4096
    assert shape.parameters() == pytest.approx(46.7e9, rel=0.01)
    qwen = shape_from_config({**MIXTRAL, "num_local_experts": None, "num_experts": 64, "moe_intermediate_size": 1408})
    assert (qwen.experts, qwen.intermediate) == (64, 1408)


@pytest.mark.parametrize(
    ("quant", "linear"),
    [
        (None, NumberFormat.BF16),
        ({"quant_method": "fp8"}, NumberFormat.FP8),
        ({"quant_method": "modelopt", "quant_algo": "FP8"}, NumberFormat.FP8),
        (NVFP4, NumberFormat.NVFP4),
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, NumberFormat.INT4),
        ({"quant_method": "gptq", "bits": 4}, NumberFormat.INT4),
    ],
)
def test_precision_from_config(quant: dict[str, Any] | None, linear: NumberFormat) -> None:
    doc = config("8b", quantization_config=quant)
    assert precision_from_config(doc) == Precision(linear, NumberFormat.BF16)


def test_number_formats() -> None:
    assert [NumberFormat[n].bytes_for(1024) for n in ("BF16", "FP32", "FP8", "NVFP4", "INT4")] == [
        2048,
        4096,
        1024,
        576,  # 512 bytes of 4-bit values and 64 FP8 block scales
        528,  # 512 bytes of 4-bit values and 8 FP16 group scales
    ]
    assert precision_from_config({"torch_dtype": "float16"}) == Precision(NumberFormat.FP16, NumberFormat.FP16)
    assert precision_from_config({"dtype": "float32"}).checkpoint == NumberFormat.FP32
    assert precision_from_config({}).checkpoint == NumberFormat.BF16
    assert str(Precision(NumberFormat.NVFP4)) == "nvfp4, bf16 embeddings"


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"num_hidden_layers": None}, "num_hidden_layers is missing"),
        ({"hidden_size": "4096"}, "hidden_size must be an integer"),
        ({"num_attention_heads": True}, "num_attention_heads must be an integer"),
        ({"num_key_value_heads": 8.0}, "num_key_value_heads must be an integer"),
        ({"num_hidden_layers": -1}, "num_hidden_layers must be from 1 to 1,024"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be from 1"),
        ({"vocab_size": 10**400}, "vocab_size must be from 1 to 100,000,000, not a 1329-bit integer"),
        ({"intermediate_size": [1]}, "intermediate_size must be an integer, not a list"),
        ({"head_dim": 1 << 20}, "head_dim must be from 1 to 65,536"),
        ({"num_key_value_heads": 7}, "num_key_value_heads 7 must divide num_attention_heads 32"),
        ({"num_key_value_heads": 64}, "num_key_value_heads 64 must divide"),
        ({"num_local_experts": -2}, "num_local_experts must be from 0"),
        ({"max_position_embeddings": "x" * 1000}, "max_position_embeddings must be an integer, not 'xxx"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
        ({"hidden_size": 4097}, "head_dim is missing and hidden_size 4097 is not a multiple"),
    ],
)
def test_hostile_configs_name_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match="config.json: " + key.replace("(", r"\(")) as e:
        shape_from_config(config("8b", **changes))
    assert len(str(e.value)) < 200


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"torch_dtype": "int8"}, "torch_dtype must be one of"),
        ({"torch_dtype": 16}, "torch_dtype must be one of"),
        ({"quantization_config": "fp8"}, "quantization_config must be an object"),
        ({"quantization_config": {"quant_method": "bitsandbytes"}}, "quantization_config.quant_method 'bitsandbytes'"),
        ({"quantization_config": {}}, "quantization_config.quant_method None"),
        ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "W4A8"}}, "quantization_config.quant_algo"),
        ({"quantization_config": {"quant_method": "awq", "bits": 8}}, "quantization_config.bits 8"),
        ({"quantization_config": {"quant_method": "gptq", "bits": True}}, "quantization_config.bits True"),
    ],
)
def test_unknown_precisions_name_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match="config.json: " + key):
        precision_from_config(config("8b", **changes))


def test_a_config_that_is_not_an_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        shape_from_config([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="JSON object"):
        precision_from_config("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"memory_fraction": 0.0}, "memory_fraction must be above 0"),
        ({"memory_fraction": 1.5}, "memory_fraction must be above 0"),
        ({"memory_fraction": True}, "memory_fraction must be a number"),
        ({"kv_cache_dtype": "int4"}, "kv_cache_dtype must be one of"),
        ({"concurrency": 0}, "concurrency must be from 1"),
        ({"context": 1 << 41}, "context_length must be from 1"),
    ],
)
def test_bad_plan_arguments(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(config("8b"), **kw)


def test_node_list_must_match_the_layout() -> None:
    doc = config("8b")
    with pytest.raises(ValueError, match="needs 2 nodes, not 1"):
        plan_memory(
            shape_from_config(doc),
            precision_from_config(doc),
            pipeline=2,
            tensor=1,
            context_length=1,
            concurrency=1,
            nodes=sparks(1),
        )
    with pytest.raises(ValueError, match=r"nodes\[0\] memory must be from 1"):
        plan_memory(
            shape_from_config(doc),
            precision_from_config(doc),
            pipeline=1,
            tensor=1,
            context_length=1,
            concurrency=1,
            nodes=[("spark1", 0)],
        )
