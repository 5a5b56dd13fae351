"""The memory plan of a deployment: whether each node can hold its part of the model and its KV cache.

A DGX Spark has one GB10 GPU and about 128 GB of unified memory, shared with the OS. A spec that
cannot fit used to fail minutes into the framework's start with an out-of-memory error on one rank;
sparkd works the figures out first, from the model's `config.json` (see `sparkd.model.model_config`),
and refuses the spec naming the node, the figures and the shortfall. Pure arithmetic: nothing here
reads a file, and the figures are the framework's own rules where it has one (vLLM's).

What one rank holds (rank r is pipeline stage r // tensor, one GPU per Spark):

- its stage's decoder layers: vLLM's split (`pipeline_split`), each layer's linear layers cut by tensor
  parallelism (attention heads, KV heads and the MLP's intermediate dimension divided by `tensor`; KV
  heads are replicated when `tensor` exceeds them, at least one per rank), its norms and MoE router
  whole (vLLM replicates them);
- the embedding on the first stage and the lm_head and final norm on the last, the vocabulary split by
  `tensor` (vocab parallel). A tied lm_head costs nothing more on one stage, but with a pipeline the last
  stage loads its own copy of the embedding, as vLLM's models do;
- a reserve, `ACTIVATION_RESERVE`, for activations, the sampler and CUDA graphs: an estimate (vLLM
  profiles it at start-up; 1-3 GB for dense models of this size on one GPU), not a measured figure;
- a KV cache of `context_length` x `concurrency` tokens.

Its budget is `memory_fraction` of the node's memory (vLLM's gpu_memory_utilization, 0.92 by default in vLLM 0.33: the
rest is what the framework leaves to the OS and everything else). It fits when weights and the reserve
stay within the budget and what is left holds the tokens the spec needs.

Not modelled: attention and MLP biases, MoE shared experts and dense-only layers (every layer is taken
as MoE when the config names experts), expert parallelism, MLA (DeepSeek's compressed KV), sliding
windows, vocabulary padding, vision towers, the CUDA context outside the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sparkd.model.model_config import ModelShape, Precision

#: Activations, sampler and CUDA graphs per node, in bytes: an estimate (see the module docstring).
ACTIVATION_RESERVE = 2_000_000_000
#: vLLM's default gpu_memory_utilization.
MEMORY_FRACTION = 0.92
#: The KV cache dtypes a spec may name, and their bytes per element; "auto" is the checkpoint dtype.
KV_CACHE_DTYPES = {
    "auto": 0,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "bf16": 2,
    "bfloat16": 2,
    "fp16": 2,
    "float16": 2,
}
#: The largest node memory the planner accepts (64 TiB): a bound on untrusted input, not a Spark's size.
MAX_NODE_MEMORY = 1 << 46
#: The largest context_length x concurrency the planner accepts.
MAX_TOKENS = 1 << 40


@dataclass(frozen=True)
class NodeMemory:
    """One rank's figures. Bytes throughout; `layers` is [start, end) as vLLM's get_pp_indices gives it."""

    rank: int
    name: str
    stage: int
    layers: tuple[int, int]
    memory_bytes: int  # the node's memory (MemTotal)
    budget_bytes: int  # memory_fraction of it
    weight_bytes: int
    reserve_bytes: int
    kv_bytes_per_token: int  # this rank's layers and KV heads
    kv_capacity_tokens: int  # what is left of the budget, in tokens; 0 when nothing is left
    tokens_needed: int  # context_length x concurrency
    refusal: str = ""  # why this rank cannot take its part; "" when it fits

    @property
    def fits(self) -> bool:
        return not self.refusal


@dataclass(frozen=True)
class MemoryPlan:
    """The whole deployment's figures: the model's totals and every rank's part."""

    precision: Precision
    kv_cache_dtype: str
    pipeline: int
    tensor: int
    context_length: int
    concurrency: int
    memory_fraction: float
    parameters: int
    weight_bytes: int  # the whole model at its precision (about the checkpoint's size)
    kv_bytes_per_token: int  # the whole model: every layer, every KV head
    nodes: tuple[NodeMemory, ...]

    @property
    def fits(self) -> bool:
        return all(node.fits for node in self.nodes)

    @property
    def refusals(self) -> list[str]:
        return [node.refusal for node in self.nodes if node.refusal]


