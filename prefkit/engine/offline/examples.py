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
from prefkit.data import ListRecord, PairRecord, UnpairedRecord, over_length
from prefkit.errors import InputError
from prefkit.policy import EncodedBatch, Policy
from prefkit.policy.encoding import KeepFirst, build_batch


def rows_batch(prompt_ids: list[list[int]], response_ids: list[list[int]], cfg: TrainConfig, pad_id: int,
               keep_bos: KeepFirst, *, prompt_of_row: Sequence[int] | None = None) -> EncodedBatch:
    """A training batch of token ids: ``train.max_length`` and ``max_prompt_length``, long rows
    truncated (their length was checked when the examples were built)."""
    return build_batch(prompt_ids, response_ids, pad_id=pad_id, max_length=cfg.max_length,
                       max_prompt_length=cfg.max_prompt_length, truncation="truncate", prompt_of_row=prompt_of_row,
                       keep_first_prompt_token=keep_bos)


@dataclass
class PairExamples:
    """Tokenized pairs: ``prompt_ids[i]`` starts with bos, responses end with eos."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    labels: torch.Tensor
    weights: torch.Tensor
    truncated: int
    tails: bool = False
    """Reference log-probs also hold each response's sum past the pair's shared length (LD-DPO):
    ``[N, 4]`` = chosen, rejected, chosen tail, rejected tail."""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: KeepFirst) -> EncodedBatch:
        """Chosen rows then rejected rows of the examples in ``index`` (one forward for both)."""
        index = list(index)
        n = len(index)
        responses = [self.chosen_ids[i] for i in index] + [self.rejected_ids[i] for i in index]
        return rows_batch([self.prompt_ids[i] for i in index], responses, cfg, pad_id, keep_bos,
                          prompt_of_row=[*range(n), *range(n)])

    def fingerprint(self) -> str:
        return _fingerprint(self.prompt_ids, self.chosen_ids, self.rejected_ids, [[int(self.tails)]])


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

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: KeepFirst) -> tuple[EncodedBatch, torch.Tensor]:
        """Rows of the real responses of the examples in ``index``, and their ``[n, K]`` slots."""
        index = list(index)
        rows, prompt_of_row, slots = [], [], []
        for local, i in enumerate(index):
            for j, ids in enumerate(self.response_ids[i]):
                rows.append(ids)
                prompt_of_row.append(local)
                slots.append(local * self.k + j)
        batch = rows_batch([self.prompt_ids[i] for i in index], rows, cfg, pad_id, keep_bos,
                           prompt_of_row=prompt_of_row)
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

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: KeepFirst) -> EncodedBatch:
        index = list(index)
        return rows_batch([self.prompt_ids[i] for i in index], [self.response_ids[i] for i in index], cfg, pad_id,
                          keep_bos)

    def fingerprint(self) -> str:
        return _fingerprint(self.prompt_ids, self.response_ids)


@dataclass
class UnpairedExamples:
    """Tokenized unpaired rows (one completion, desirable or not) and, for KTO's reference
    point, each row's mismatched partner ``kl_partner[i]``: the completion row ``i`` is paired
    with, from another prompt (``None`` when the loss needs no KL estimate)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    labels: torch.Tensor
    weights: torch.Tensor
    truncated: int
    kl_partner: list[int] | None = None

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: KeepFirst) -> EncodedBatch:
        """The completion rows of ``index``, then (with ``kl_partner``) each prompt with its
        partner's completion (one forward for both)."""
        index = list(index)
        responses = [self.completion_ids[i] for i in index]
        prompt_of_row = list(range(len(index)))
        if self.kl_partner is not None:
            responses += [self.completion_ids[self.kl_partner[i]] for i in index]
            prompt_of_row += list(range(len(index)))
        return rows_batch([self.prompt_ids[i] for i in index], responses, cfg, pad_id, keep_bos,
                          prompt_of_row=prompt_of_row)

    def fingerprint(self) -> str:
        return _fingerprint(self.prompt_ids, self.completion_ids, [[int(v)] for v in self.labels.tolist()],
                            [self.kl_partner or []])


def shared_lengths(batch: EncodedBatch, n: int) -> torch.Tensor:
    """Per row of a chosen-then-rejected batch of ``n`` pairs, ``min(|y_c|, |y_r|)`` of its pair
    (response tokens after truncation): the length past which LD-DPO's tail begins."""
    lengths = batch.response_lengths
    shared = torch.minimum(lengths[:n], lengths[n:])
    return torch.cat([shared, shared])


