"""The stand-in head's engine: completions through every pipeline stage, and the framework's Prometheus counters."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from sparkd.lab.standins.switch import Switch

#: max_tokens when a /v1/completions request gives none (vLLM's and OpenAI's default there).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: The series /metrics serves, per framework: (name, type, help, what it counts). Names from
#: shared/reference/framework-facts.md section 2; "success" is counted per finished_reason label.
METRICS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "vllm": (
        ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", "running"),
        ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", "waiting"),
        ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", "prompt"),
        ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", "generation"),
        ("vllm:request_success_total", "counter", "Count of successfully processed requests.", "success"),
    ),
    "sglang": (
        ("sglang:num_running_reqs", "gauge", "The number of running requests.", "running"),
        ("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", "waiting"),
        ("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", "prompt"),
        ("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", "generation"),
        ("sglang:num_requests_total", "counter", "Number of requests processed.", "requests"),
    ),
    "trtllm": (
        ("trtllm_request_success_total", "counter", "Count of successfully processed requests.", "success"),
        ("trtllm_prompt_tokens_total", "counter", "Number of prefill tokens processed.", "prompt"),
    ),
}
#: The labels of every series: vLLM's model_name and engine (the engine core's index); SGLang's and
#: TensorRT-LLM's label sets are not recorded in framework-facts.md, so those carry model_name only.
LABELS = {"vllm": 'model_name="{name}",engine="0"', "sglang": 'model_name="{name}"', "trtllm": 'model_name="{name}"'}
#: How many iteration-stats entries the engine keeps for TensorRT-LLM's JSON /metrics (drained by each read).
MAX_ITERATIONS = 1000


class Stage(Protocol):
    """A worker rank, as the head reaches it over the rendezvous connection (or a Ray stage actor,
    vllm_ray.py: then rank 0 is one too, and the head process is no stage of its own)."""

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]: ...


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Engine:
    """The head's engine: one request in the pipeline at a time, and the framework's Prometheus counters."""

    def __init__(
        self, name: str, host_ip: str, workers: Mapping[int, Stage], switch: Switch, framework: str = "vllm"
    ) -> None:
        self.name, self.host_ip, self.workers, self.switch = name, host_ip, workers, switch
        self.framework = framework
        self.iterations: deque[dict[str, Any]] = deque(maxlen=MAX_ITERATIONS)
        self.iteration = 0
        self.pipeline = threading.Lock()
        self.stats = threading.Lock()
        self.running = self.waiting = 0
        self.prompt_tokens = self.generation_tokens = 0
        self.success = {"stop": 0, "length": 0}

    def generate(self, prompt: str, max_tokens: int | None, record: bool = True) -> tuple[list[str], int, str]:
        """Runs `prompt` through every stage; returns the tokens (words), the prompt's tokens and the finish
        reason. A wedge anywhere holds it here, counted as running, with no tokens. `record=False` (a health
        probe's generation) leaves the counters as they were."""
        with self.stats:
            self.waiting += 1
        with self.pipeline:
            with self.stats:
                self.waiting -= 1
                self.running += 1
            t0 = time.monotonic()
            try:
                self.switch.running.wait()
                stages = [] if 0 in self.workers else [{"stage": 0, "host_ip": self.host_ip}]
                stages += [self.workers[rank].ask({"prompt": prompt}) for rank in sorted(self.workers)]
                route = " -> ".join(f"stage {s['stage']} ({s['host_ip']})" for s in stages)
                tokens = f"Hello from the sparkd lab: your prompt passed pipeline {route}.".split()
                reason = "stop"
                if max_tokens is not None and len(tokens) > max_tokens:
                    tokens, reason = tokens[:max_tokens], "length"
                prompt_tokens = len(prompt.split())
                if record:
                    self._record(prompt_tokens, len(tokens), reason, time.monotonic() - t0)
                return tokens, prompt_tokens, reason
            finally:
                with self.stats:
                    self.running -= 1

    def _record(self, prompt_tokens: int, tokens: int, reason: str, seconds: float) -> None:
        with self.stats:
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += tokens
            self.success[reason] += 1
            self.iteration += 1
            self.iterations.append(
                {
                    "iter": self.iteration,
                    "iterLatencyMS": round(seconds * 1000, 3),
                    "numActiveRequests": self.running,
                    "numQueuedRequests": self.waiting,
                    "numCompletedRequests": 1,
                    "numNewTokens": tokens,
                    "timestamp": time.strftime("%m-%d-%Y %H:%M:%S"),
                }
            )

    def drain_iterations(self) -> list[dict[str, Any]]:
        """The iteration stats since the last call (TensorRT-LLM's /metrics hands out each entry once)."""
        with self.stats:
            out = list(self.iterations)
            self.iterations.clear()
        return out

    def metrics(self) -> str:
        """Prometheus text exposition as prometheus_client writes it (counters with `_total`, float values)."""
        labels = LABELS[self.framework].format(name=_label(self.name))
        with self.stats:
            values = {
                "running": [(labels, self.running)],
                "waiting": [(labels, self.waiting)],
                "prompt": [(labels, self.prompt_tokens)],
                "generation": [(labels, self.generation_tokens)],
                "requests": [(labels, sum(self.success.values()))],
                "success": [(f'{labels},finished_reason="{r}"', n) for r, n in self.success.items()],
            }
        out = []
        for metric, kind, help_text, what in METRICS[self.framework]:
            out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            out += [f"{metric}{{{lab}}} {float(value)}" for lab, value in values[what]]
        return "\n".join(out) + "\n"


class BadRequest(Exception):
    pass


def max_tokens_of(body: dict[str, Any], keys: tuple[str, ...], default: int | None) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"{key} must be an integer of at least 1, got {str(value)[:40]}")
        return value
    return default
