"""The seed guide's configurations (shared/reference/dgx-spark-dual-node-guide.txt, Parts Four to Seven) as
sparkd specs: each the seed's intent, in the pinned versions' flags (shared/reference/framework-facts.md)."""

SEED = {
    # Chapter 8's chatbot: vLLM 70B, PP=2 on Ray, a draft model for speculative decoding. The seed's
    # --speculative-model/--num-speculative-tokens are gone (vLLM 0.33: --speculative-config JSON); its
    # --enable-prefix-caching is the default and --disable-log-requests a no-op, so neither is emitted.
    "chatbot": """
name: chatbot
framework: vllm
mode: ray
model: /models/llama-3.1-70b-instruct
served_model_name: llama-3.1-70b-instruct
parallelism: {pipeline: 2, tensor: 1}
port: 8000
engine:
  context_length: 16384
  memory_fraction: 0.85
  concurrency: 32
  max_batched_tokens: 8192
  speculative: {method: draft_model, model: /models/llama-3.1-8b-instruct, tokens: 5}
""",
    # The same chatbot on vLLM's native multi-node launcher (sparkd's default: no Ray).
    "chatbot-native": """
name: chatbot
framework: vllm
model: /models/llama-3.1-70b-instruct
served_model_name: llama-3.1-70b-instruct
parallelism: {pipeline: 2, tensor: 1}
engine:
  context_length: 16384
  memory_fraction: 0.85
  concurrency: 32
  max_batched_tokens: 8192
  speculative: {method: draft_model, model: /models/llama-3.1-8b-instruct, tokens: 5}
""",
    # 405B in FP4, PP=2: `--quantization fp4` does not exist; an NVFP4 checkpoint is ModelOpt's modelopt_fp4.
    "llama-405b-fp4": """
name: llama-405b
framework: vllm
mode: ray
model: /models/llama-3.1-405b-instruct-fp4
parallelism: {pipeline: 2, tensor: 1}
engine: {context_length: 8192, memory_fraction: 0.90, concurrency: 4, quantization: modelopt_fp4}
""",
    # Chapter 9's agentic SGLang with EAGLE, in its container: the draft is an EAGLE-3 head, so EAGLE3;
    # --tp 2 only worked by prefix abbreviation (--tp-size); the seed set steps and topk but not the draft
    # token count, which SGLang then cannot derive (topk > 1): 64 is added.
    "sglang-eagle": """
name: agents
framework: sglang
runtime: {image: "lmsysorg/sglang:v0.5.23"}
model: /models/llama-3.1-70b-instruct
parallelism: {pipeline: 1, tensor: 2}
port: 30000
engine:
  memory_fraction: 0.80
  max_batched_tokens: 4096
  speculative: {method: eagle3, model: /models/eagle3-llama3.1-70b, steps: 5, topk: 8, tokens: 64}
""",
    # Chapter 7's TensorRT-LLM 405B with PP=2 under mpirun: no --engine_dir (it never existed; the PyTorch
    # backend loads the checkpoint), trtllm-llmapi-launch around trtllm-serve, sparkd's launch agent, no ssh.
    "trtllm-pp2": """
name: llama-405b-trt
framework: trtllm
model: /models/llama-3.1-405b-instruct-fp4
parallelism: {pipeline: 2, tensor: 1}
engine: {concurrency: 4, max_batched_tokens: 2048}
extra_args: [--log_level, info]
""",
}
