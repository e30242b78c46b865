"""Which backend to use and how: ``LLMConfig`` (typed, strict) and ``make_backend(spec)``.

A backend is named by a spec string:

- ``hf:DIR`` (or just ``DIR``): a local Hugging Face causal LM (``prefkit.llm.hf.HFBackend``);
- ``openai:MODEL``: model ``MODEL`` of an OpenAI-compatible endpoint; ``openai`` alone takes the
  model from the configuration or ``PREFKIT_LLM_MODEL``.

Settings: ``LLMConfig.from_env(**overrides)`` takes the dataclass defaults, then the environment
variables below, then the overrides (what the commands use); ``prefkit.config.load(LLMConfig,
path, ["key=value"])`` reads a YAML file and dotted overrides instead (strictly checked, without
the environment):

=============================  ================================  =========================
field                          environment variable              default
=============================  ================================  =========================
``base_url``                   ``PREFKIT_LLM_BASE_URL``,         ``http://127.0.0.1:8000/v1``
                               then ``OPENAI_BASE_URL``
``model``                      ``PREFKIT_LLM_MODEL``             (none)
``api_key`` (never saved)      ``PREFKIT_LLM_API_KEY``,          ``EMPTY``
                               then ``OPENAI_API_KEY``
``timeout`` (s)                ``PREFKIT_LLM_TIMEOUT``           60
``max_retries``                ``PREFKIT_LLM_MAX_RETRIES``       3
``retry_delay`` (s)            ``PREFKIT_LLM_RETRY_DELAY``       1.0
``concurrency``                ``PREFKIT_LLM_CONCURRENCY``       4
``split_n``                    ``PREFKIT_LLM_SPLIT_N``           false
``cache`` (directory or "")    ``PREFKIT_LLM_CACHE``             ``$PREFKIT_CACHE/llm``, else
                                                                 ``~/.cache/prefkit/llm``
``price_prompt``/``price_completion`` (per 1M tokens)             0
``device`` (hf)                                                  ``auto``
=============================  ================================  =========================

The API key is read from the environment (or given in Python) and is never written to a
config file or a cache key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from prefkit.llm.base import Backend
from prefkit.llm.cache import RequestCache

ENV = {
    "base_url": ("PREFKIT_LLM_BASE_URL", "OPENAI_BASE_URL"),
    "model": ("PREFKIT_LLM_MODEL",),
    "timeout": ("PREFKIT_LLM_TIMEOUT",),
    "max_retries": ("PREFKIT_LLM_MAX_RETRIES",),
    "retry_delay": ("PREFKIT_LLM_RETRY_DELAY",),
    "concurrency": ("PREFKIT_LLM_CONCURRENCY",),
    "split_n": ("PREFKIT_LLM_SPLIT_N",),
    "cache": ("PREFKIT_LLM_CACHE",),
}
API_KEY_ENV = ("PREFKIT_LLM_API_KEY", "OPENAI_API_KEY")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def default_cache_dir() -> str:
    root = os.environ.get("PREFKIT_CACHE")
    return str(Path(root) / "llm") if root else str(Path.home() / ".cache" / "prefkit" / "llm")


@dataclass(frozen=True)
class LLMConfig:
    """Settings of the LLM backend (see the module doc for the environment variables)."""

    base_url: str = DEFAULT_BASE_URL
    model: str = ""
    timeout: float = 60.0
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_max_delay: float = 30.0
    concurrency: int = 4
    top_logprobs: int = 20
    split_n: bool = False
    cache: str | None = None
    """Cache directory; ``None`` the default directory, ``""`` no cache."""
    price_prompt: float = 0.0
    price_completion: float = 0.0
    device: str = "auto"
    batch_size: int = 8
    """hf: prompts per forward pass."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"llm.timeout must be positive, got {self.timeout}")
        if self.max_retries < 0 or self.retry_delay < 0 or self.retry_max_delay < 0:
            raise ValueError("llm.max_retries, llm.retry_delay and llm.retry_max_delay must be >= 0")
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("llm.concurrency and llm.batch_size must be >= 1")
        if not 1 <= self.top_logprobs <= 20:
            raise ValueError(f"llm.top_logprobs must be in 1..20, got {self.top_logprobs}")
        if self.price_prompt < 0 or self.price_completion < 0:
            raise ValueError("llm.price_prompt and llm.price_completion must be >= 0")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """Defaults, then the environment variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, keys in ENV.items():
            raw = next((env[k] for k in keys if env.get(k)), None)
            if raw is None:
                continue
            kind = str(types[name])
            try:
                if "bool" in kind:
                    values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif "float" in kind:
                    values[name] = float(raw)
                elif "int" in kind:
                    values[name] = int(raw)
                else:
                    values[name] = raw
            except ValueError as err:
                raise ValueError(f"environment variable {keys[0]}={raw!r} is not a valid {kind}") from err
        return replace(cls(), **{**values, **overrides})

    def cache_dir(self) -> str | None:
        if self.cache == "":
            return None
        return self.cache or default_cache_dir()


def api_key(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return next((env[k] for k in API_KEY_ENV if env.get(k)), "EMPTY")


def make_backend(spec: str, config: LLMConfig | None = None, *, api_key_value: str | None = None,
                 trust_remote_code: bool = False) -> Backend:
    """The backend a spec names (``hf:DIR``, ``DIR``, ``openai:MODEL`` or ``openai``)."""
    cfg = config or LLMConfig.from_env()
    cache_dir = cfg.cache_dir()
    cache = RequestCache(cache_dir) if cache_dir else None
    if spec == "openai" or spec.startswith("openai:"):
        from prefkit.llm.openai_compat import OpenAIBackend

        model = spec[len("openai:"):] if spec.startswith("openai:") else cfg.model
        if not model:
            raise ValueError("llm spec 'openai' names no model: use openai:MODEL or set PREFKIT_LLM_MODEL")
        return OpenAIBackend(model, base_url=cfg.base_url, api_key=api_key_value or api_key(), timeout=cfg.timeout,
                             max_retries=cfg.max_retries, retry_delay=cfg.retry_delay,
                             retry_max_delay=cfg.retry_max_delay, concurrency=cfg.concurrency,
                             top_logprobs=cfg.top_logprobs, split_n=cfg.split_n, cache=cache,
                             price_prompt=cfg.price_prompt, price_completion=cfg.price_completion)
    from prefkit.llm.hf import HFBackend

    path = spec[len("hf:"):] if spec.startswith("hf:") else spec
    if not path:
        raise ValueError("llm spec 'hf:' names no model directory")
    return HFBackend.load(path, device=cfg.device, trust_remote_code=trust_remote_code, cache=cache,
                          batch_size=cfg.batch_size)
