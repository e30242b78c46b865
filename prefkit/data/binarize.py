"""Ranked lists -> pairs: best versus worst (the UltraFeedback / RLHF-Workflow binarisation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prefkit.data.records import ListRecord, PairRecord


def best_vs_worst(
    lists: Sequence[ListRecord], rng: np.random.Generator
) -> tuple[list[PairRecord], int]:
    """One pair per list: the top-scored response against the bottom-scored one.

    Ties for best or worst are broken at random. A list whose scores are all equal carries no
    preference and yields no pair; the count of such lists is returned (never dropped silently).
    """
    pairs, flat = [], 0
    for record in lists:
        scores = np.asarray(record.scores, dtype=float)
        if scores.max() == scores.min():
            flat += 1
            continue
        best = rng.choice(np.flatnonzero(scores == scores.max()))
        worst = rng.choice(np.flatnonzero(scores == scores.min()))
        pairs.append(PairRecord(record.prompt, record.responses[best], record.responses[worst],
                                source=record.source))
    return pairs, flat
