"""The serving probe: does the head's API port really produce tokens for this deployment?

One round per API port (`probe`), run by the state loop: `/health`; once it answers 200,
`/v1/models` (the port must serve this deployment's model) and the framework's
generated-token counter on `/metrics` (vLLM's `vllm:generation_tokens_total`). Tokens that
came out since the last round prove the server works without adding load; when none did, a
one-token completion must answer within the timeout. A pipeline passes every request through
every stage, so an answer is evidence from every rank. The answers are parsed here, bounded
and defensively (the endpoint is a process the daemon does not trust).
"""

from __future__ import annotations

import json
import re

from sparkd.host.protocols import HttpProbe
from sparkd.model.observed import ServingEvidence

MODELS_LIMIT = 64 * 1024
METRICS_LIMIT = 1024 * 1024
COMPLETION_LIMIT = 16 * 1024
#: vLLM's counter of generated tokens (framework-facts.md: counters are exposed with `_total`).
TOKENS_METRIC = "vllm:generation_tokens_total"
_SAMPLE = re.compile(rb"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}\n]{0,2048}\})?[ \t]+([-+0-9.eEinfNa]{1,40})", re.M)


def served_models(body: bytes) -> tuple[str, ...] | None:
    """The model ids of an OpenAI `/v1/models` answer; None when it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return None
    ids = [m.get("id") for m in data[:256] if isinstance(m, dict)]
    # Shown in messages: an id is the endpoint's text, made printable (a terminal must not obey it).
    return tuple("".join(c if c.isprintable() else "?" for c in i[:256]) for i in ids if isinstance(i, str))


def generated_tokens(text: bytes, metric: str = TOKENS_METRIC) -> float | None:
    """The sum of `metric` over its label sets in a Prometheus text exposition; None when absent."""
    total, seen = 0.0, False
    for name, _labels, value in _SAMPLE.findall(text):
        if name.decode() == metric:
            try:
                total += float(value)
            except ValueError:
                continue
            seen = True
    return total if seen else None


def completion_answered(body: bytes) -> bool:
    """Whether a completion answer carries at least one choice."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    choices = doc.get("choices") if isinstance(doc, dict) else None
    return isinstance(choices, list) and len(choices) > 0


def completion_request(served: str) -> bytes:
    """A one-token completion of a one-word prompt: the cheapest proof that tokens come out."""
    return json.dumps({"model": served, "prompt": "ping", "max_tokens": 1, "temperature": 0}).encode()


async def probe(
    http: HttpProbe, port: int, served: str, last: ServingEvidence, timeout: float, metric: str = TOKENS_METRIC
) -> ServingEvidence:
    """One round of evidence for `port`, following `last` (the previous round's). `metric` is the framework's
    generated-token counter ("" when its /metrics has none: every round then asks a one-token completion)."""
    health = await http.status("127.0.0.1", port, "/health", timeout)
    if health != 200:
        return ServingEvidence(health=health, health_failures=last.health_failures + 1, tokens=last.tokens)
    models_answer = await http.request("127.0.0.1", port, "/v1/models", timeout, limit=MODELS_LIMIT)
    models = served_models(models_answer.body) if models_answer and models_answer.status == 200 else None
    if models is not None and served not in models:
        return ServingEvidence(health=200, models=models, tokens=last.tokens)
    metrics = await http.request("127.0.0.1", port, "/metrics", timeout, limit=METRICS_LIMIT) if metric else None
    tokens = generated_tokens(metrics.body, metric) if metrics and metrics.status == 200 else None
    if tokens is not None and last.tokens is not None and tokens > last.tokens and last.probe_ok is not None:
        return ServingEvidence(200, 0, models, True, 0, f"{tokens - last.tokens:g} new tokens", tokens)
    answer = await http.request(
        "127.0.0.1", port, "/v1/completions", timeout, body=completion_request(served), limit=COMPLETION_LIMIT
    )
    if answer is not None and answer.status == 200 and completion_answered(answer.body):
        # The probe's own token counts: only tokens beyond it are someone else's evidence next round.
        after = tokens + 1 if tokens is not None else None
        return ServingEvidence(200, 0, models, True, 0, "a probe completion answered", after)
    detail = (
        f"a probe completion got no token in {timeout:g} s"
        if answer is None
        else f"a probe completion answered {answer.status} without a choice"
    )
    return ServingEvidence(200, 0, models, False, last.probe_failures + 1, detail, tokens)
