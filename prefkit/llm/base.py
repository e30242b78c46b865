"""The LLM backend interface: requests, results, errors, counters, and the cached base class.

One small interface serves every LLM use in prefkit (judges, critics, refiners, principle
proposers and voters, rubric writers):

- ``backend.chat(requests) -> list[ChatResult]``: for each :class:`ChatRequest` (messages, ``n``
  samples, temperature, max tokens, seed, stop strings) ``n`` completions;
- ``backend.complete(requests) -> list[ChatResult]``: the same for raw text prompts (no chat
  template; ``CompletionRequest``);
- ``backend.choice_logprobs(prompts, choices) -> np.ndarray [N, C]``: the next-token log-prob of
  each choice (a short label such as ``"A"``) after each chat prompt, where the backend has
  log-probs (``backend.supports_logprobs``).

Every backend counts what it did (:class:`Counters`: requests, cache hits, retries, failures,
malformed answers, tokens, latency, cost) and may keep a :class:`~prefkit.llm.cache.RequestCache`
on disk keyed by the full request (backend identity, model, messages, every sampling argument),
so a rerun after a failure costs only the requests that did not succeed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from prefkit.data.records import Message

Messages = list[Message]


class LLMError(RuntimeError):
    """An LLM backend could not answer (the message says which endpoint and what to do)."""


class EndpointError(LLMError):
    """The endpoint is unreachable, timed out, refused the request or rate-limited every retry."""


class MalformedResponseError(LLMError):
    """The endpoint answered, but not with a usable completion (counted, never used)."""


def check_messages(messages: Any, what: str = "messages") -> Messages:
    """A non-empty list of ``{"role", "content"}`` string messages, or ``ValueError``."""
    if not isinstance(messages, list | tuple) or not messages:
        raise ValueError(f"{what} must be a non-empty list of {{role, content}} messages, got {messages!r}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{what}[{i}] needs string 'role' and 'content', got {m!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


@dataclass(frozen=True)
class SamplingArgs:
    """What every request shares: ``n`` samples, temperature (0 = greedy), max new tokens,
    the sampling seed (``None``: unseeded, still cached by this key) and stop strings."""

    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be non-empty strings, got {self.stop!r}")


@dataclass(frozen=True)
class ChatRequest(SamplingArgs):
    """A chat-completions request: ``messages`` plus :class:`SamplingArgs`."""

    messages: tuple[Message, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "messages", tuple(check_messages(list(self.messages))))

    def key(self) -> dict[str, Any]:
        row = asdict(self)
        row["messages"] = [dict(m) for m in self.messages]
        row["stop"] = list(self.stop)
        return {"op": "chat", **row}


@dataclass(frozen=True)
class CompletionRequest(SamplingArgs):
    """A raw-text completion request (no chat template): ``prompt`` plus :class:`SamplingArgs`."""

    prompt: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError("a completion request needs a non-empty prompt string")

    def key(self) -> dict[str, Any]:
        row = asdict(self)
        row["stop"] = list(self.stop)
        return {"op": "complete", **row}


@dataclass(frozen=True)
class ChatResult:
    """``n`` completions of one request, with what they cost."""

    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"texts": list(self.texts), "finish_reasons": list(self.finish_reasons),
                "prompt_tokens": int(self.prompt_tokens), "completion_tokens": int(self.completion_tokens),
                "seconds": float(self.seconds)}

    @classmethod
    def from_json(cls, row: dict[str, Any], *, cached: bool = False) -> ChatResult:
        texts, reasons = row["texts"], row["finish_reasons"]
        if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts) and len(reasons) == len(texts)):
            raise ValueError("not a ChatResult")
        return cls(texts, list(reasons), int(row["prompt_tokens"]), int(row["completion_tokens"]),
                   float(row["seconds"]), cached)


@dataclass
class Counters:
    """What a backend did. ``requests`` reached the model (cache hits did not); ``retries`` are
    re-sent requests (rate limits, timeouts, connection errors, 5xx); ``failures`` requests that
    failed for good; ``malformed`` answers that were not usable (never used as an answer);
    ``seconds`` the summed latency of the requests that reached the model; ``cost`` is
    ``prompt_tokens * price_prompt + completion_tokens * price_completion`` (per million tokens,
    from the configuration; 0 when no price is set)."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    malformed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["mean_latency_s"] = self.seconds / self.requests if self.requests else None
        return out


