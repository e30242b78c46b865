"""The local backend: a Hugging Face causal LM through ``prefkit.policy.Policy``.

- Chat prompts go through the tokenizer's chat template (with the generation prompt); a
  tokenizer without one gets the content of a single user message as is, or ``role: content``
  lines ending with ``assistant:`` for longer conversations.
- Sampling is the policy's own KV-cached sampler (temperature 0 is greedy); requests with the
  same sampling arguments run in batches of ``batch_size`` prompts, drawn from a generator seeded
  with the batch's first seed (so a seeded request is reproducible for the same batch). Stop
  strings cut the decoded text at their first occurrence.
- ``choice_logprobs``: one forward pass per batch, the last position's log-softmax read at each
  choice's first token (its spellings with and without a leading space summed, as the LLM judge
  has always done); a choice with no token of its own is an error naming it.

The cache is off by default (a ``Policy`` being trained changes under it); ``HFBackend.load(DIR,
cache=...)`` keys it by the directory and a fingerprint of its config and weights files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.llm.base import Backend, ChatRequest, ChatResult, CompletionRequest, Messages, timed
from prefkit.policy.sampling import last_logits, left_pad


def fingerprint(directory: str | os.PathLike[str]) -> str:
    """A hash of a model directory's config and the names, sizes and mtimes of its weights."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(root.iterdir()):
        if path.suffix in (".json", ".safetensors", ".model", ".txt") and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            if path.name == "config.json":
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class HFBackend(Backend):
    """A ``Policy`` (model and tokenizer) as an LLM backend; used read-only, in eval mode.

    Args:
        policy: the ``prefkit.policy.Policy``.
        name: shown in messages and summaries.
        batch_size: prompts per forward pass.
        cache: a ``RequestCache`` (only with a stable ``identity``; see the module doc).
        identity: what the cache keys are prefixed with (default: the policy's object id, which
            never matches across processes).
    """

    supports_logprobs = True

    def __init__(self, policy: Any, *, name: str | None = None, batch_size: int = 8, cache: Any = None,
                 identity: dict[str, Any] | None = None) -> None:
        super().__init__(cache=cache)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.policy = policy
        self.batch_size = batch_size
        self.name = name or "hf model"
        self.identity = identity or {"backend": "hf", "object": id(policy)}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "auto", trust_remote_code: bool = False,
             cache: Any = None, **kwargs: Any) -> HFBackend:
        from prefkit.policy import Policy

        policy = Policy.load(path, device=device, trust_remote_code=trust_remote_code)
        policy.model.eval()
        identity = {"backend": "hf", "model": str(Path(path).resolve()), "fingerprint": fingerprint(path)}
        return cls(policy, name=f"hf:{path}", cache=cache, identity=identity, **kwargs)

    # -- text ----------------------------------------------------------------------------------

    def render(self, messages: Messages) -> str:
        """The text the model reads for a chat prompt (see the module doc)."""
        if getattr(self.policy.tokenizer, "chat_template", None):
            return self.policy.render_prompt(list(messages))
        if len(messages) == 1 and messages[0]["role"] == "user":
            return messages[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def choice_token_ids(self, choice: str) -> list[int]:
        """Token ids that start ``choice`` (with and without a leading space), or ``ValueError``."""
        tokenizer = self.policy.tokenizer
        ids = []
        for spelling in (choice, " " + choice):
            encoded = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if encoded and encoded[0] != tokenizer.unk_token_id:
                ids.append(int(encoded[0]))
        if not ids:
            raise ValueError(f"the label {choice!r} is not in the vocabulary of {self.name}")
        return sorted(set(ids))

    def _check_positions(self, rows: Sequence[Sequence[int]], extra: int = 0) -> None:
        limit = getattr(self.policy.model.config, "max_position_embeddings", None)
        longest = max(len(r) for r in rows)
        if limit is not None and longest + extra > limit:
            raise ValueError(f"a prompt has {longest} tokens (+{extra} to generate), more than the "
                             f"{limit} positions of {self.name}; shorten the prompt or the template")

    # -- backend operations --------------------------------------------------------------------

    def _chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return self._generate([self.render(list(r.messages)) for r in requests], requests)

    def _complete(self, requests: list[CompletionRequest]) -> list[ChatResult]:
        return self._generate([r.prompt for r in requests], requests)

    def _generate(self, texts: list[str], requests: Sequence[Any]) -> list[ChatResult]:
        out: list[ChatResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.n, r.temperature, r.max_tokens, r.stop), []).append(i)
        device = self.policy.device
        for (n, temperature, max_tokens, stop), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                began = timed()
                seed = requests[chunk[0]].seed
                generator = torch.Generator(device=device)
                if seed is not None:
                    generator.manual_seed(int(seed))
                else:
                    generator.seed()
                prompt_ids = self.policy.prompt_ids([texts[i] for i in chunk])
                self._check_positions(prompt_ids, max_tokens)
                samples = self.policy.sample([texts[i] for i in chunk], n, max_new_tokens=max_tokens,
                                             temperature=temperature, generator=generator)
                seconds = (timed() - began) / len(chunk)
                for j, i in enumerate(chunk):
                    cut = [_cut_at_stop(t, stop) for t in samples.texts[j]]
                    reasons = ["stop" if done or stopped else "length"
                               for (_, stopped), done in zip(cut, samples.finished[j].tolist())]
                    result = ChatResult([t for t, _ in cut], reasons, prompt_tokens=len(prompt_ids[j]),
                                        completion_tokens=int(samples.lengths[j].sum()), seconds=seconds)
                    self._account(result)
                    out[i] = result
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def next_token_logprobs(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, V]`` log-softmax of the next token after each raw text (float32, CPU)."""
        out = []
        model = self.policy.model
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(texts), self.batch_size):
                began = timed()
                rows = self.policy.prompt_ids(list(texts[start:start + self.batch_size]))
                self._check_positions(rows)
                ids, mask = left_pad(rows, self.policy.tokenizer.pad_token_id or 0)
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                device = self.policy.device
                last, _ = last_logits(model, ids.to(device), mask.to(device), positions.to(device), None, False)
                out.append(torch.log_softmax(last, dim=-1).cpu())
                seconds = (timed() - began) / len(rows)
                for row in rows:
                    self._account(ChatResult([], [], prompt_tokens=len(row), seconds=seconds))
        finally:
            model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _choice_logprobs(self, prompts: list[Messages], choices: list[str]) -> np.ndarray:
        ids = [self.choice_token_ids(c) for c in choices]
        log_probs = self.next_token_logprobs([self.render(p) for p in prompts])
        scores = torch.stack([torch.logsumexp(log_probs[:, i], dim=-1) for i in ids], dim=-1)
        return scores.double().numpy()


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s in text]
    if not cuts:
        return text, False
    return text[:min(cuts)], True
