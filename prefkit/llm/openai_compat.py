"""An OpenAI-compatible endpoint as a backend (vLLM's server, llama.cpp, Ollama, a hosted API).

Uses the ``openai`` client library (extra ``llm``) with the client's own retries off, so that
every retry is counted here and the final error is clear:

- **retries**: rate limits (HTTP 429), timeouts, connection errors and server errors (5xx) are
  retried up to ``max_retries`` times with exponential back-off (``retry_delay * 2**k``, capped
  at ``retry_max_delay``; a ``Retry-After`` header is honoured up to the cap); then an
  :class:`~prefkit.llm.base.EndpointError` names the endpoint, what went wrong and how many
  attempts were made. Other HTTP errors (400, 401, 404, ...) fail at once with the server's message;
- **timeouts**: ``timeout`` seconds per request;
- **concurrency**: at most ``concurrency`` requests in flight (a thread pool);
- **malformed answers** (no choices, fewer than ``n`` choices, a missing message, no log-probs
  where asked): counted in ``counters.malformed`` and raised as
  :class:`~prefkit.llm.base.MalformedResponseError`; never cached and never used as an answer.

``choice_logprobs`` asks for one token with ``logprobs=true`` and ``top_logprobs`` (at most 20
on OpenAI's API) and sums the probabilities of the listed tokens that equal a choice after
stripping whitespace; a choice not among the top tokens gets ``-inf``, and an answer that lists
none of the choices is malformed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from prefkit.llm.base import (
    Backend,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    EndpointError,
    LLMError,
    MalformedResponseError,
    Messages,
    timed,
)

RETRIED_STATUS = (408, 409, 429)


def _require_openai() -> Any:
    try:
        import openai
    except ImportError as err:  # pragma: no cover - the dev extra installs it
        raise LLMError("the OpenAI-compatible backend needs the 'openai' package: pip install 'prefkit[llm]'") from err
    return openai


class OpenAIBackend(Backend):
    """Chat completions (and completions) from an OpenAI-compatible HTTP endpoint.

    Args:
        model: the model name the endpoint serves.
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token (local servers accept any string).
        timeout: seconds per request.
        max_retries: re-sends after a retryable failure (0: fail at the first).
        retry_delay, retry_max_delay: back-off in seconds.
        concurrency: requests in flight at once.
        top_logprobs: alternatives asked for in ``choice_logprobs``.
        split_n: send ``n`` requests of one sample (seeds ``seed + i``) for servers that ignore ``n``.
        cache, price_prompt, price_completion: see :class:`~prefkit.llm.base.Backend`.
    """

    supports_logprobs = True

    def __init__(self, model: str, *, base_url: str, api_key: str = "EMPTY", timeout: float = 60.0,
                 max_retries: int = 3, retry_delay: float = 1.0, retry_max_delay: float = 30.0,
                 concurrency: int = 4, top_logprobs: int = 20, split_n: bool = False, cache: Any = None,
                 price_prompt: float = 0.0, price_completion: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(cache=cache, price_prompt=price_prompt, price_completion=price_completion)
        if not model:
            raise ValueError("the endpoint's model name is empty; set llm.model or PREFKIT_LLM_MODEL")
        if not base_url:
            raise ValueError("the endpoint's base URL is empty; set llm.base_url or PREFKIT_LLM_BASE_URL")
        if timeout <= 0 or max_retries < 0 or retry_delay < 0 or concurrency < 1 or not 1 <= top_logprobs <= 20:
            raise ValueError("need timeout > 0, max_retries >= 0, retry_delay >= 0, concurrency >= 1 and "
                             "1 <= top_logprobs <= 20")
        openai = _require_openai()
        self.model, self.base_url = model, base_url.rstrip("/")
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.retry_delay, self.retry_max_delay = float(retry_delay), float(retry_max_delay)
        self.concurrency, self.top_logprobs, self.split_n = int(concurrency), int(top_logprobs), bool(split_n)
        self._sleep = sleep
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=self.timeout,
                                    max_retries=0)
        self.name = f"{self.base_url} (model {model})"
        self.identity = {"backend": "openai", "base_url": self.base_url, "model": model}

    # -- the retry loop ----------------------------------------------------------------------

    def _send(self, what: str, call: Callable[[], Any]) -> tuple[Any, float]:
        """``call()`` with counted retries; returns (response, seconds of the successful try)."""
        openai = _require_openai()
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            began = timed()
            try:
                return call(), timed() - began
            except (openai.APIResponseValidationError, ValueError) as err:  # a body that is not a completion
                raise self._malformed(f"the response body is not a valid completion ({type(err).__name__}: "
                                      f"{str(err)[:200]})") from None
            except openai.RateLimitError as err:
                last = "rate limited (HTTP 429)"
                wait = _retry_after(err)
            except openai.APITimeoutError:
                last = f"no answer within the {self.timeout:g} s timeout"
                wait = None
            except openai.APIConnectionError as err:
                last = f"cannot connect ({_cause(err)}); is the server running at this address?"
                wait = None
            except openai.APIStatusError as err:
                if err.status_code < 500 and err.status_code not in RETRIED_STATUS:
                    self.counters.add(failures=1)
                    raise EndpointError(f"{self.base_url}: {what} refused with HTTP {err.status_code}: "
                                        f"{_server_message(err)}") from None
                last = f"HTTP {err.status_code} ({_server_message(err)})"
                wait = _retry_after(err)
            if attempt + 1 < attempts:
                self.counters.add(retries=1)
                delay = min(self.retry_delay * 2 ** attempt, self.retry_max_delay)
                self._sleep(min(max(delay, wait or 0.0), self.retry_max_delay))
        self.counters.add(failures=1)
        raise EndpointError(f"{self.base_url}: {what} failed after {attempts} attempt(s) "
                            f"({self.max_retries} retries): {last}")

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def _malformed(self, message: str) -> MalformedResponseError:
        self.counters.add(malformed=1)
        return MalformedResponseError(f"{self.base_url}: malformed answer from model {self.model!r}: {message}")

    # -- chat and completions ----------------------------------------------------------------

    def _sampling(self, r: Any, n: int, seed: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "n": n, "temperature": r.temperature,
                                  "max_tokens": r.max_tokens}
        if seed is not None:
            kwargs["seed"] = int(seed)
        if r.stop:
            kwargs["stop"] = list(r.stop)
        return kwargs

    def _splits(self, r: Any) -> list[tuple[int, int | None]]:
        if not self.split_n or r.n == 1:
            return [(r.n, r.seed)]
        return [(1, None if r.seed is None else r.seed + i) for i in range(r.n)]

    def _chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        def one(r: ChatRequest) -> ChatResult:
            parts = []
            for n, seed in self._splits(r):
                response, seconds = self._send("chat completion", lambda n=n, seed=seed: self.client.chat.completions.create(
                    messages=[dict(m) for m in r.messages], **self._sampling(r, n, seed)))
                parts.append(self._result(response, n, seconds, chat=True))
            return self._joined(parts)

        return self._map(one, requests)

    def _complete(self, requests: list[CompletionRequest]) -> list[ChatResult]:
        def one(r: CompletionRequest) -> ChatResult:
            parts = []
            for n, seed in self._splits(r):
                response, seconds = self._send("completion", lambda n=n, seed=seed: self.client.completions.create(
                    prompt=r.prompt, **self._sampling(r, n, seed)))
                parts.append(self._result(response, n, seconds, chat=False))
            return self._joined(parts)

        return self._map(one, requests)

    def _joined(self, parts: list[ChatResult]) -> ChatResult:
        return ChatResult([t for p in parts for t in p.texts], [f for p in parts for f in p.finish_reasons],
                          sum(p.prompt_tokens for p in parts), sum(p.completion_tokens for p in parts),
                          sum(p.seconds for p in parts))

    def _result(self, response: Any, n: int, seconds: float, *, chat: bool) -> ChatResult:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise self._malformed("no choices in the response")
        if len(choices) != n:
            raise self._malformed(f"asked for n={n} completions, got {len(choices)} (servers that ignore n "
                                  "need split_n=true / PREFKIT_LLM_SPLIT_N=1)")
        ordered = sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)
        texts, reasons = [], []
        for c in ordered:
            text = getattr(getattr(c, "message", None), "content", None) if chat else getattr(c, "text", None)
            if not isinstance(text, str):
                raise self._malformed("a choice has no text" + (" (message.content)" if chat else ""))
            texts.append(text)
            reasons.append(str(getattr(c, "finish_reason", None) or "unknown"))
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        result = ChatResult(texts, reasons, prompt_tokens, completion_tokens, seconds)
        self._account(result)
        return result

    # -- next-token log-probs ----------------------------------------------------------------

    def _choice_logprobs(self, prompts: list[Messages], choices: list[str]) -> np.ndarray:
        def one(messages: Messages) -> np.ndarray:
            response, seconds = self._send("log-prob request", lambda: self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=1, temperature=0.0, logprobs=True,
                top_logprobs=self.top_logprobs))
            choices_ = getattr(response, "choices", None)
            if not isinstance(choices_, list) or not choices_:
                raise self._malformed("no choices in the response")
            content = getattr(getattr(choices_[0], "logprobs", None), "content", None)
            if not isinstance(content, list) or not content:
                raise self._malformed("no log-probs in the answer (does the server support logprobs=true?)")
            top = getattr(content[0], "top_logprobs", None)
            if not isinstance(top, list) or not top:
                raise self._malformed("no top_logprobs in the answer")
            row = np.full(len(choices), -np.inf)
            for entry in top:
                token, logprob = getattr(entry, "token", None), getattr(entry, "logprob", None)
                if not isinstance(token, str) or not isinstance(logprob, int | float) or math.isnan(logprob):
                    raise self._malformed(f"a top_logprobs entry is not a token and a number: {entry!r}")
                if token.strip() in choices:
                    k = choices.index(token.strip())
                    row[k] = np.logaddexp(row[k], float(logprob))
            if not np.isfinite(row).any():
                raise self._malformed(f"none of the choices {choices} is among the top {len(top)} next tokens")
            usage = getattr(response, "usage", None)
            self._account(ChatResult([], [], int(getattr(usage, "prompt_tokens", 0) or 0),
                                     int(getattr(usage, "completion_tokens", 0) or 0), seconds))
            return row

        return np.stack(self._map(one, prompts)) if prompts else np.zeros((0, len(choices)))


def _retry_after(err: Any) -> float | None:
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _server_message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(err, "message", err))


def _cause(err: BaseException) -> str:
    cause = err.__cause__ or err.__context__
    return type(cause).__name__ if cause is not None else "connection error"
