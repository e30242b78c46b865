"""Synthetic preferences with known structure: cycles, and cycles under a transitive order.

The GPM paper's cyclic experiment (Zhang et al. 2024, arXiv 2410.02197, cyclic preference
datasets) in a controlled form. Items are *types*; ``beats[i, j] = 1`` when type i beats type j.

- :func:`cyclic_tournament`: T types (T odd), each beating the next ``(T - 1) / 2`` types
  cyclically (T = 3 is rock-paper-scissors). Every type wins exactly half its comparisons, so no
  scalar ranks them: on a balanced 3-cycle any scalar score gets at most 2 of 3 pairs right.
- :func:`lexicographic`: ``quality x style`` types; higher quality wins; equal quality is
  decided by the style cycle (a transitive order with cycles inside each level).

A response is its type plus filler that carries no preference (random feature dimensions, or
filler words around the type word), conditioned on an irrelevant prompt. Training and evaluation
use disjoint prompts and filler, so a model must find the type and ignore the rest.

:func:`best_ordering_accuracy` is the exact ceiling of every scalar (Bradley-Terry) model on a
set of pairs: the best accuracy of any strict order of the types (dynamic programming over
subsets). It bounds the *expected* accuracy of any scalar score of responses too, filler or not:
for independent draws, the pairwise indicator's expectation equals that of one joint draw, whose
order of the types is one strict order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from prefkit.data.records import PairRecord


def cyclic_tournament(types: int = 3) -> np.ndarray:
    """``beats[i, j] = 1`` when ``(j - i) mod T`` is in ``1 .. (T - 1) / 2``; T odd, >= 3."""
    if types < 3 or types % 2 == 0:
        raise ValueError(f"a balanced cyclic tournament needs an odd number >= 3 of types, got {types}")
    beats = np.zeros((types, types), dtype=np.int64)
    for i in range(types):
        for step in range(1, (types - 1) // 2 + 1):
            beats[i, (i + step) % types] = 1
    return beats


def lexicographic(qualities: int = 3, styles: int = 3) -> np.ndarray:
    """Types ``q * styles + s``: higher quality ``q`` wins; equal quality: the style cycle."""
    cycle = cyclic_tournament(styles)
    n = qualities * styles
    beats = np.zeros((n, n), dtype=np.int64)
    for a, b in itertools.product(range(n), repeat=2):
        qa, sa, qb, sb = a // styles, a % styles, b // styles, b % styles
        beats[a, b] = int(qa > qb or (qa == qb and cycle[sa, sb] == 1))
    return beats


def _check_tournament(beats: np.ndarray) -> None:
    if beats.ndim != 2 or beats.shape[0] != beats.shape[1]:
        raise ValueError("beats must be a square matrix")
    off = ~np.eye(len(beats), dtype=bool)
    if not np.all((beats + beats.T)[off] == 1):
        raise ValueError("beats must decide every pair of distinct types exactly once")


def best_ordering_accuracy(wins: np.ndarray) -> float:
    """``max`` over strict orders of the types of the fraction of comparisons the order gets right.

    ``wins[i, j]`` is how many evaluated comparisons type i won against type j (or a weight).
    Exact, by dynamic programming over subsets (types placed from best down): O(2^n n^2), n <= 16.
    """
    wins = np.asarray(wins, dtype=np.float64)
    n = len(wins)
    if n > 16:
        raise ValueError(f"at most 16 types, got {n}")
    total = wins.sum() - np.trace(wins)
    if total <= 0:
        raise ValueError("no comparisons between distinct types")
    best = np.full(1 << n, -np.inf)
    best[0] = 0.0
    members = [[u for u in range(n) if s >> u & 1] for s in range(1 << n)]
    for s in range(1 << n):
        if best[s] == -np.inf:
            continue
        above = members[s]
        for v in range(n):
            if s >> v & 1:
                continue
            gain = wins[above, v].sum() if above else 0.0
            t = s | 1 << v
            if best[s] + gain > best[t]:
                best[t] = best[s] + gain
    return float(best[-1] / total)


def sample_type_pairs(beats: np.ndarray, n: int, rng: np.random.Generator, *,
                      balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (winner, loser) type pairs, uniform over unordered pairs of distinct types
    (``balanced``: each pair of types equally often, in random order; ``n`` must be a multiple
    of the number of type pairs)."""
    _check_tournament(beats)
    pairs = [(i, j) if beats[i, j] else (j, i) for i, j in itertools.combinations(range(len(beats)), 2)]
    if balanced:
        if n % len(pairs):
            raise ValueError(f"a balanced sample needs a multiple of {len(pairs)} pairs, got {n}")
        pick = rng.permutation(np.arange(n) % len(pairs))
    else:
        pick = rng.integers(len(pairs), size=n)
    table = np.array(pairs)
    return table[pick, 0], table[pick, 1]


