"""A tiny Hugging Face model (built from a config, word-level tokenizer fitted here) served on
127.0.0.1 through the chat-completions schema, and a handler that injects faults."""

from __future__ import annotations

import json
import socket
import time
from collections import deque

import pytest

from prefkit.config import TinyConfig
from prefkit.llm.hf import HFBackend
from prefkit.llm.serve import ChatHandler, make_server, serve_in_thread
from prefkit.policy import build_tiny_checkpoint

WORDS = "Response A B 1 2 the sky is blue red green sea"
"""Twelve words, so the vocabulary (with 4 special tokens and 4 chat-template words) has 20 entries:
an endpoint's top-20 log-probs then list every token and match the local model exactly."""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llm") / "model"
    return build_tiny_checkpoint(directory, [WORDS], TinyConfig(hidden_size=16, layers=1, heads=2), seed=0)


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir):
    return HFBackend.load(tiny_model_dir, device="cpu")


class FaultyHandler(ChatHandler):
    """Pops one fault per POST from ``server.faults``: ``"429"``, ``"500"``, ``"slow"`` (sleeps past
    the client's timeout), ``"malformed"`` (200 with a body that is not a completion),
    ``"garbage"`` (200 with a body that is not JSON), ``"no_logprobs"``, ``{"content": TEXT}`` (a
completion saying TEXT); ``None`` serves normally."""

    def do_POST(self) -> None:
        self.server.seen += 1
        fault = self.server.faults.popleft() if self.server.faults else None
        if fault is None:
            return super().do_POST()
        self.read_body()
        if isinstance(fault, dict):
            return self.send_json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "tiny",
                                        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                     "message": {"role": "assistant", "content": fault["content"]}}],
                                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        if fault == "429":
            return self.send_error_json(429, "slow down", "rate_limit_error", {"Retry-After": "0"})
        if fault == "500":
            return self.send_error_json(500, "boom", "server_error")
        if fault == "slow":
            time.sleep(self.server.slow_seconds)
            return self.send_error_json(500, "too late", "server_error")
        if fault == "malformed":
            return self.send_json(200, {"id": "x", "object": "chat.completion", "choices": []})
        if fault == "garbage":
            return self.send_json(200, b"this is not json")
        if fault == "no_logprobs":
            return self.send_json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "tiny",
                                        "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                                                     "message": {"role": "assistant", "content": "A"}}]})
        raise AssertionError(f"unknown fault {fault!r}")  # pragma: no cover


@pytest.fixture(scope="session")
def server(hf_backend):
    srv = make_server(hf_backend, model_name="tiny", port=0, handler=FaultyHandler)
    srv.faults, srv.seen, srv.slow_seconds = deque(), 0, 1.0
    serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def faults(server):
    server.faults.clear()
    server.seen = 0
    yield server.faults
    server.faults.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dumps(value) -> str:
    return json.dumps(value)
