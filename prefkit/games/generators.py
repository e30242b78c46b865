"""Preference games used in the papers: random games (EGPO), rock-paper-scissors, Nash-MD's
perturbed 3-cycle, and transitive Bradley-Terry games from utilities.

Each generator returns a ``PreferenceGame``; ``beta`` and ``ref`` are passed through.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from prefkit.games.game import PreferenceGame

#: Names accepted by ``preset`` (and ``prefkit games --preset``).
PRESETS = ("rps", "cycle3", "elo3")


def _from_lower(lower: np.ndarray) -> np.ndarray:
    """``P`` with ``P[i, j] = lower[i, j]`` for ``i > j``, ``P[j, i] = 1 - P[i, j]``, diagonal 1/2."""
    n = lower.shape[-1]
    below = np.tril(np.ones((n, n), dtype=bool), k=-1)
    P = np.where(below, lower, 0.0)
    P = P + np.where(below.T, 1.0 - np.swapaxes(P, -1, -2), 0.0)
    P[..., np.arange(n), np.arange(n)] = 0.5
    return P


def random(n: int, seed: int = 0, *, games: int | None = None, beta: float = 0.0,
           ref: str | Any = "uniform") -> PreferenceGame:
    """Random preference game(s) as in the EGPO repository (``gen_preference_matrix("random")``).

    ``P[i, j] ~ U(0, 1)`` independently for ``i > j``, ``P[j, i] = 1 - P[i, j]``, diagonal 1/2.

    Args:
        n: number of actions.
        seed: seed of ``numpy.random.default_rng``.
        games: ``None`` for one game ``[n, n]``, or the batch size ``G`` (``[G, n, n]``).
        beta: KL coefficient.
        ref: ``"uniform"``, ``"random"`` (softmax of N(0, 1) logits per game, as in the EGPO
            experiments; drawn after P from the same generator) or an explicit policy.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    rng = np.random.default_rng(seed)
    shape = (n, n) if games is None else (games, n, n)
    P = _from_lower(rng.random(shape))
    if isinstance(ref, str):
        if ref == "uniform":
            ref = None
        elif ref == "random":
            logits = rng.standard_normal(shape[:-1])
            ref = np.exp(logits - logits.max(axis=-1, keepdims=True))
            ref /= ref.sum(axis=-1, keepdims=True)
        else:
            raise ValueError(f"ref must be 'uniform', 'random' or a policy; got {ref!r}")
    return PreferenceGame(P, ref, beta)


def rock_paper_scissors(*, beta: float = 0.0, ref: Any = None) -> PreferenceGame:
    """Rock, paper, scissors (actions in that order): each beats the next-but-one with certainty."""
    P = np.array([[0.5, 0.0, 1.0],
                  [1.0, 0.5, 0.0],
                  [0.0, 1.0, 0.5]])
    return PreferenceGame(P, ref, beta)


def perturbed_cycle(eps: float = 0.1, *, beta: float = 0.0, ref: Any = None) -> PreferenceGame:
    """The non-transitive 3-type population of Nash-MD (Munos et al. 2024, Sec. 3.2).

    Types 1, 2, 3 (probabilities ``1/3 - eps``, ``1/3 + eps/2``, ``1/3 + eps/2``) strictly prefer
    ``y2 > y1``, ``y1 > y3`` and ``y3 > y2`` respectively and are indifferent otherwise, so
    ``P(y2 > y1) = 1/2 + w1/2`` and so on. Its Nash equilibrium is
    ``(1/3 + eps/2, 1/3 + eps/2, 1/3 - eps)``.
    """
    if not -1.0 / 3.0 <= eps <= 1.0 / 3.0:
        raise ValueError(f"eps must lie in [-1/3, 1/3] (type weights are probabilities); got {eps}")
    w1, w2, w3 = 1.0 / 3.0 - eps, 1.0 / 3.0 + eps / 2.0, 1.0 / 3.0 + eps / 2.0
    P = np.full((3, 3), 0.5)
    P[1, 0], P[0, 1] = 0.5 + w1 / 2.0, 0.5 - w1 / 2.0
    P[0, 2], P[2, 0] = 0.5 + w2 / 2.0, 0.5 - w2 / 2.0
    P[2, 1], P[1, 2] = 0.5 + w3 / 2.0, 0.5 - w3 / 2.0
    return PreferenceGame(P, ref, beta)


def from_utilities(utilities: Any, *, beta: float = 0.0, ref: Any = None) -> PreferenceGame:
    """Transitive Bradley-Terry game ``P[i, j] = sigmoid(u_i - u_j)`` (``[N]`` or ``[G, N]``)."""
    u = np.asarray(utilities, dtype=np.float64)
    if u.ndim not in (1, 2) or u.shape[-1] < 1 or not np.all(np.isfinite(u)):
        raise ValueError(f"utilities must be a finite [N] or [G, N] array; got shape {u.shape}")
    lower = expit(u[..., :, None] - u[..., None, :])
    return PreferenceGame(_from_lower(lower), ref, beta)


def preset(name: str, *, beta: float = 0.0, eps: float = 0.1) -> PreferenceGame:
    """A named game: ``rps``, ``cycle3`` (``perturbed_cycle(eps)``) or ``elo3`` (Nash-MD App. A:
    Bradley-Terry utilities ``(0, log 9, log 2)``)."""
    if name == "rps":
        return rock_paper_scissors(beta=beta)
    if name == "cycle3":
        return perturbed_cycle(eps, beta=beta)
    if name == "elo3":
        return from_utilities([0.0, np.log(9.0), np.log(2.0)], beta=beta)
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
