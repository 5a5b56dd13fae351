"""SGLang 0.5.23: the same `sglang serve` on every node but for `--node-rank`.

Every rank joins the torch.distributed rendezvous at the head's `--dist-init-addr HOST:PORT` (the
deployment's rendezvous port). `--tp-size` and `--pp-size` are cluster-wide sizes (the seed's `--tp`
only worked by argparse's prefix abbreviation). Rank 0 serves the API; the others serve a health
endpoint on the same `--host/--port`. `--enable-metrics` gives sparkd the token counter it proves
serving with.
"""

from __future__ import annotations

from sparkd.engine.launchers.base import ExeLookup, Node, RankUnit, StartOrder, managed_flag_problems
from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode

QUANTIZATION = (
    "modelopt_fp4",
    "nvfp4_online",
    "petit_nvfp4",
    "mxfp4",
    "modelopt_fp8",
    "fp8",
    "compressed-tensors",
    "awq",
    "gptq",
)
#: sparkd's speculative methods as SGLang's --speculative-algorithm (a plain small LM is STANDALONE).
SPECULATIVE = {"draft_model": "STANDALONE", "eagle": "EAGLE", "eagle3": "EAGLE3", "ngram": "NGRAM", "mtp": "NEXTN"}
KV_CACHE = {"auto": "auto", "fp8": "fp8_e4m3", "bf16": "bf16"}
MANAGED = {
    "--model-path": "model",
    "--model": "model",
    "--served-model-name": "served_model_name",
    "--host": "port (every rank listens on every address)",
    "--port": "port",
    "--tp-size": "parallelism.tensor",
    "--tensor-parallel-size": "parallelism.tensor",
    "--tp": "parallelism.tensor",
    "--pp-size": "parallelism.pipeline",
    "--pipeline-parallel-size": "parallelism.pipeline",
    "--dist-init-addr": "the cluster (the head's rendezvous address)",
    "--nccl-init-addr": "the cluster (the head's rendezvous address)",
    "--nnodes": "the cluster (sparkd assigns the nodes)",
    "--node-rank": "the cluster (sparkd assigns the ranks)",
    "--context-length": "engine.context_length",
    "--max-running-requests": "engine.concurrency",
    "--mem-fraction-static": "engine.memory_fraction",
    "--kv-cache-dtype": "engine.kv_cache_dtype",
    "--chunked-prefill-size": "engine.max_batched_tokens and engine.chunked_prefill",
    "--quantization": "engine.quantization",
    "--speculative-algorithm": "engine.speculative.method",
    "--speculative-draft-model-path": "engine.speculative.model",
    "--speculative-num-steps": "engine.speculative.steps",
    "--speculative-eagle-topk": "engine.speculative.topk",
    "--speculative-num-draft-tokens": "engine.speculative.tokens",
}


class Sglang:
    framework = Framework.SGLANG
    mode = LaunchMode.NATIVE
    order = StartOrder()
    token_metric = "sglang:generation_tokens_total"

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        bad = managed_flag_problems(spec.extra_args, MANAGED)
        e = spec.engine
        if e.quantization and e.quantization not in QUANTIZATION:
            bad.append(
                FieldViolation(
                    "engine.quantization",
                    f"SGLang 0.5.23 has no method {e.quantization!r}; use one of {', '.join(QUANTIZATION)}",
                )
            )
        if e.chunked_prefill is False and e.max_batched_tokens:
            bad.append(
                FieldViolation(
                    "engine.max_batched_tokens",
                    "is SGLang's chunked prefill size: it cannot be set with chunked_prefill: false",
                )
            )
        s = e.speculative
        if s is not None:
            given = {"steps": s.steps, "topk": s.topk, "tokens": s.tokens}
            if any(given.values()) and not all(given.values()):
                missing = ", ".join(f"engine.speculative.{k}" for k, v in given.items() if not v)
                bad.append(
                    FieldViolation(
                        "engine.speculative",
                        f"SGLang needs steps, topk and tokens together (or none, to let it choose); missing {missing} "
                        "(for example steps: 5, topk: 8, tokens: 64)",
                    )
                )
        return bad

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        argv = [
            exe("sglang"),
            "serve",
            "--model-path",
            spec.model,
            "--served-model-name",
            spec.served_model_name,
            "--tp-size",
            str(spec.tensor),
            "--pp-size",
            str(spec.pipeline),
            "--dist-init-addr",
            f"{a.master_addr}:{a.master_port}",
            "--nnodes",
            str(a.nnodes),
            "--node-rank",
            str(a.rank),
            "--host",
            "0.0.0.0",
            "--port",
            str(spec.port),
            "--enable-metrics",
        ]
        e = spec.engine
        if e.context_length:
            argv += ["--context-length", str(e.context_length)]
        if e.concurrency:
            argv += ["--max-running-requests", str(e.concurrency)]
        if e.memory_fraction:
            argv += ["--mem-fraction-static", f"{e.memory_fraction:g}"]
        if e.kv_cache_dtype != "auto":
            argv += ["--kv-cache-dtype", KV_CACHE[e.kv_cache_dtype]]
        if e.chunked_prefill is False:
            argv += ["--chunked-prefill-size", "-1"]
        elif e.max_batched_tokens:
            argv += ["--chunked-prefill-size", str(e.max_batched_tokens)]
        if e.quantization:
            argv += ["--quantization", e.quantization]
        if (s := e.speculative) is not None:
            argv += ["--speculative-algorithm", SPECULATIVE[s.method]]
            if s.model:
                argv += ["--speculative-draft-model-path", s.model]
            if s.steps:
                argv += ["--speculative-num-steps", str(s.steps), "--speculative-eagle-topk", str(s.topk)]
                argv += ["--speculative-num-draft-tokens", str(s.tokens)]
        return (RankUnit("", tuple(argv + list(spec.extra_args))),)

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        return (spec.port, a.master_port) if a.rank == 0 else (spec.port,)


LAUNCHER = Sglang()
