"""vLLM 0.33, native multi-node (the default mode): the same `vllm serve` on every node.

Rank 0 serves the API; the others run `--headless`. Every rank rendezvouses at the head's
`--master-addr:--master-port` through torch.distributed (`--distributed-executor-backend mp`).
Flags as `shared/reference/framework-facts.md` gives them for vLLM 0.33: `vllm serve MODEL`
(not the deprecated api_server module), `--speculative-config` JSON (no `--speculative-model`),
no `--quantization fp4`.
"""

from __future__ import annotations

import json

from sparkd.engine.launchers.base import ExeLookup, Node, RankUnit, StartOrder, managed_flag_problems
from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode

#: --quantization values vLLM 0.33 has that fit a Spark (framework-facts.md §3); omit it for a
#: pre-quantized checkpoint, which says its method in its own config.
QUANTIZATION = (
    "modelopt_fp4",
    "modelopt",
    "modelopt_mixed",
    "compressed-tensors",
    "mxfp4",
    "fp8",
    "awq",
    "gptq",
    "gptq_marlin",
    "awq_marlin",
    "nvfp4_per_token",
)
SPECULATIVE = {"draft_model": "draft_model", "eagle": "eagle", "eagle3": "eagle3", "ngram": "ngram", "mtp": "mtp"}
KV_CACHE = {"auto": "auto", "fp8": "fp8", "bf16": "bfloat16"}
#: Flags sparkd sets, and the spec key that sets each (extra_args may not).
MANAGED = {
    "--model": "model",
    "--served-model-name": "served_model_name",
    "--host": "port (the head listens on every address)",
    "--port": "port",
    "--tensor-parallel-size": "parallelism.tensor",
    "-tp": "parallelism.tensor",
    "--pipeline-parallel-size": "parallelism.pipeline",
    "-pp": "parallelism.pipeline",
    "--distributed-executor-backend": "mode",
    "--nnodes": "the cluster (sparkd assigns the nodes)",
    "-n": "the cluster (sparkd assigns the nodes)",
    "--node-rank": "the cluster (sparkd assigns the ranks)",
    "-r": "the cluster (sparkd assigns the ranks)",
    "--master-addr": "the cluster (the head's interconnect address)",
    "--master-port": "the cluster (sparkd gives each deployment its own rendezvous port)",
    "--headless": "the cluster (every rank but the head's is headless)",
    "--max-model-len": "engine.context_length",
    "--max-num-seqs": "engine.concurrency",
    "--gpu-memory-utilization": "engine.memory_fraction",
    "--kv-cache-dtype": "engine.kv_cache_dtype",
    "--max-num-batched-tokens": "engine.max_batched_tokens",
    "--quantization": "engine.quantization",
    "--speculative-config": "engine.speculative",
    "--enable-chunked-prefill": "engine.chunked_prefill",
    "--no-enable-chunked-prefill": "engine.chunked_prefill",
}


def check(spec: DeploymentSpec) -> list[FieldViolation]:
    """What vLLM 0.33 cannot do with `spec`."""
    bad = managed_flag_problems(spec.extra_args, MANAGED, underscores_are_dashes=True)
    e = spec.engine
    if e.quantization and e.quantization not in QUANTIZATION:
        hint = " (NVFP4 checkpoints: leave it out, vLLM reads the checkpoint's method; or modelopt_fp4)"
        bad.append(
            FieldViolation(
                "engine.quantization",
                f"vLLM 0.33 has no method {e.quantization!r}; use one of {', '.join(QUANTIZATION)}"
                + (hint if "fp4" in e.quantization else ""),
            )
        )
    s = e.speculative
    if s is not None:
        if s.steps or s.topk:
            bad.append(
                FieldViolation("engine.speculative", "steps and topk are SGLang's; vLLM drafts `tokens` per step")
            )
        if not s.tokens:
            bad.append(FieldViolation("engine.speculative.tokens", "required for vLLM: draft tokens per step, e.g. 5"))
    return bad


def engine_flags(spec: DeploymentSpec) -> list[str]:
    """The engine options and extra arguments, as vLLM 0.33 flags (every rank gets the same)."""
    e, argv = spec.engine, []
    if e.context_length:
        argv += ["--max-model-len", str(e.context_length)]
    if e.concurrency:
        argv += ["--max-num-seqs", str(e.concurrency)]
    if e.memory_fraction:
        argv += ["--gpu-memory-utilization", f"{e.memory_fraction:g}"]
    if e.kv_cache_dtype != "auto":
        argv += ["--kv-cache-dtype", KV_CACHE[e.kv_cache_dtype]]
    if e.max_batched_tokens:
        argv += ["--max-num-batched-tokens", str(e.max_batched_tokens)]
    if e.quantization:
        argv += ["--quantization", e.quantization]
    if e.chunked_prefill is not None:
        argv += ["--enable-chunked-prefill" if e.chunked_prefill else "--no-enable-chunked-prefill"]
    if e.speculative is not None:
        config: dict[str, object] = {"method": SPECULATIVE[e.speculative.method]}
        if e.speculative.model:
            config["model"] = e.speculative.model
        config["num_speculative_tokens"] = e.speculative.tokens
        argv += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
    return argv + list(spec.extra_args)


def serve_argv(spec: DeploymentSpec, exe: ExeLookup) -> list[str]:
    return [
        exe("vllm"),
        "serve",
        spec.model,
        "--served-model-name",
        spec.served_model_name,
        "--tensor-parallel-size",
        str(spec.tensor),
        "--pipeline-parallel-size",
        str(spec.pipeline),
    ]


class VllmNative:
    framework = Framework.VLLM
    mode = LaunchMode.NATIVE
    order = StartOrder()
    token_metric = "vllm:generation_tokens_total"

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        return check(spec)

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        argv = serve_argv(spec, exe) + [
            "--distributed-executor-backend",
            "mp",
            "--nnodes",
            str(a.nnodes),
            "--node-rank",
            str(a.rank),
            "--master-addr",
            a.master_addr,
            "--master-port",
            str(a.master_port),
        ]
        argv += engine_flags(spec)
        argv += ["--host", "0.0.0.0", "--port", str(spec.port)] if a.rank == 0 else ["--headless"]
        return (RankUnit("", tuple(argv)),)

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        return (spec.port, a.master_port) if a.rank == 0 else ()


LAUNCHER = VllmNative()
