"""The stand-in head's engine: completions through every pipeline stage, and vLLM's Prometheus counters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from sparkd.lab.standins.switch import Switch

#: max_tokens when a /v1/completions request gives none (vLLM's and OpenAI's default there).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: The series /metrics serves: vLLM's names (shared/reference/framework-facts.md), types and help texts.
METRICS = {
    "vllm:num_requests_running": ("gauge", "Number of requests in model execution batches."),
    "vllm:num_requests_waiting": ("gauge", "Number of requests waiting to be processed."),
    "vllm:prompt_tokens_total": ("counter", "Number of prefill tokens processed."),
    "vllm:generation_tokens_total": ("counter", "Number of generation tokens processed."),
    "vllm:request_success_total": ("counter", "Count of successfully processed requests."),
}


class Stage(Protocol):
    """A worker rank, as the head reaches it over the rendezvous connection."""

    def ask(self, obj: dict[str, Any]) -> dict[str, Any]: ...


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Engine:
    """The head's engine: one request in the pipeline at a time, and vLLM's Prometheus counters."""

    def __init__(self, name: str, host_ip: str, workers: Mapping[int, Stage], switch: Switch) -> None:
        self.name, self.host_ip, self.workers, self.switch = name, host_ip, workers, switch
        self.pipeline = threading.Lock()
        self.stats = threading.Lock()
        self.running = self.waiting = 0
        self.prompt_tokens = self.generation_tokens = 0
        self.success = {"stop": 0, "length": 0}

    def generate(self, prompt: str, max_tokens: int | None) -> tuple[list[str], int, str]:
        """Runs `prompt` through every stage; returns the tokens (words), the prompt's tokens and the finish
        reason. A wedge anywhere holds it here, counted as running, with no tokens."""
        with self.stats:
            self.waiting += 1
        with self.pipeline:
            with self.stats:
                self.waiting -= 1
                self.running += 1
            try:
                self.switch.running.wait()
                stages = [{"stage": 0, "host_ip": self.host_ip}]
                stages += [self.workers[rank].ask({"prompt": prompt}) for rank in sorted(self.workers)]
                route = " -> ".join(f"stage {s['stage']} ({s['host_ip']})" for s in stages)
                tokens = f"Hello from the sparkd lab: your prompt passed pipeline {route}.".split()
                reason = "stop"
                if max_tokens is not None and len(tokens) > max_tokens:
                    tokens, reason = tokens[:max_tokens], "length"
                prompt_tokens = len(prompt.split())
                with self.stats:
                    self.prompt_tokens += prompt_tokens
                    self.generation_tokens += len(tokens)
                    self.success[reason] += 1
                return tokens, prompt_tokens, reason
            finally:
                with self.stats:
                    self.running -= 1

    def metrics(self) -> str:
        """Prometheus text exposition as vLLM's prometheus_client writes it (counters with `_total`, float
        values). vLLM labels every series with model_name and engine (the engine core's index)."""
        labels = f'model_name="{_label(self.name)}",engine="0"'
        with self.stats:
            samples = {
                "vllm:num_requests_running": [(labels, self.running)],
                "vllm:num_requests_waiting": [(labels, self.waiting)],
                "vllm:prompt_tokens_total": [(labels, self.prompt_tokens)],
                "vllm:generation_tokens_total": [(labels, self.generation_tokens)],
                "vllm:request_success_total": [(f'{labels},finished_reason="{r}"', n) for r, n in self.success.items()],
            }
        out = []
        for metric, values in samples.items():
            kind, help_text = METRICS[metric]
            out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            out += [f"{metric}{{{lab}}} {float(value)}" for lab, value in values]
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
