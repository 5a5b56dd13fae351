"""The stand-ins' HTTP server: GET routes of the framework's own, and the OpenAI-compatible completions
(`/v1/chat/completions`, `/v1/completions`, both honouring `max_tokens`) through the head's Engine."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sparkd.lab.standins.console import fail, log
from sparkd.lab.standins.engine import COMPLETIONS_DEFAULT_MAX_TOKENS, BadRequest, Engine, max_tokens_of

#: A GET route: () -> (status, body, content type).
Route = Callable[[], tuple[int, bytes, str]]
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def as_json(code: int, body: object) -> tuple[int, bytes, str]:
    return code, json.dumps(body).encode(), "application/json"


def models(name: str, owned_by: str) -> Route:
    return lambda: as_json(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": owned_by}]})


def make_server(host: str, port: int, routes: dict[str, Route], engine: Engine | None = None) -> ThreadingHTTPServer:
    """A server on host:port with `routes`, and the completions when `engine` is given (a head)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a wedge outlived its timeout)

        def _json(self, code: int, body: dict[str, Any]) -> None:
            self._send(*as_json(code, body))

        def _error(self, code: int, message: str, kind: str) -> None:
            self._json(code, {"error": {"message": message, "type": kind, "param": None, "code": code}})

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self._json(404, {"error": "not found"})
            else:
                self._send(*route())

        def do_POST(self) -> None:
            if engine is None or self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._json(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                if self.path == "/v1/chat/completions":
                    self._chat(engine, body)
                else:
                    self._completion(engine, body)
            except (BadRequest, ValueError) as e:
                self._error(400, str(e), "BadRequestError")

        def _chat(self, engine: Engine, body: dict[str, Any]) -> None:
            messages = body.get("messages", [])
            if not isinstance(messages, list):
                raise BadRequest("messages must be a list")
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
            max_tokens = max_tokens_of(body, ("max_completion_tokens", "max_tokens"), None)
            tokens, prompt_tokens, reason = engine.generate(prompt, max_tokens)
            message = {"role": "assistant", "content": " ".join(tokens)}
            choice = {"index": 0, "message": message, "finish_reason": reason}
            self._answer(engine, "chatcmpl", "chat.completion", choice, prompt_tokens, len(tokens))

        def _completion(self, engine: Engine, body: dict[str, Any]) -> None:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list):
                prompt = " ".join(map(str, prompt))
            if not isinstance(prompt, str):
                raise BadRequest("prompt must be a string or a list of strings")
            max_tokens = max_tokens_of(body, ("max_tokens",), COMPLETIONS_DEFAULT_MAX_TOKENS)
            tokens, prompt_tokens, reason = engine.generate(prompt, max_tokens)
            choice = {"index": 0, "text": " ".join(tokens), "logprobs": None, "finish_reason": reason}
            self._answer(engine, "cmpl", "text_completion", choice, prompt_tokens, len(tokens))

        def _answer(
            self, engine: Engine, prefix: str, kind: str, choice: dict[str, Any], prompt_tokens: int, tokens: int
        ) -> None:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            self._json(
                200,
                {
                    "id": f"{prefix}-lab-{int(time.time() * 1000)}",
                    "object": kind,
                    "created": int(time.time()),
                    "model": engine.name,
                    "choices": [choice],
                    "usage": usage,
                },
            )

        def log_message(self, format: str, *a: Any) -> None:
            log(format % a)

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror}")
