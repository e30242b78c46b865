"""K responses per prompt: the full preference matrix, and rankings from it.

For a model with per-response embeddings (``bt``, ``gpm``) the K x K matrix costs K forward
passes; for any other preference model (a pairwise classifier, a judge) it costs one query per
unordered pair, ``K (K - 1) / 2``, with ``P(j, i) = 1 - P(i, j)`` (a pairwise model's ``prob`` is
already the two-order average). A knockout tournament ranks with ``K - 1`` queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from prefkit.data.records import Text
from prefkit.preference.base import PreferenceModel, call_batched, checked_probabilities


def _has_embeddings(model: PreferenceModel) -> bool:
    return callable(getattr(model, "embed", None)) and callable(getattr(model, "prob_from_embeddings", None))


def preference_matrix(
    model: PreferenceModel,
    prompts: Sequence[Text],
    responses: Sequence[Sequence[Text]],
    *,
    batch_size: int = 32,
) -> torch.Tensor:
    """``M[p, i, j] = P(responses[p][i] beats responses[p][j] | prompts[p])``, ``[P, K, K]``,
    with ``M[p, i, i] = 1/2`` and ``M + M^T = 1``. Every prompt needs the same K >= 1."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
    if not prompts:
        return torch.zeros(0, 0, 0)
    k = len(responses[0])
    if k == 0 or any(len(r) != k for r in responses):
        raise ValueError("every prompt needs the same number K >= 1 of responses")
    n = len(prompts)
    if _has_embeddings(model):
        flat_prompts = [p for p in prompts for _ in range(k)]
        flat = [r for rs in responses for r in rs]
        e = call_batched(model.embed, flat_prompts, flat, batch_size=batch_size)
        e = e.view(n, k, -1)
        with torch.no_grad():
            m = model.prob_from_embeddings(e[:, :, None, :], e[:, None, :, :]).float()
        diagonal = torch.arange(k)
        m[:, diagonal, diagonal] = 0.5
        return m
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    m = torch.full((n, k, k), 0.5)
    if not pairs:
        return m
    qp = [prompts[p] for p in range(n) for _ in pairs]
    qa = [responses[p][i] for p in range(n) for i, _ in pairs]
    qb = [responses[p][j] for p in range(n) for _, j in pairs]
    probs = checked_probabilities(call_batched(model.prob, qp, qa, qb, batch_size=batch_size), len(qp), judge=type(model).__name__).view(n, len(pairs))
    for c, (i, j) in enumerate(pairs):
        m[:, i, j] = probs[:, c]
        m[:, j, i] = 1 - probs[:, c]
    return m


def rank(
    model: PreferenceModel,
    prompt: Text,
    responses: Sequence[Text],
    *,
    method: Literal["round_robin", "tournament"] = "round_robin",
    batch_size: int = 32,
) -> list[int]:
    """Indices of ``responses``, best first.

    ``round_robin``: by mean ``P(i beats j)`` over all ``j != i`` (Borda / Copeland-style; ties
    keep the input order). ``tournament``: a knockout bracket in input order (a bye when the
    round is odd); the order is the winner, then losers by the round they fell in (later is
    better), ties in a round by their probability against their opponent.
    """
    k = len(responses)
    if k == 0:
        return []
    if method == "round_robin":
        m = preference_matrix(model, [prompt], [list(responses)], batch_size=batch_size)[0]
        mean = (m.sum(dim=1) - 0.5) / max(1, k - 1)
        return sorted(range(k), key=lambda i: (-float(mean[i]), i))
    if method != "tournament":
        raise ValueError(f"method must be 'round_robin' or 'tournament', got {method!r}")
    alive = list(range(k))
    fallen: list[list[tuple[float, int]]] = []
    while len(alive) > 1:
        firsts, seconds = alive[0::2], alive[1::2]
        matched = firsts[: len(seconds)]
        p = checked_probabilities(
            model.prob([prompt] * len(matched), [responses[i] for i in matched], [responses[j] for j in seconds]),
            len(matched), judge=type(model).__name__,
        )
        winners, losers = [], []
        for i, j, pij in zip(matched, seconds, p.tolist()):
            if pij >= 0.5:
                winners.append(i), losers.append((1 - pij, j))
            else:
                winners.append(j), losers.append((pij, i))
        if len(firsts) > len(seconds):
            winners.append(firsts[-1])
        fallen.append(losers)
        alive = winners
    order = [alive[0]]
    for losers in reversed(fallen):
        order += [i for _, i in sorted(losers, key=lambda t: (-t[0], t[1]))]
    return order