def win_counts(winners: Sequence[int], losers: Sequence[int], types: int) -> np.ndarray:
    wins = np.zeros((types, types))
    np.add.at(wins, (np.asarray(winners), np.asarray(losers)), 1.0)
    return wins


def feature_pairs(
    beats: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    filler: np.ndarray,
    prompts: np.ndarray,
    balanced: bool = False,
) -> dict[str, torch.Tensor]:
    """Feature vectors: a response is ``[one_hot(type), filler row]``, a prompt a row of
    ``prompts``; chosen is the winner. Returns tensors ``prompts [n, d_p]``, ``chosen``,
    ``rejected`` ``[n, T + d_f]``, and ``winner``, ``loser`` types."""
    winners, losers = sample_type_pairs(beats, n, rng, balanced=balanced)
    eye = np.eye(len(beats))

    def items(types: np.ndarray) -> np.ndarray:
        return np.concatenate([eye[types], filler[rng.integers(len(filler), size=len(types))]], axis=1)

    return {
        "prompts": torch.tensor(prompts[rng.integers(len(prompts), size=n)], dtype=torch.float32),
        "chosen": torch.tensor(items(winners), dtype=torch.float32),
        "rejected": torch.tensor(items(losers), dtype=torch.float32),
        "winner": torch.tensor(winners),
        "loser": torch.tensor(losers),
    }


def text_pairs(
    beats: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    type_words: Sequence[Sequence[str]],
    filler_words: Sequence[str],
    prompts: Sequence[str],
    filler_length: tuple[int, int] = (3, 6),
    balanced: bool = False,
    synonyms: bool = False,
) -> tuple[list[PairRecord], np.ndarray, np.ndarray]:
    """Text pairs: a response is its type's words (``type_words[t]``, e.g. ``["rock"]`` or
    ``["superb", "formal"]``) shuffled among random filler words; chosen is the winner. With
    ``synonyms=True`` the words of ``type_words[t]`` are alternatives instead: each response
    carries one of them, drawn uniformly (e.g. ``["rock", "stone", "boulder"]``).
    Returns ``(records, winners, losers)``."""
    if len(type_words) != len(beats):
        raise ValueError(f"{len(beats)} types but {len(type_words)} word lists")
    winners, losers = sample_type_pairs(beats, n, rng, balanced=balanced)

    def response(t: int) -> str:
        k = int(rng.integers(filler_length[0], filler_length[1] + 1))
        own = [type_words[t][int(rng.integers(len(type_words[t])))]] if synonyms else list(type_words[t])
        words = [filler_words[i] for i in rng.integers(len(filler_words), size=k)] + own
        rng.shuffle(words)
        return " ".join(words)

    records = []
    for w, lo in zip(winners, losers):
        prompt = prompts[int(rng.integers(len(prompts)))]
        chosen, rejected = response(int(w)), response(int(lo))
        while rejected == chosen:  # pragma: no cover - needs identical filler draws
            rejected = response(int(lo))
        records.append(PairRecord(prompt=prompt, chosen=chosen, rejected=rejected))
    return records, winners, losers
