"""Graded and unpaired feedback from a world: ordinal ratings and thumbs up/down.

Both read the world's latent utility ``u(x, y)`` (the transitive part of P*, docs/worlds.md)
through an annotator (:class:`Rater`) with its own thresholds and noise — the cumulative-logit
(ordered-logit) model of ordinal responses (McCullagh 1980, "Regression models for ordinal data"):

    rating = 1 + #{ j : u(x, y) + noise_k * e > theta_kj },   e ~ Logistic(0, 1)
    P(rating <= j) = sigmoid((theta_kj - u) / noise_k)

so an ordinal reward model with ordered thresholds (``prefkit.losses.ordinal``) is the exact model
class. The base thresholds ``t_1 < ... < t_{L-1}`` are the ``j/L`` quantiles of the utilities of
4000 base responses on the world's train prompts (a fixed draw per world seed), so each level is
used about equally often by an unbiased rater; rater ``k`` moves them to
``theta_kj = median + spread_k * (t_j - median) + shift_k`` (``shift > 0``: a harsh rater).

Thumbs (TRL's unpaired ``prompt``/``completion``/``label`` format, KTO-style): ``label =
u + noise_k * e > median + shift_k`` — "better than a typical base response" in the rater's eyes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prefkit.data.ratings import RatingRecord, RatingsRecord

BASE_DRAW = 4000
"""Base responses whose utilities set the thresholds."""


@dataclass(frozen=True)
class Rater:
    """A simulated rater: ``shift`` moves its thresholds (harsh > 0 > lenient), ``spread`` scales
    their spacing, ``noise`` is the scale of its logistic noise (0: exact), ``weight`` its share."""

    name: str
    shift: float = 0.0
    spread: float = 1.0
    noise: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.spread <= 0 or self.noise < 0 or self.weight <= 0:
            raise ValueError(f"rater {self.name!r}: need spread > 0, noise >= 0 and weight > 0")


RATER_POOLS: dict[str, tuple[Rater, ...]] = {
    # Four raters in the spirit of UltraFeedback's and AlpacaFarm's annotator variety.
    "default": (
        Rater("rater_balanced"),
        Rater("rater_harsh", shift=0.75),
        Rater("rater_lenient", shift=-0.75),
        Rater("rater_noisy", noise=2.0),
    ),
    # One exact rater: the rating is a deterministic function of the utility.
    "exact": (Rater("exact", noise=0.0),),
}


def resolve_raters(pool: str | Sequence[Rater]) -> tuple[Rater, ...]:
    if isinstance(pool, str):
        if pool not in RATER_POOLS:
            raise ValueError(f"unknown rater pool {pool!r}; pools: {', '.join(RATER_POOLS)}")
        return RATER_POOLS[pool]
    raters = tuple(pool)
    if not raters or not all(isinstance(r, Rater) for r in raters):
        raise ValueError("raters must be a pool name or a non-empty sequence of Rater")
    return raters


def base_thresholds(world, levels: int) -> tuple[np.ndarray, float]:
    """``(t [levels - 1], median)``: utility quantiles of a fixed draw of base responses."""
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"a rating scale needs at least 2 levels, got {levels!r}")
    rng = np.random.default_rng([world.seed, 1729])
    prompts = world.prompts("train", BASE_DRAW, rng=rng)
    responses = [r[0] for r in world.base_responses(prompts, 1, rng)]
    utility = world.utility(prompts, responses)
    return np.quantile(utility, np.arange(1, levels) / levels), float(np.median(utility))


@dataclass(frozen=True)
class Ratings:
    """Ratings (1..levels) with the rater who gave each and the latent utility behind it."""

    ratings: np.ndarray
    rater: np.ndarray
    utility: np.ndarray


def rate(world, prompts: Sequence[str], responses: Sequence[str], rng: np.random.Generator, *, levels: int = 5,
         pool: str | Sequence[Rater] = "default", rater: np.ndarray | None = None) -> Ratings:
    """Ratings on ``1..levels`` of each (prompt, response) (see the module doc); ``rater`` fixes
    who rates each row (indices into the pool), else each row's rater is drawn by weight."""
    raters = resolve_raters(pool)
    thresholds, median = base_thresholds(world, levels)
    utility = world.utility(list(prompts), list(responses))
    n = len(utility)
    if rater is None:
        weights = np.array([r.weight for r in raters])
        rater = rng.choice(len(raters), size=n, p=weights / weights.sum())
    rater = np.asarray(rater, dtype=np.int64)
    shift = np.array([r.shift for r in raters])[rater]
    spread = np.array([r.spread for r in raters])[rater]
    noise = np.array([r.noise for r in raters])[rater]
    theta = median + spread[:, None] * (thresholds[None, :] - median) + shift[:, None]
    observed = utility + noise * rng.logistic(size=n)
    ratings = 1 + (observed[:, None] > theta).sum(axis=1)
    return Ratings(ratings=ratings.astype(np.int64), rater=rater, utility=utility)


