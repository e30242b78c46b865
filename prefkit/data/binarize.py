"""Graded feedback -> pairs (and ranked lists): the binarisation rules of the seed papers.

A rated list (``RatingsRecord``: K completions with ratings, or a ``ListRecord`` with scores)
becomes preference pairs by one of these rules (:data:`RULES`):

- ``best_worst``: the top-rated completion against the bottom-rated one, one pair per prompt —
  RLHF Workflow's default ``max_min`` (Dong et al. 2024, arXiv 2405.07863, §3 and
  ``RLHFlow/Online-RLHF``'s ``choose_type``; algorithms.md §15);
- ``best_random``: the top-rated completion against one drawn uniformly from those rated strictly
  lower — the UltraFeedback-binarized convention (Tunstall et al. 2023, Zephyr, arXiv 2310.16944,
  and the ``HuggingFaceH4/ultrafeedback_binarized`` dataset card: the highest-rated of
  UltraFeedback's four completions as chosen, a random one of the remaining three as rejected;
  UltraFeedback: Cui et al. 2023, arXiv 2310.01377) and RLHF Workflow's ``max_random``;
- ``all_pairs``: every pair whose rating gap is at least ``margin`` (``margin > 0``; the
  all-pairs construction of reward-model training on ranked data, e.g. InstructGPT's K-choose-2
  comparisons, Ouyang et al. 2022, arXiv 2203.02155, §3.5).

``margin`` (all rules) drops pairs whose gap is below it; a list whose ratings are all equal
carries no preference and yields no pair (RLHF Workflow drops ties). Nothing is dropped silently:
:class:`BinarizeReport` counts lists without a pair and pairs below the margin. With
``margin_scale`` each pair also carries ``margin = gap * margin_scale`` (RLHF Workflow's
optional DPO margin). Ties among the best (or worst) are broken uniformly at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from prefkit.data._fields import canonical
from prefkit.data.ratings import RatingRecord, RatingsRecord
from prefkit.data.records import ListRecord, PairRecord

Rule = Literal["best_worst", "best_random", "all_pairs"]
RULES: tuple[str, ...] = ("best_worst", "best_random", "all_pairs")


@dataclass
class BinarizeReport:
    """What binarisation did: lists read, pairs written, and everything that produced no pair."""

    rule: str
    lists: int = 0
    pairs: int = 0
    all_tied: int = 0
    """Lists whose ratings are all equal (no preference)."""
    too_few: int = 0
    """Lists with fewer than two completions."""
    below_margin: int = 0
    """Candidate pairs whose rating gap was below ``margin``."""
    lines: list[int] = field(default_factory=list)
    """Source lines of the lists that produced no pair (when known)."""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "lists": self.lists, "pairs": self.pairs, "all_tied": self.all_tied,
                "too_few": self.too_few, "below_margin": self.below_margin, "no_pair_lines": self.lines[:50]}


def _as_rated(record: RatingsRecord | ListRecord) -> tuple[Any, list[Any], np.ndarray, Any, str | None]:
    if isinstance(record, RatingsRecord):
        return record.prompt, record.completions, np.asarray(record.ratings, dtype=float), record.source, \
            record.annotator
    if isinstance(record, ListRecord):
        return record.prompt, record.responses, np.asarray(record.scores, dtype=float), record.source, None
    raise TypeError(f"binarize takes RatingsRecord or ListRecord rows, got {type(record).__name__}")


def binarize(records: Sequence[RatingsRecord | ListRecord], *, rule: Rule = "best_worst", margin: float = 0.0,
             margin_scale: float | None = None, rng: np.random.Generator | None = None
             ) -> tuple[list[PairRecord], BinarizeReport]:
    """Pairs from rated lists by ``rule`` (see the module doc); returns ``(pairs, report)``."""
    if rule not in RULES:
        raise ValueError(f"unknown binarisation rule {rule!r}; rules: {', '.join(RULES)}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if rule == "all_pairs" and margin <= 0:
        raise ValueError("all_pairs needs margin > 0 (pairs whose gap is at least the margin); margin 0 "
                         "would pair tied completions")
    if margin_scale is not None and not margin_scale >= 0:
        raise ValueError(f"margin_scale must be >= 0, got {margin_scale}")
    rng = rng or np.random.default_rng(0)
    report = BinarizeReport(rule=rule)
    pairs: list[PairRecord] = []

    def pair(prompt: Any, texts: list[Any], r: np.ndarray, i: int, j: int, source: Any, who: Any) -> PairRecord:
        gap = float(r[i] - r[j])
        extra = None if margin_scale is None else gap * margin_scale
        return PairRecord(prompt, texts[i], texts[j], margin=extra, annotator=who, source=source)

    for record in records:
        prompt, texts, r, source, who = _as_rated(record)
        report.lists += 1
        before = len(pairs)
        if len(texts) < 2:
            report.too_few += 1
        elif r.max() == r.min():
            report.all_tied += 1
        elif rule == "all_pairs":
            for i in range(len(r)):
                for j in range(len(r)):
                    if r[i] > r[j]:
                        if r[i] - r[j] >= margin:
                            pairs.append(pair(prompt, texts, r, i, j, source, who))
                        else:
                            report.below_margin += 1
        else:
            best = int(rng.choice(np.flatnonzero(r == r.max())))
            if rule == "best_worst":
                other = int(rng.choice(np.flatnonzero(r == r.min())))
            else:
                other = int(rng.choice(np.flatnonzero(r < r[best])))
            if r[best] - r[other] >= margin:
                pairs.append(pair(prompt, texts, r, best, other, source, who))
            else:
                report.below_margin += 1
        if len(pairs) == before and source is not None:
            report.lines.append(int(source[1]))
    report.pairs = len(pairs)
    return pairs, report


def group_ratings(records: Sequence[RatingRecord]) -> list[RatingsRecord]:
    """Single ratings grouped by prompt (and annotator) into rated lists, first occurrence first."""
    groups: dict[tuple[str, str | None], list[RatingRecord]] = {}
    for r in records:
        groups.setdefault((canonical(r.prompt), r.annotator), []).append(r)
    return [RatingsRecord(rows[0].prompt, [r.completion for r in rows], [r.rating for r in rows], rows[0].annotator,
                          rows[0].source) for rows in groups.values()]


def to_lists(records: Sequence[RatingsRecord]) -> list[ListRecord]:
    """Rated lists as ``ListRecord`` rows (``responses``/``scores``) for the listwise losses."""
    return [r.to_list() for r in records]


def best_vs_worst(lists: Sequence[ListRecord], rng: np.random.Generator) -> tuple[list[PairRecord], int]:
    """One pair per list, top-scored against bottom-scored (``binarize(rule="best_worst")``);
    returns the pairs and the count of all-tied lists."""
    pairs, report = binarize(lists, rule="best_worst", rng=rng)
    return pairs, report.all_tied + report.too_few
