"""Records -> token ids, once per run; micro-batches are cut from these id lists.

Length limits are checked here, where every row still knows its file and line: with
``train.truncation="error"`` an over-long row stops the run naming file, line and field; with
``"truncate"`` it is kept (prompt end and response start) and counted in ``truncated``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prefkit.config import TrainConfig
from prefkit.data import ListRecord, PairRecord, over_length
from prefkit.errors import InputError
from prefkit.policy import EncodedBatch, Policy
from prefkit.policy.encoding import build_batch


@dataclass
class PairExamples:
    """Tokenized pairs: ``prompt_ids[i]`` starts with bos, responses end with eos."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    labels: torch.Tensor
    weights: torch.Tensor
    truncated: int

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: bool) -> EncodedBatch:
        """Chosen rows then rejected rows of the examples in ``index`` (one forward for both)."""
        index = list(index)
        n = len(index)
        return build_batch(
            [self.prompt_ids[i] for i in index],
            [self.chosen_ids[i] for i in index] + [self.rejected_ids[i] for i in index],
            pad_id=pad_id,
            max_length=cfg.max_length,
            max_prompt_length=cfg.max_prompt_length,
            truncation="truncate",
            prompt_of_row=[*range(n), *range(n)],
            keep_first_prompt_token=keep_bos,
        )

    def fingerprint(self) -> str:
        return _fingerprint(self.prompt_ids, self.chosen_ids, self.rejected_ids)


@dataclass
class ListExamples:
    """Tokenized lists padded to ``K`` responses per prompt; ``mask`` marks real responses."""

    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]]
    scores: torch.Tensor
    mask: torch.Tensor
    truncated: int

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def k(self) -> int:
        return int(self.mask.shape[1])

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: bool) -> tuple[EncodedBatch, torch.Tensor]:
        """Rows of the real responses of the examples in ``index``, and their ``[n, K]`` slots."""
        index = list(index)
        rows, prompt_of_row, slots = [], [], []
        for local, i in enumerate(index):
            for j, ids in enumerate(self.response_ids[i]):
                rows.append(ids)
                prompt_of_row.append(local)
                slots.append(local * self.k + j)
        batch = build_batch(
            [self.prompt_ids[i] for i in index],
            rows,
            pad_id=pad_id,
            max_length=cfg.max_length,
            max_prompt_length=cfg.max_prompt_length,
            truncation="truncate",
            prompt_of_row=prompt_of_row,
            keep_first_prompt_token=keep_bos,
        )
        return batch, torch.tensor(slots, dtype=torch.long)

    def fingerprint(self) -> str:
        flat = [ids for group in self.response_ids for ids in group]
        return _fingerprint(self.prompt_ids, flat, [[len(g)] for g in self.response_ids])