def kl_partner_index(n: int, chunk: int) -> list[int]:
    """KTO's mismatched pairs as TRL 1.16's ``KTOTrainer`` builds them (its KL dataset rotates
    the completions by one within each batch of rows, ``prefkit.data.kl_partners``): row ``i``
    is paired with the previous row of its chunk of ``chunk`` consecutive rows (the first with
    the last). Fixed per row, so the reference's KL log-probs are computed once; a last chunk of
    one row is joined to the chunk before it."""
    from prefkit.data import kl_partners

    if n < 2:
        raise InputError("KTO's KL estimate pairs each prompt with another row's completion: it needs at least "
                         "2 rows", field="loss.name")
    chunk = max(2, chunk)
    starts = list(range(0, n, chunk))
    if n - starts[-1] == 1 and len(starts) > 1:
        starts.pop()
    out: list[int] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        out.extend(start + j for j in kl_partners(end - start))
    return out


def tokenize_unpaired(policy: Policy, records: Sequence[UnpairedRecord], cfg: TrainConfig, *,
                      kl_chunk: int | None) -> UnpairedExamples:
    """Unpaired records as token ids; ``kl_chunk`` (the micro-batch size) gives every row its
    KL partner (:func:`kl_partner_index`), ``None`` when the loss has no KL estimate."""
    if not records:
        raise InputError("no training rows: the unpaired data is empty")
    limit = cfg.max_length + 1
    prompts = [r.prompt for r in records]
    prompt_ids = policy.prompt_ids(prompts, limit=limit)
    completion_ids = policy.response_ids([r.completion for r in records], prompts=prompts, limit=limit)
    sources = [r.source for r in records]
    check_not_empty(policy, prompts, prompt_ids, sources, "prompt", response=False)
    check_not_empty(policy, [r.completion for r in records], completion_ids, sources, "completion", response=True)
    truncated = sum(_check_length(p, [("completion", c)], cfg, r.source)
                    for r, p, c in zip(records, prompt_ids, completion_ids))
    return UnpairedExamples(
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        labels=torch.tensor([r.label for r in records], dtype=torch.bool),
        weights=torch.tensor([1.0 if r.weight is None else r.weight for r in records], dtype=torch.float32),
        truncated=truncated,
        kl_partner=kl_partner_index(len(records), kl_chunk) if kl_chunk is not None else None,
    )


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
    tokenizer = policy.tokenizer
    specials = {i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    render = policy.render_response if response else policy.render_prompt
    for text, row, source in zip(texts, ids, sources):
        if all(i in specials for i in row) and render(text).strip():
            file, line = source if source else (None, None)
            raise InputError(f"the text tokenizes to no tokens with this model's tokenizer "
                             f"({type(policy.tokenizer).__name__}); is it the tokenizer the model was trained "
                             "with?", file=file, line=line, field=field)


def tokenize_pairs(policy: Policy, records: Sequence[PairRecord], cfg: TrainConfig) -> PairExamples:
    if not records:
        raise InputError("no training pairs: the data is empty")
    limit = cfg.max_length + 1  # all that truncation to max_length can keep (prefkit.policy.bounded)
    prompt_ids = policy.prompt_ids([r.prompt for r in records], limit=limit)
    prompts = [r.prompt for r in records]
    chosen = policy.response_ids([r.chosen for r in records], prompts=prompts, limit=limit)
    rejected = policy.response_ids([r.rejected for r in records], prompts=prompts, limit=limit)
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
    flat = policy.response_ids([resp for r in records for resp in r.responses],
                               prompts=[r.prompt for r in records for _ in r.responses], limit=limit)
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
    response_ids = policy.response_ids(list(responses), prompts=list(prompts), limit=limit)
    sources = sources or [None] * len(prompts)
    check_not_empty(policy, list(prompts), prompt_ids, sources, "prompt", response=False)
    check_not_empty(policy, list(responses), response_ids, sources, "response", response=True)
    truncated = sum(
        _check_length(p, [("chosen", r)], cfg, s)
        for p, r, s in zip(prompt_ids, response_ids, sources)
    )
    return SequenceExamples(prompt_ids, response_ids, truncated)