def rated_lists(world, n: int, k: int, rng: np.random.Generator, *, levels: int = 5, split: str = "train",
                pool: str | Sequence[Rater] = "default") -> list[RatingsRecord]:
    """``n`` prompts with ``k`` base responses each, all rated by one rater per prompt (as one
    UltraFeedback judge rates all completions of a prompt)."""
    if n < 0 or k < 1:
        raise ValueError(f"need n >= 0 and k >= 1, got n={n}, k={k}")
    raters = resolve_raters(pool)
    prompts = world.prompts(split, n, rng=rng)
    responses = world.base_responses(prompts, k, rng)
    weights = np.array([r.weight for r in raters])
    who = rng.choice(len(raters), size=n, p=weights / weights.sum())
    drawn = rate(world, [p for p in prompts for _ in range(k)], [y for row in responses for y in row], rng,
                 levels=levels, pool=raters, rater=np.repeat(who, k))
    values = drawn.ratings.reshape(n, k)
    return [RatingsRecord(p, list(r), [int(v) for v in row], raters[w].name)
            for p, r, row, w in zip(prompts, responses, values, who)]


def single_ratings(world, n: int, rng: np.random.Generator, *, levels: int = 5, split: str = "train",
                   pool: str | Sequence[Rater] = "default") -> list[RatingRecord]:
    """``n`` single rated responses (the ``prompt``/``completion``/``rating`` form)."""
    raters = resolve_raters(pool)
    prompts = world.prompts(split, n, rng=rng)
    responses = [r[0] for r in world.base_responses(prompts, 1, rng)]
    drawn = rate(world, prompts, responses, rng, levels=levels, pool=raters)
    return [RatingRecord(p, y, int(v), raters[w].name)
            for p, y, v, w in zip(prompts, responses, drawn.ratings, drawn.rater)]


def thumbs(world, prompts: Sequence[str], responses: Sequence[str], rng: np.random.Generator, *,
           pool: str | Sequence[Rater] = "default") -> tuple[np.ndarray, np.ndarray]:
    """``(labels bool [N], rater [N])``: thumbs up when the rater finds the response better than
    a typical base response (see the module doc)."""
    raters = resolve_raters(pool)
    _, median = base_thresholds(world, 2)
    utility = world.utility(list(prompts), list(responses))
    weights = np.array([r.weight for r in raters])
    who = rng.choice(len(raters), size=len(utility), p=weights / weights.sum())
    shift = np.array([r.shift for r in raters])[who]
    noise = np.array([r.noise for r in raters])[who]
    return utility + noise * rng.logistic(size=len(utility)) > median + shift, who


def unpaired(world, n: int, rng: np.random.Generator, *, split: str = "train",
             pool: str | Sequence[Rater] = "default") -> list[dict[str, object]]:
    """``n`` rows in TRL's unpaired preference format: ``{"prompt", "completion", "label"}`` with
    ``label`` true for a thumbs up (one base response per row)."""
    prompts = world.prompts(split, n, rng=rng)
    responses = [r[0] for r in world.base_responses(prompts, 1, rng)]
    labels, _ = thumbs(world, prompts, responses, rng, pool=pool)
    return [{"prompt": p, "completion": y, "label": bool(v)} for p, y, v in zip(prompts, responses, labels)]