@dataclass
class SequenceExamples:
    """Tokenized (prompt, response) pairs for supervised fine-tuning."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    truncated: int

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: bool) -> EncodedBatch:
        index = list(index)
        return build_batch(
            [self.prompt_ids[i] for i in index],
            [self.response_ids[i] for i in index],
            pad_id=pad_id,
            max_length=cfg.max_length,
            max_prompt_length=cfg.max_prompt_length,
            truncation="truncate",
            keep_first_prompt_token=keep_bos,
        )

    def fingerprint(self) -> str:
        return _fingerprint(self.prompt_ids, self.response_ids)


def _fingerprint(*columns: list[list[int]]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        for ids in column:
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _check_length(
    prompt: list[int], responses: list[tuple[str, list[int]]], cfg: TrainConfig, source: tuple[str, int] | None
) -> bool:
    """True when the row must be truncated; raises when truncation is ``"error"`` (the rule and
    message shared with ``prefkit validate``: :func:`prefkit.data.over_length`)."""
    limit = cfg.max_length + 1
    capped = len(prompt) == limit or any(len(ids) == limit for _, ids in responses)
    problem = over_length(len(prompt), [(name, len(ids)) for name, ids in responses], cfg.max_length,
                          lower_bound=capped)
    if problem is None:
        return False
    if cfg.truncation == "error":
        file, line = source if source else (None, None)
        raise InputError(problem.reason, file=file, line=line, field=problem.field)
    return True


def check_not_empty(policy: Policy, texts: Sequence, ids: Sequence[Sequence[int]],
                    sources: Sequence[tuple[str, int] | None], field: str, *, response: bool) -> None:
    """Non-empty text that the tokenizer turns into no tokens at all (a tokenizer that does not
    belong to the model, e.g. one that maps every word to nothing) is an error, not a silent
    ``[bos]``/``[eos]``-only row."""
    special = 1 if response else int(policy.tokenizer.bos_token_id is not None)
    render = policy.render_response if response else policy.render_prompt
    for text, row, source in zip(texts, ids, sources):
        if len(row) <= special and render(text).strip():
            file, line = source if source else (None, None)
            raise InputError(f"the text tokenizes to no tokens with this model's tokenizer "
                             f"({type(policy.tokenizer).__name__}); is it the tokenizer the model was trained "
                             "with?", file=file, line=line, field=field)


def tokenize_pairs(policy: Policy, records: Sequence[PairRecord], cfg: TrainConfig) -> PairExamples:
    if not records:
        raise InputError("no training pairs: the data is empty")
    limit = cfg.max_length + 1  # all that truncation to max_length can keep (prefkit.policy.bounded)
    prompt_ids = policy.prompt_ids([r.prompt for r in records], limit=limit)
    chosen = policy.response_ids([r.chosen for r in records], limit=limit)
    rejected = policy.response_ids([r.rejected for r in records], limit=limit)
    sources = [r.source for r in records]
    check_not_empty(policy, [r.prompt for r in records], prompt_ids, sources, "prompt", response=False)
    check_not_empty(policy, [r.chosen for r in records], chosen, sources, "chosen", response=True)
    check_not_empty(policy, [r.rejected for r in records], rejected, sources, "rejected", response=True)
    truncated = 0
    for r, p, c, j in zip(records, prompt_ids, chosen, rejected):
        truncated += _check_length(p, [("chosen", c), ("rejected", j)], cfg, r.source)
    return PairExamples(
        prompt_ids=prompt_ids,
        chosen_ids=chosen,
        rejected_ids=rejected,
        labels=torch.tensor([r.label for r in records], dtype=torch.float32),
        weights=torch.tensor([1.0 if r.weight is None else r.weight for r in records], dtype=torch.float32),
        truncated=truncated,
    )


def tokenize_lists(policy: Policy, records: Sequence[ListRecord], cfg: TrainConfig) -> ListExamples:
    if not records:
        raise InputError("no training lists: the data is empty")
    k = max(len(r.responses) for r in records)
    limit = cfg.max_length + 1
    prompt_ids = policy.prompt_ids([r.prompt for r in records], limit=limit)
    flat = policy.response_ids([resp for r in records for resp in r.responses], limit=limit)
    check_not_empty(policy, [r.prompt for r in records], prompt_ids, [r.source for r in records], "prompt",
                    response=False)
    check_not_empty(policy, [resp for r in records for resp in r.responses], flat,
                    [r.source for r in records for _ in r.responses], "responses", response=True)
    response_ids, start, truncated = [], 0, 0
    scores = torch.zeros(len(records), k)
    mask = torch.zeros(len(records), k, dtype=torch.bool)
    for i, r in enumerate(records):
        group = flat[start : start + len(r.responses)]
        start += len(r.responses)
        response_ids.append(group)
        scores[i, : len(group)] = torch.tensor(r.scores, dtype=torch.float32)
        mask[i, : len(group)] = True
        truncated += _check_length(prompt_ids[i], [(f"responses[{j}]", g) for j, g in enumerate(group)], cfg, r.source)
    return ListExamples(prompt_ids, response_ids, scores, mask, truncated)


def tokenize_sequences(
    policy: Policy, prompts: Sequence, responses: Sequence, cfg: TrainConfig, sources: Sequence | None = None
) -> SequenceExamples:
    if not prompts:
        raise InputError("no training sequences: the data is empty")
    limit = cfg.max_length + 1
    prompt_ids = policy.prompt_ids(list(prompts), limit=limit)
    response_ids = policy.response_ids(list(responses), limit=limit)
    sources = sources or [None] * len(prompts)
    check_not_empty(policy, list(prompts), prompt_ids, sources, "prompt", response=False)
    check_not_empty(policy, list(responses), response_ids, sources, "response", response=True)
    truncated = sum(
        _check_length(p, [("chosen", r)], cfg, s)
        for p, r, s in zip(prompt_ids, response_ids, sources)
    )
    return SequenceExamples(prompt_ids, response_ids, truncated)