class Backend:
    """Shared behaviour of the backends: the disk cache, the counters and input checks.

    Subclasses set ``identity`` (a JSON-safe dict naming the backend and model, part of every
    cache key), ``supports_logprobs``, and implement ``_chat``, ``_complete`` and
    ``_choice_logprobs`` on the requests that missed the cache.
    """

    supports_logprobs: bool = False
    identity: dict[str, Any]
    name: str

    def __init__(self, *, cache: Any = None, price_prompt: float = 0.0, price_completion: float = 0.0) -> None:
        if price_prompt < 0 or price_completion < 0:
            raise ValueError("prices must be >= 0 (per million tokens)")
        self.cache = cache
        self.price_prompt, self.price_completion = float(price_prompt), float(price_completion)
        self.counters = Counters()

    # -- public API --------------------------------------------------------------------------

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """``n`` completions per chat request (cached by the full request)."""
        for r in requests:
            if not isinstance(r, ChatRequest):
                raise TypeError(f"chat takes ChatRequest objects, got {type(r).__name__}")
        return self._cached_results(list(requests), self._chat)

    def complete(self, requests: Sequence[CompletionRequest]) -> list[ChatResult]:
        """``n`` completions per raw-text request (no chat template)."""
        for r in requests:
            if not isinstance(r, CompletionRequest):
                raise TypeError(f"complete takes CompletionRequest objects, got {type(r).__name__}")
        return self._cached_results(list(requests), self._complete)

    def ask(self, messages: Messages, **sampling: Any) -> list[str]:
        """Convenience: the texts of one chat request."""
        return self.chat([ChatRequest(messages=tuple(check_messages(messages)), **sampling)])[0].texts

    def choice_logprobs(self, prompts: Sequence[Messages], choices: Sequence[str]) -> np.ndarray:
        """``[N, C]`` next-token log-probs of each choice after each chat prompt (``-inf`` where a
        backend that only reports its top tokens did not list the choice)."""
        if not self.supports_logprobs:
            raise LLMError(f"{self.name} does not report log-probs; use a judge that reads generated text")
        choices = list(choices)
        if len(choices) < 2 or len(set(choices)) != len(choices) or not all(isinstance(c, str) and c.strip()
                                                                          for c in choices):
            raise ValueError(f"choices must be at least two distinct non-empty strings, got {choices!r}")
        prompts = [check_messages(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
        out = np.full((len(prompts), len(choices)), np.nan)
        keys = [{"op": "choice_logprobs", "messages": p, "choices": choices} for p in prompts]
        missing = []
        for i, key in enumerate(keys):
            hit = self._cache_get(key)
            if hit is not None:
                try:
                    row = np.array([-np.inf if v is None else float(v) for v in hit["logprobs"]])
                    if row.shape == (len(choices),):
                        out[i] = row
                        continue
                except (KeyError, TypeError, ValueError):
                    pass
            missing.append(i)
        self.counters.add(cache_hits=len(prompts) - len(missing))
        if missing:
            fresh = np.asarray(self._choice_logprobs([prompts[i] for i in missing], choices), dtype=float)
            if fresh.shape != (len(missing), len(choices)):  # pragma: no cover - a subclass bug
                raise LLMError(f"{self.name}: choice_logprobs returned shape {fresh.shape}")
            for j, i in enumerate(missing):
                out[i] = fresh[j]
                self._cache_put(keys[i], {"logprobs": [None if not np.isfinite(v) else float(v) for v in fresh[j]]})
        return out

    def summary(self) -> dict[str, Any]:
        return {"backend": self.name, **self.counters.to_json()}

    # -- for subclasses ----------------------------------------------------------------------

    def _chat(self, requests: list[ChatRequest]) -> list[ChatResult]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _complete(self, requests: list[CompletionRequest]) -> list[ChatResult]:  # pragma: no cover
        raise NotImplementedError

    def _choice_logprobs(self, prompts: list[Messages], choices: list[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _account(self, result: ChatResult) -> None:
        cost = (result.prompt_tokens * self.price_prompt + result.completion_tokens * self.price_completion) / 1e6
        self.counters.add(requests=1, prompt_tokens=result.prompt_tokens,
                          completion_tokens=result.completion_tokens, seconds=result.seconds, cost=cost)

    # -- cache -------------------------------------------------------------------------------

    def _full_key(self, key: dict[str, Any]) -> dict[str, Any]:
        return {"identity": self.identity, **key}

    def _cache_get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return None if self.cache is None else self.cache.get(self._full_key(key))

    def _cache_put(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        if self.cache is not None:
            self.cache.put(self._full_key(key), value)

    def _cached_results(self, requests: list[Any], run: Any) -> list[ChatResult]:
        out: list[ChatResult | None] = [None] * len(requests)
        missing = []
        for i, r in enumerate(requests):
            hit = self._cache_get(r.key())
            if hit is not None:
                try:
                    result = ChatResult.from_json(hit, cached=True)
                    if len(result.texts) == r.n:
                        out[i] = result
                        continue
                except (KeyError, TypeError, ValueError):
                    pass
            missing.append(i)
        self.counters.add(cache_hits=len(requests) - len(missing))
        if missing:
            fresh = run([requests[i] for i in missing])
            for i, result in zip(missing, fresh):
                out[i] = result
                self._cache_put(requests[i].key(), result.to_json())
        return out  # type: ignore[return-value]


def timed() -> float:
    return time.perf_counter()