def pipeline_split(layers: int, pipeline: int) -> list[tuple[int, int]]:
    """Each stage's [start, end) decoder layers, as vLLM splits them (get_pp_indices without
    VLLM_PP_LAYER_PARTITION): `layers // pipeline` each, and the remainder one each to the stages just
    before the last (the last stage also computes the lm_head and the sampler, the first the embedding):
    126 layers over 4 stages are 31, 32, 32, 31."""
    if not 1 <= pipeline <= layers:
        raise ValueError(f"pipeline must be from 1 to the model's {layers} layers, not {pipeline}")
    sizes = [layers // pipeline] * pipeline
    for i in range(2, layers % pipeline + 2):
        sizes[-i] += 1
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def kv_bytes(precision: Precision, kv_cache_dtype: str) -> int:
    """Bytes per KV cache element: "auto" is the checkpoint dtype (what vLLM does), "fp8" one byte."""
    if not isinstance(kv_cache_dtype, str) or kv_cache_dtype not in KV_CACHE_DTYPES:
        shown = repr(kv_cache_dtype[:40]) if isinstance(kv_cache_dtype, str) else type(kv_cache_dtype).__name__
        raise ValueError(f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}, not {shown}")
    return KV_CACHE_DTYPES[kv_cache_dtype] or precision.checkpoint.bytes_for(1)


def kv_bytes_per_token(shape: ModelShape, layers: int, tensor: int, element_bytes: int) -> int:
    """K and V of `layers` layers for one token on one rank: GQA-correct (the KV heads, not the attention
    heads), at least one KV head per rank."""
    return 2 * layers * max(1, shape.kv_heads // tensor) * shape.head_dim * element_bytes


def plan_memory(
    shape: ModelShape,
    precision: Precision,
    *,
    pipeline: int,
    tensor: int,
    context_length: int,
    concurrency: int,
    nodes: Sequence[tuple[str, int]],
    memory_fraction: float = MEMORY_FRACTION,
    kv_cache_dtype: str = "auto",
) -> MemoryPlan:
    """The plan for running `shape` at `precision` over `nodes` ((name, memory bytes) in rank order, one
    rank each). ValueError when the arguments cannot describe a deployment (a count out of range, a
    tensor size the heads do not divide into, a node list of the wrong length); a deployment that is
    possible but does not fit is a plan with refusals, not an error."""
    _check_layout(shape, pipeline, tensor, nodes)
    _check_range("context_length", context_length, 1, MAX_TOKENS)
    _check_range("concurrency", concurrency, 1, MAX_TOKENS)
    if isinstance(memory_fraction, bool) or not isinstance(memory_fraction, (int, float)):
        raise ValueError(f"memory_fraction must be a number, not {type(memory_fraction).__name__}")
    if not 0.0 < memory_fraction <= 1.0:
        raise ValueError(f"memory_fraction must be above 0 and at most 1, not {memory_fraction}")
    element = kv_bytes(precision, kv_cache_dtype)
    needed = context_length * concurrency
    if needed > MAX_TOKENS:
        raise ValueError(f"context_length x concurrency must be at most {MAX_TOKENS}, not {needed}")
    stages = pipeline_split(shape.layers, pipeline)
    parts = []
    for rank, (name, memory) in enumerate(nodes):
        stage = rank // tensor
        start, end = stages[stage]
        weights = stage_weight_bytes(shape, precision, stage, end - start, pipeline, tensor)
        budget = int(memory_fraction * memory)
        per_token = kv_bytes_per_token(shape, end - start, tensor, element)
        free = budget - weights - ACTIVATION_RESERVE
        capacity = max(0, free // per_token)
        part = NodeMemory(
            rank, name, stage, (start, end), memory, budget, weights, ACTIVATION_RESERVE, per_token, capacity, needed
        )
        refusal = _refusal(part, memory_fraction, context_length, concurrency, kv_cache_dtype)
        parts.append(dataclasses.replace(part, refusal=refusal) if refusal else part)
    return MemoryPlan(
        precision=precision,
        kv_cache_dtype=kv_cache_dtype,
        pipeline=pipeline,
        tensor=tensor,
        context_length=context_length,
        concurrency=concurrency,
        memory_fraction=memory_fraction,
        parameters=shape.parameters(),
        weight_bytes=model_weight_bytes(shape, precision),
        kv_bytes_per_token=kv_bytes_per_token(shape, shape.layers, 1, element),
        nodes=tuple(parts),
    )


def model_weight_bytes(shape: ModelShape, precision: Precision) -> int:
    """The whole model's weights: its layers' linear weights at the quantized format, everything else
    (embeddings, lm_head, norms, routers) at the checkpoint dtype."""
    linear, dense = shape.layer_parameters(1)
    dense_total = shape.layers * dense + shape.vocab * shape.hidden * (1 if shape.tie_embeddings else 2) + shape.hidden
    return precision.linear.bytes_for(shape.layers * linear) + precision.checkpoint.bytes_for(dense_total)


def stage_weight_bytes(
    shape: ModelShape, precision: Precision, stage: int, layers: int, pipeline: int, tensor: int
) -> int:
    """One rank's weights: its stage's `layers` layers cut by `tensor`, plus the embedding (first stage),
    the lm_head and final norm (last stage), the vocabulary split by `tensor`."""
    linear, dense = shape.layer_parameters(tensor)
    dense_total = layers * dense
    vocab_part = -(-shape.vocab // tensor) * shape.hidden
    if stage == 0:
        dense_total += vocab_part
    if stage == pipeline - 1:
        dense_total += shape.hidden
        if not shape.tie_embeddings or pipeline > 1:
            dense_total += vocab_part
    return precision.linear.bytes_for(layers * linear) + precision.checkpoint.bytes_for(dense_total)


def render(plan: MemoryPlan) -> list[str]:
    """The plan as lines for a CLI: a summary, one row per rank, then every refusal."""
    lines = [
        f"model: {plan.parameters / 1e9:.2f} B parameters, weights {gb(plan.weight_bytes)} ({plan.precision}), "
        f"KV cache {kib(plan.kv_bytes_per_token)}/token (kv_cache_dtype {plan.kv_cache_dtype})",
        f"layout: pipeline {plan.pipeline} x tensor {plan.tensor}; needs {plan.context_length:,} context x "
        f"{plan.concurrency} concurrency = {plan.context_length * plan.concurrency:,} tokens per rank; "
        f"budget {plan.memory_fraction:.2f} of each node's memory, reserve {gb(ACTIVATION_RESERVE)} per node",
    ]
    rows = [("rank", "node", "layers", "weights", "KV/token", "KV capacity", "budget", "verdict")]
    for n in plan.nodes:
        start, end = n.layers
        rows.append(
            (
                str(n.rank),
                _shown_name(n.name),
                f"{start}-{end - 1} ({end - start})",
                gb(n.weight_bytes),
                kib(n.kv_bytes_per_token),
                f"{n.kv_capacity_tokens:,} tokens",
                f"{gb(n.budget_bytes)} of {gb(n.memory_bytes)}",
                "fits" if n.fits else "REFUSED",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"refused: {refusal}" for refusal in plan.refusals]
    return lines


def gb(size: int) -> str:
    """Bytes as decimal gigabytes, one decimal: "141.1 GB"."""
    return f"{size / 1e9:.1f} GB"


def kib(size: int) -> str:
    """Bytes as KiB: "320 KiB", "126.5 KiB"."""
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size / 1024:.1f} KiB"


def _refusal(n: NodeMemory, memory_fraction: float, context_length: int, concurrency: int, kv_cache_dtype: str) -> str:
    """Why rank `n` cannot take its part, with the figures and what to change; "" when it fits."""
    who = f"rank {n.rank} on {_shown_name(n.name)}"
    over = n.weight_bytes + n.reserve_bytes - n.budget_bytes
    if over > 0:
        return (
            f"{who}: weights {gb(n.weight_bytes)} + reserve {gb(n.reserve_bytes)} exceed the budget of "
            f"{gb(n.budget_bytes)} ({memory_fraction:.2f} of {gb(n.memory_bytes)}) by {gb(over)}; "
            "use more nodes (pipeline) or a smaller precision"
        )
    if n.kv_capacity_tokens >= n.tokens_needed:
        return ""
    short = n.tokens_needed * n.kv_bytes_per_token - (n.budget_bytes - n.weight_bytes - n.reserve_bytes)
    fixes = ["lower context_length or concurrency"]
    if KV_CACHE_DTYPES[kv_cache_dtype] != 1:  # not fp8 already
        fixes.append("use kv_cache_dtype fp8")
    if memory_fraction < 1.0:
        fixes.append("raise memory_fraction")
    advice = (
        fixes[0] if len(fixes) == 1 else ", ".join(fixes[:-1]) + ("," if len(fixes) > 2 else "") + " or " + fixes[-1]
    )
    return (
        f"{who}: KV cache holds {n.kv_capacity_tokens:,} tokens, the spec needs {n.tokens_needed:,} "
        f"(context {context_length} x concurrency {concurrency}): short by {gb(short)}; {advice}"
    )


def _check_layout(shape: ModelShape, pipeline: int, tensor: int, nodes: Sequence[tuple[str, int]]) -> None:
    """The parallel layout vLLM would accept for this model, and one node (with a sane memory) per rank."""
    _check_range("pipeline", pipeline, 1, shape.layers)
    _check_range("tensor", tensor, 1, shape.heads)
    if shape.heads % tensor:
        raise ValueError(f"tensor {tensor} does not divide the model's {shape.heads} attention heads")
    if shape.kv_heads % tensor and tensor % shape.kv_heads:
        raise ValueError(f"tensor {tensor} and the model's {shape.kv_heads} KV heads: neither divides the other")
    if len(nodes) != pipeline * tensor:
        raise ValueError(f"pipeline {pipeline} x tensor {tensor} needs {pipeline * tensor} nodes, not {len(nodes)}")
    for i, (_, memory) in enumerate(nodes):
        _check_range(f"nodes[{i}] memory", memory, 1, MAX_NODE_MEMORY)


def _check_range(what: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        shown = value if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
        raise ValueError(f"{what} must be from {low} to {high}, not {shown}")


def _shown_name(name: str) -> str:
    """A node name fit for a message: printable characters only, at most 64."""
    return "".join(c if c.isprintable() else "?" for c in name[:64])
