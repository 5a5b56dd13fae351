"""A model's shape and weight precision, read from its Hugging Face `config.json`.

The config is untrusted input (it comes from the model directory, which anyone may have filled):
every number is checked to be an integer (not a bool, a float or a string) within a bound, and
anything missing, malformed or unknown is a ValueError naming the key, so a spec is refused with
the reason rather than planned from a guess.

Keys read (a Llama-style decoder; Mistral, Qwen and Mixtral configs use the same names):
`num_hidden_layers`, `hidden_size`, `num_attention_heads`, `num_key_value_heads` (absent: as many as
the attention heads, i.e. no GQA), `head_dim` (absent: hidden / heads), `intermediate_size`,
`vocab_size`, `max_position_embeddings` (absent: 0, unknown), `tie_word_embeddings` (absent: untied,
the larger figure: the class default cannot be known without transformers), `num_local_experts` or
`num_experts` with `moe_intermediate_size` (MoE), `torch_dtype` (or `dtype`, which transformers
writes since 4.56) and `quantization_config`.

Precision. Quantized checkpoints quantize only the linear layers inside the decoder blocks
(attention q/k/v/o and the MLP or expert projections): modelopt (NVFP4, FP8), AWQ and GPTQ leave
the embeddings, the lm_head, the norms and the MoE router at the checkpoint dtype (`torch_dtype`,
bf16 when absent). So a `Precision` has two formats, the linear layers' and the checkpoint's. What
each format costs per parameter (`NumberFormat.bits`):

- BF16 and FP16 16 bits, FP32 32 (the checkpoint's own size; vLLM's dtype "auto" would load an FP32
  checkpoint in 16 bits, so this overstates such a model, the safe way);
- FP8 8 bits; its scales (one per tensor or per channel) are left out (far below 0.1 %);
- NVFP4 4.5 bits: 4-bit values and one FP8 scale per block of 16 (the per-tensor FP32 scale is left out);
- INT4 (AWQ, GPTQ) 4.125 bits: 4-bit values and one FP16 scale per group of 128. Their 4-bit zero points
  (another 0.03 bits) and a group size other than 128 are not modelled (under 1 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any


class NumberFormat(Enum):
    """How a weight is stored."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"
    FP8 = "fp8"
    NVFP4 = "nvfp4"
    INT4 = "int4"

    @property
    def bits(self) -> Fraction:
        """Bits per parameter, block scales included (see the module docstring)."""
        return _BITS[self]

    def bytes_for(self, parameters: int) -> int:
        """The bytes `parameters` weights take in this format, rounded up."""
        bits = self.bits * parameters
        return -(-bits.numerator // (8 * bits.denominator))


_BITS = {
    NumberFormat.BF16: Fraction(16),
    NumberFormat.FP16: Fraction(16),
    NumberFormat.FP32: Fraction(32),
    NumberFormat.FP8: Fraction(8),
    NumberFormat.NVFP4: 4 + Fraction(8, 16),
    NumberFormat.INT4: 4 + Fraction(16, 128),
}
#: The formats a checkpoint's unquantized tensors come in.
CHECKPOINT_FORMATS = frozenset({NumberFormat.BF16, NumberFormat.FP16, NumberFormat.FP32})
_TORCH_DTYPES = {"bfloat16": NumberFormat.BF16, "float16": NumberFormat.FP16, "float32": NumberFormat.FP32}


@dataclass(frozen=True)
class Precision:
    """The decoder's linear layers' format, and the checkpoint dtype everything else stays in."""

    linear: NumberFormat
    checkpoint: NumberFormat = NumberFormat.BF16

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINT_FORMATS:
            raise ValueError(f"a checkpoint dtype is bf16, fp16 or fp32, not {self.checkpoint.value}")

    def __str__(self) -> str:
        if self.linear == self.checkpoint:
            return self.linear.value
        return f"{self.linear.value}, {self.checkpoint.value} embeddings"


#: Bounds on the config's numbers: generous for any real model, small enough that nothing overflows a plan.
LIMITS = {
    "num_hidden_layers": 1024,
    "hidden_size": 1_000_000,
    "num_attention_heads": 65_536,
    "num_key_value_heads": 65_536,
    "head_dim": 65_536,
    "intermediate_size": 10_000_000,
    "moe_intermediate_size": 10_000_000,
    "vocab_size": 100_000_000,
    "max_position_embeddings": 1 << 32,
    "num_local_experts": 4096,
    "num_experts": 4096,
}


@dataclass(frozen=True)
class ModelShape:
    """What the memory plan needs of a decoder-only transformer."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # per expert for MoE
    vocab: int
    max_position: int = 0  # 0: unknown
    experts: int = 0  # 0: dense
    tie_embeddings: bool = False

    def layer_parameters(self, tensor: int = 1) -> tuple[int, int]:
        """One decoder layer's parameters on one of `tensor` ranks: (linear, everything else). Linear is
        attention q/k/v/o and the MLP's gate, up and down (per expert), cut by `tensor` (KV heads at least
        one per rank); the rest, two RMSNorm vectors and the MoE router, is whole on every rank."""
        heads = self.heads // tensor
        kv_heads = max(1, self.kv_heads // tensor)
        intermediate = -(-self.intermediate // tensor)
        attention = 2 * self.hidden * heads * self.head_dim + 2 * self.hidden * kv_heads * self.head_dim
        mlp = 3 * self.hidden * intermediate * max(1, self.experts)
        return attention + mlp, 2 * self.hidden + self.hidden * self.experts

    def parameters(self) -> int:
        """Every parameter of the model: layers, embedding, final norm and (untied) lm_head."""
        linear, other = self.layer_parameters()
        embeddings = self.vocab * self.hidden * (1 if self.tie_embeddings else 2)
        return self.layers * (linear + other) + embeddings + self.hidden


def shape_from_config(doc: Mapping[str, Any]) -> ModelShape:
    """The shape described by a parsed config.json. ValueError naming the key when one is missing,
    not an integer, out of its bound (`LIMITS`) or inconsistent with the others."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"config.json must be a JSON object, not {_shown(doc)}")
    heads = _int(doc, "num_attention_heads")
    kv_heads = _int(doc, "num_key_value_heads", default=heads)
    if kv_heads > heads or heads % kv_heads:
        raise ValueError(f"config.json: num_key_value_heads {kv_heads} must divide num_attention_heads {heads}")
    hidden = _int(doc, "hidden_size")
    head_dim = _int(doc, "head_dim", default=0)
    if not head_dim:
        if hidden % heads:
            raise ValueError(
                f"config.json: head_dim is missing and hidden_size {hidden} is not a multiple of "
                f"num_attention_heads {heads}"
            )
        head_dim = hidden // heads
    experts = _int(doc, "num_local_experts", default=-1, low=0)
    if experts < 0:
        experts = _int(doc, "num_experts", default=0, low=0)
    if experts and doc.get("moe_intermediate_size") is not None:
        intermediate = _int(doc, "moe_intermediate_size")
    else:
        intermediate = _int(doc, "intermediate_size")
    tie = doc.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise ValueError(f"config.json: tie_word_embeddings must be true or false, not {_shown(tie)}")
    return ModelShape(
        layers=_int(doc, "num_hidden_layers"),
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=_int(doc, "vocab_size"),
        max_position=_int(doc, "max_position_embeddings", default=0, low=0),
        experts=experts,
        tie_embeddings=tie,
    )


