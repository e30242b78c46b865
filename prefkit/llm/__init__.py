"""One small LLM backend for judges, critics, refiners, principle proposers and rubric writers.

- :class:`~prefkit.llm.hf.HFBackend`: any local Hugging Face causal LM (``prefkit.policy.Policy``);
- :class:`~prefkit.llm.openai_compat.OpenAIBackend`: any OpenAI-compatible endpoint (extra ``llm``);
- :func:`make_backend` / :class:`LLMConfig`: a backend from a spec (``hf:DIR``, ``openai:MODEL``),
  the environment and the configuration;
- :class:`RequestCache`: the on-disk cache keyed by the full request (JSON, atomic writes);
- ``prefkit llm serve``: an OpenAI-compatible server for a local model (``prefkit.llm.serve``).

docs/llm.md has the guide.
"""

from prefkit.llm.base import (
    Backend,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Counters,
    EndpointError,
    LLMError,
    MalformedResponseError,
    Messages,
    check_messages,
)
from prefkit.llm.cache import RequestCache
from prefkit.llm.config import LLMConfig, make_backend

__all__ = [
    "Backend",
    "ChatRequest",
    "ChatResult",
    "CompletionRequest",
    "Counters",
    "EndpointError",
    "LLMConfig",
    "LLMError",
    "MalformedResponseError",
    "Messages",
    "RequestCache",
    "check_messages",
    "make_backend",
]
