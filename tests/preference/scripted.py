"""A backend that answers chat requests with a Python function (a test double of ``prefkit.llm``:
the real cache, counters and request checks of ``Backend``, no model)."""

from __future__ import annotations

import re
from collections.abc import Callable

from prefkit.llm.base import Backend, ChatResult


class ScriptedBackend(Backend):
    supports_logprobs = False

    def __init__(self, answer: Callable[[str], str], *, name: str = "scripted",
                 logprobs: Callable[[str, list[str]], list[float]] | None = None) -> None:
        super().__init__()
        self.answer, self.name, self.logprobs = answer, name, logprobs
        self.supports_logprobs = logprobs is not None
        self.identity = {"backend": "scripted", "name": name}
        self.prompts: list[str] = []

    def _chat(self, requests):
        out = []
        for r in requests:
            content = r.messages[-1]["content"]
            self.prompts.append(content)
            result = ChatResult([self.answer(content) for _ in range(r.n)], ["stop"] * r.n, 10, 5, 0.001)
            self._account(result)
            out.append(result)
        return out

    def _choice_logprobs(self, prompts, choices):
        import numpy as np

        return np.array([self.logprobs(p[-1]["content"], list(choices)) for p in prompts], dtype=float)


def field(content: str, label: str) -> str:
    """The text after ``label:`` up to the next blank line."""
    match = re.search(rf"{re.escape(label)}: (.*?)(\n\n|$)", content, flags=re.S)
    return match.group(1) if match else ""