def precision_from_config(doc: Mapping[str, Any]) -> Precision:
    """The weights' precision: the checkpoint dtype (`torch_dtype`, or `dtype`; bf16 when both are
    absent) and the linear layers' format from `quantization_config` when there is one. ValueError naming
    the key for a dtype or quantization this planner does not know."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"config.json must be a JSON object, not {_shown(doc)}")
    key = "torch_dtype" if doc.get("torch_dtype") is not None else "dtype"
    dtype = doc.get(key)
    if dtype is None:
        checkpoint = NumberFormat.BF16
    elif isinstance(dtype, str) and dtype in _TORCH_DTYPES:
        checkpoint = _TORCH_DTYPES[dtype]
    else:
        raise ValueError(f"config.json: {key} must be one of {', '.join(_TORCH_DTYPES)}, not {_shown(dtype)}")
    quant = doc.get("quantization_config")
    if quant is None:
        return Precision(checkpoint, checkpoint)
    if not isinstance(quant, Mapping):
        raise ValueError(f"config.json: quantization_config must be an object, not {_shown(quant)}")
    return Precision(_quantized(quant), checkpoint)


def _quantized(quant: Mapping[str, Any]) -> NumberFormat:
    """The linear layers' format a quantization_config names."""
    method = quant.get("quant_method")
    if method == "fp8":
        return NumberFormat.FP8
    if method == "modelopt":
        algo = quant.get("quant_algo")
        formats = {"FP8": NumberFormat.FP8, "NVFP4": NumberFormat.NVFP4}
        if isinstance(algo, str) and algo.upper() in formats:
            return formats[algo.upper()]
        raise ValueError(
            f"config.json: quantization_config.quant_algo {_shown(algo)} is not one this planner knows (FP8, NVFP4)"
        )
    if method in ("awq", "gptq"):
        bits = quant.get("bits")
        if isinstance(bits, int) and not isinstance(bits, bool) and bits == 4:
            return NumberFormat.INT4
        raise ValueError(f"config.json: quantization_config.bits {_shown(bits)} is not one this planner knows (4)")
    raise ValueError(
        f"config.json: quantization_config.quant_method {_shown(method)} is not one this planner knows "
        "(fp8, modelopt, awq, gptq)"
    )


def _int(doc: Mapping[str, Any], key: str, *, default: int | None = None, low: int = 1) -> int:
    """`doc[key]` as a bounded integer; `default` when it is absent or null (None: required)."""
    value = doc.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"config.json: {key} is missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"config.json: {key} must be an integer, not {_shown(value)}")
    high = LIMITS[key]
    if not low <= value <= high:
        raise ValueError(f"config.json: {key} must be from {low} to {high:,}, not {_shown(value)}")
    return value


def _shown(value: object) -> str:
    """A value from the config fit for a message: short, escaped, a huge integer described."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    if isinstance(value, str):
        return repr(value[:40]) + ("…" if len(value) > 40 else "")
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"
