"""A small OpenAI-compatible server for a local Hugging Face causal LM (``prefkit llm serve``).

It serves any ``prefkit.policy.Policy`` (a checkpoint written by ``prefkit train`` or any local
causal LM) through the chat-completions schema, so every OpenAI-compatible tool can use it and
prefkit's own OpenAI backend can be tested end to end with no remote host:

- ``GET /v1/models``;
- ``POST /v1/chat/completions`` with ``messages``, ``n``, ``temperature``, ``max_tokens`` (or
  ``max_completion_tokens``), ``seed``, ``stop``, ``logprobs`` and ``top_logprobs`` (0..20: the
  log-probs of the sampled tokens and of the most probable alternatives at each position, at
  temperature 1, computed by re-scoring the sampled sequence);
- ``POST /v1/completions`` with ``prompt`` (a string) and the same sampling fields.

Errors are OpenAI-style JSON bodies ``{"error": {"message", "type", "code"}}`` with HTTP 400 (bad
request), 404 (unknown path or model) or 500. It binds ``127.0.0.1`` by default, serves one
request at a time on the model (a lock; HTTP handling is threaded) and uses the stdlib
``http.server`` (no extra dependency). For tests and local use, not a production server.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from prefkit.llm.base import ChatRequest, CompletionRequest
from prefkit.llm.hf import HFBackend


class RequestProblem(ValueError):
    """A request the server cannot serve: HTTP status, message, OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    def number(name: str, default: Any, kind: type) -> Any:
        value = body.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and int(value) != value):
            raise RequestProblem(400, f"'{name}' must be a {kind.__name__}, got {value!r}")
        return kind(value)

    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise RequestProblem(400, "'stop' must be a string or a list of non-empty strings")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return {"n": number("n", 1, int), "temperature": number("temperature", 1.0, float),
            "max_tokens": number("max_tokens", 16, int) if max_tokens is None else _as_int(max_tokens),
            "seed": None if body.get("seed") is None else number("seed", 0, int), "stop": tuple(stop)}


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestProblem(400, f"'max_tokens' must be an integer, got {value!r}")
    return value


