"""Deterministic train/eval split that never puts one prompt on both sides."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from prefkit.data._fields import canonical
from prefkit.data.records import ListRecord, PairRecord, PromptRecord

R = TypeVar("R", PairRecord, ListRecord, PromptRecord)


def split(records: Sequence[R], eval_fraction: float, seed: int) -> tuple[list[R], list[R]]:
    """Split records into (train, eval) by prompt.

    Records are grouped by prompt (whitespace-normalised), so several comparisons of one
    prompt never straddle the split (that would leak the eval prompts into training). Groups
    are ordered by a hash of (seed, prompt), independent of Python's hash randomisation and of
    the record order, and moved to eval until it holds at least
    ``round(eval_fraction * len(records))`` records (at least one group when
    ``eval_fraction > 0``). Both sides keep the input order.

    Raises:
        ValueError: ``eval_fraction`` outside [0, 1), or fewer than two distinct prompts when
            an eval split is asked for.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if eval_fraction == 0.0 or not records:
        return list(records), []
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(canonical(record.prompt), []).append(index)
    if len(groups) < 2:
        raise ValueError(
            f"cannot split {len(records)} records with a single distinct prompt into train and eval"
        )

    def rank(prompt: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=16).digest()

    target = max(1, round(eval_fraction * len(records)))
    in_eval: set[int] = set()
    for prompt in sorted(groups, key=rank):
        if len(in_eval) >= target:
            break
        if len(in_eval) + len(groups[prompt]) < len(records):  # train keeps at least one group
            in_eval.update(groups[prompt])
    train = [r for i, r in enumerate(records) if i not in in_eval]
    evaluation = [r for i, r in enumerate(records) if i in in_eval]
    return train, evaluation