class ModelServer:
    """The model side of the server: turns request bodies into response bodies."""

    def __init__(self, backend: HFBackend, model_name: str) -> None:
        self.backend, self.model_name = backend, model_name
        self.lock = threading.Lock()

    def _check_model(self, body: dict[str, Any]) -> None:
        if body.get("model") not in (None, self.model_name):
            raise RequestProblem(404, f"model {body.get('model')!r} is not served here (serving "
                                      f"{self.model_name!r})", "not_found_error")

    def _top(self, body: dict[str, Any]) -> int | None:
        if not body.get("logprobs"):
            return None
        k = body.get("top_logprobs", 0) or 0
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 20:
            raise RequestProblem(400, f"'top_logprobs' must be an integer in 0..20, got {k!r}")
        return k

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        try:
            request = ChatRequest(messages=tuple(body.get("messages") or ()), **_sampling(body))
        except ValueError as err:
            raise RequestProblem(400, str(err)) from None
        top = self._top(body)
        with self.lock:
            result = self._run(lambda: self.backend.chat([request])[0])
            prompt = self.backend.render(list(request.messages))
            choices = []
            for i, (text, reason) in enumerate(zip(result.texts, result.finish_reasons)):
                choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": text},
                                          "finish_reason": reason, "logprobs": None}
                if top is not None:
                    choice["logprobs"] = {"content": self._token_logprobs(prompt, text, top)}
                choices.append(choice)
        return self._envelope("chat.completion", choices, result)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise RequestProblem(400, "'prompt' must be a string")
        try:
            request = CompletionRequest(prompt=prompt, **_sampling(body))
        except ValueError as err:
            raise RequestProblem(400, str(err)) from None
        with self.lock:
            result = self._run(lambda: self.backend.complete([request])[0])
        choices = [{"index": i, "text": t, "finish_reason": f, "logprobs": None}
                   for i, (t, f) in enumerate(zip(result.texts, result.finish_reasons))]
        return self._envelope("text_completion", choices, result)

    def _run(self, call: Any) -> Any:
        try:
            return call()
        except ValueError as err:
            raise RequestProblem(400, str(err)) from None

    def _envelope(self, kind: str, choices: list[dict[str, Any]], result: Any) -> dict[str, Any]:
        return {"id": f"prefkit-{uuid.uuid4().hex[:12]}", "object": kind, "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                          "total_tokens": result.prompt_tokens + result.completion_tokens}}

    @torch.no_grad()
    def _token_logprobs(self, prompt: str, text: str, top: int) -> list[dict[str, Any]]:
        """Per generated token: its log-prob and the ``top`` most probable tokens at that position.
        An empty completion reports the first position's alternatives (what a judge reads)."""
        policy = self.backend.policy
        prompt_ids = policy.prompt_ids([prompt])[0]
        response_ids = policy.response_ids([text], add_eos=False)[0] if text else []
        ids = torch.tensor([prompt_ids + response_ids], device=policy.device)
        logits = policy.model(input_ids=ids).logits[0].float()
        log_probs = torch.log_softmax(logits[len(prompt_ids) - 1:], dim=-1)
        positions = max(len(response_ids), 1)
        tokenizer = policy.tokenizer
        out = []
        for t in range(positions):
            row = log_probs[t]
            values, indices = row.topk(min(max(top, 1), row.shape[-1]))
            alternatives = [{"token": tokenizer.decode([int(i)]), "logprob": float(v), "bytes": None}
                            for v, i in zip(values.tolist(), indices.tolist())][:top]
            token_id = response_ids[t] if t < len(response_ids) else int(indices[0])
            out.append({"token": tokenizer.decode([token_id]), "logprob": float(row[token_id]), "bytes": None,
                        "top_logprobs": alternatives})
        return out


class ChatHandler(BaseHTTPRequestHandler):
    """HTTP side: routes, JSON parsing and OpenAI-style errors (subclass to inject faults)."""

    server: ChatHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet unless asked
        if self.server.verbose:
            super().log_message(format, *args)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.wfile.write(data)

    def send_error_json(self, status: int, message: str, kind: str = "invalid_request_error",
                        headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise RequestProblem(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestProblem(400, "the request body must be a JSON object")
        return body

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            name = self.server.model.model_name
            self.send_json(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "prefkit"}]})
        else:
            self.send_error_json(404, f"no route {self.path}", "not_found_error")

    def do_POST(self) -> None:
        routes = {"/v1/chat/completions": self.server.model.chat, "/chat/completions": self.server.model.chat,
                  "/v1/completions": self.server.model.complete, "/completions": self.server.model.complete}
        route = routes.get(self.path.rstrip("/"))
        try:
            body = self.read_body()
            if route is None:
                raise RequestProblem(404, f"no route {self.path}", "not_found_error")
            self.send_json(200, route(body))
        except RequestProblem as problem:
            self.send_error_json(problem.status, problem.message, problem.kind)
        except Exception as err:  # the server keeps serving; the client gets a 500
            self.send_error_json(500, f"{type(err).__name__}: {err}", "server_error")


class ChatHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], model: ModelServer, handler: type[ChatHandler] = ChatHandler,
                 verbose: bool = False) -> None:
        super().__init__(address, handler)
        self.model, self.verbose = model, verbose

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def make_server(backend: HFBackend, *, model_name: str = "prefkit", host: str = "127.0.0.1", port: int = 8000,
                handler: type[ChatHandler] = ChatHandler, verbose: bool = False) -> ChatHTTPServer:
    """A server (not yet serving): call ``serve_forever()``, or run it in a thread."""
    return ChatHTTPServer((host, port), ModelServer(backend, model_name), handler, verbose)


def serve_in_thread(server: ChatHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread
