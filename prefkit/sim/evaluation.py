"""Evaluation under a world's true preference P*: win-rate, KL and exploitability.

Everything is computed from *samples* (response strings per prompt) plus optional log-probs,
so any policy implementation can be evaluated: the caller samples, this module scores.

Estimators (prompts ``x_1..x_m``; ``y_i1..y_in`` policy samples and ``y'_i1..y'_in'`` reference
samples for ``x_i``):

- win-rate ``W = (1/m) sum_i w_i`` with ``w_i = (1/(n n')) sum_{j,k} P*(y_ij > y'_ik | x_i)``, the
  expected preference over all ``n x n'`` pairs (not noisy labels). The ``w_i`` are independent
  across prompts, so ``SE = std(w_i) / sqrt(m)`` (sample standard deviation); it covers both the
  prompt sampling and the response sampling.
- KL ``K = (1/m) sum_i k_i`` with ``k_i = (1/n) sum_j [log pi(y_ij|x_i) - log pi_ref(y_ij|x_i)]``:
  the unbiased Monte-Carlo estimate of ``E_x KL(pi(.|x) || pi_ref(.|x))`` from policy samples,
  with ``SE = std(k_i) / sqrt(m)``.
- exploitability against a pool of candidate policies ``q``:
  ``max_q P*(q > pi) - 1/2``, where each ``P*(q > pi)`` is estimated like ``W``. A best response
  always achieves at least 1/2 (``q = pi``), so the exact exploitability is >= 0; against a
  finite pool the estimate is a lower bound on it and can be negative when every candidate is
  weaker than the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from prefkit.sim import lexicon as lx
from prefkit.sim import text
from prefkit.sim.world import World

Samples = Sequence[Sequence[str]]
"""Responses per prompt: ``samples[i]`` are responses to ``prompts[i]``."""


@dataclass(frozen=True)
class Evaluation:
    """A policy measured against a reference under the world's true preference."""

    win_rate: float
    win_rate_se: float
    kl: float | None = None
    kl_se: float | None = None
    exploitability: float | None = None
    exploitability_se: float | None = None
    exploiter: str | None = None
    """The pool candidate that beats the policy most."""
    pool_win_rates: dict[str, float] = field(default_factory=dict)
    """``P*(q > policy)`` for each candidate ``q`` of the pool."""
    mean_utility: float = 0.0
    ref_mean_utility: float = 0.0
    mean_length: float = 0.0
    """Mean body length (words after the opener) of the policy samples."""
    n_prompts: int = 0
    n_samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_samples(prompts: Sequence[str], samples: Samples, what: str) -> list[list[str]]:
    if len(samples) != len(prompts):
        raise ValueError(f"{what} has {len(samples)} rows for {len(prompts)} prompts")
    out = []
    for i, row in enumerate(samples):
        if isinstance(row, str) or len(row) == 0:
            raise ValueError(f"{what}[{i}] must be a non-empty list of response strings")
        out.append(list(row))
    return out


def _per_prompt_win(world: World, prompts: Sequence[str], a: Samples, b: Samples) -> np.ndarray:
    """``w_i``: mean of P*(a_ij > b_ik | x_i) over all pairs, for every prompt."""
    return np.array([world.preference_matrix(p, ra, rb).mean() for p, ra, rb in zip(prompts, a, b)])


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def _flat(prompts: Sequence[str], samples: Samples) -> tuple[list[str], list[str]]:
    return [p for p, row in zip(prompts, samples) for _ in row], [y for row in samples for y in row]


def evaluate(
    world: World,
    prompts: Sequence[str],
    policy_samples: Samples,
    ref_samples: Samples,
    *,
    policy_logps: Samples | Sequence[Sequence[float]] | None = None,
    ref_logps_of_policy_samples: Sequence[Sequence[float]] | None = None,
    pool: Mapping[str, Samples] | None = None,
) -> Evaluation:
    """Win-rate of the policy against the reference under P*, KL, and exploitability.

    ``policy_logps[i][j]`` and ``ref_logps_of_policy_samples[i][j]`` are ``log pi(y_ij | x_i)``
    and ``log pi_ref(y_ij | x_i)`` (sums over response tokens) of the policy samples; give both
    to get the KL. ``pool`` maps candidate names to samples per prompt (see
    :func:`candidate_pool`); give it to get the exploitability. The module docstring states
    the estimators and their standard errors.
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("evaluate needs at least one prompt")
    policy = _check_samples(prompts, policy_samples, "policy_samples")
    ref = _check_samples(prompts, ref_samples, "ref_samples")
    win_rate, win_rate_se = _mean_se(_per_prompt_win(world, prompts, policy, ref))

    kl = kl_se = None
    if (policy_logps is None) != (ref_logps_of_policy_samples is None):
        raise ValueError("give both policy_logps and ref_logps_of_policy_samples, or neither")
    if policy_logps is not None and ref_logps_of_policy_samples is not None:
        per_prompt = []
        for i, (row, lp, rlp) in enumerate(zip(policy, policy_logps, ref_logps_of_policy_samples)):
            lp, rlp = np.asarray(lp, dtype=float), np.asarray(rlp, dtype=float)
            if lp.shape != (len(row),) or rlp.shape != (len(row),):
                raise ValueError(f"log-probs for prompt {i} must have one value per policy sample")
            per_prompt.append(float(np.mean(lp - rlp)))
        kl, kl_se = _mean_se(np.array(per_prompt))

    exploitability = exploitability_se = exploiter = None
    pool_win_rates: dict[str, float] = {}
    if pool:
        per_candidate = {
            name: _per_prompt_win(world, prompts, _check_samples(prompts, s, f"pool[{name!r}]"), policy)
            for name, s in pool.items()
        }
        pool_win_rates = {name: float(w.mean()) for name, w in per_candidate.items()}
        exploiter = max(pool_win_rates, key=pool_win_rates.__getitem__)
        mean, exploitability_se = _mean_se(per_candidate[exploiter])
        exploitability = mean - 0.5

    flat_p, flat_y = _flat(prompts, policy)
    ref_p, ref_y = _flat(prompts, ref)
    return Evaluation(
        win_rate=win_rate,
        win_rate_se=win_rate_se,
        kl=kl,
        kl_se=kl_se,
        exploitability=exploitability,
        exploitability_se=exploitability_se,
        exploiter=exploiter,
        pool_win_rates=pool_win_rates,
        mean_utility=float(world.utility(flat_p, flat_y).mean()),
        ref_mean_utility=float(world.utility(ref_p, ref_y).mean()),
        mean_length=float(np.mean([len(text.body_words(y)) for y in flat_y])),
        n_prompts=len(prompts),
        n_samples=len(flat_y),
    )


SampleFn = Callable[[list[str], int], Samples]
"""``sample_fn(prompts, n) -> n responses per prompt``."""
LogprobFn = Callable[[list[str], list[str]], Sequence[float]]
"""``logprob_fn(prompts, responses) -> log pi(response_i | prompt_i)`` (flat, equal lengths)."""


def evaluate_policy(
    world: World,
    prompts: Sequence[str],
    sample_fn: SampleFn,
    ref_sample_fn: SampleFn,
    n: int,
    *,
    logprob_fn: LogprobFn | None = None,
    ref_logprob_fn: LogprobFn | None = None,
    pool: Mapping[str, Samples] | None = None,
) -> Evaluation:
    """:func:`evaluate` driven by callables: samples ``n`` responses per prompt from each side
    and, when both log-prob functions are given, scores the policy samples under both."""
    prompts = list(prompts)
    policy = [list(r) for r in sample_fn(prompts, n)]
    ref = [list(r) for r in ref_sample_fn(prompts, n)]
    logps = ref_logps = None
    if logprob_fn is not None and ref_logprob_fn is not None:
        flat_p, flat_y = _flat(prompts, policy)
        lp = np.asarray(logprob_fn(flat_p, flat_y), dtype=float)
        rlp = np.asarray(ref_logprob_fn(flat_p, flat_y), dtype=float)
        offsets = np.cumsum([0] + [len(r) for r in policy])
        logps = [lp[offsets[i]:offsets[i + 1]] for i in range(len(policy))]
        ref_logps = [rlp[offsets[i]:offsets[i + 1]] for i in range(len(policy))]
    return evaluate(world, prompts, policy, ref, policy_logps=logps,
                    ref_logps_of_policy_samples=ref_logps, pool=pool)


def win_matrix(world: World, prompts: Sequence[str],
               samples_by_name: Mapping[str, Samples]) -> tuple[list[str], np.ndarray]:
    """Head-to-head ``M[i, j] = P*(method i > method j)`` (mean over prompts and sample pairs).

    ``M + M^T = 1`` and the diagonal is exactly 1/2.
    """
    names = list(samples_by_name)
    checked = {k: _check_samples(prompts, v, k) for k, v in samples_by_name.items()}
    m = np.full((len(names), len(names)), 0.5)
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            m[i, j] = _per_prompt_win(world, prompts, checked[a], checked[names[j]]).mean()
            m[j, i] = 1.0 - m[i, j]
    return names, m


def best_of_n(world: World, prompts: Sequence[str], n: int, best_of: int, rng: np.random.Generator,
              *, style: str | None = None) -> list[list[str]]:
    """``n`` responses per prompt, each the highest-utility of ``best_of`` base responses."""
    if best_of < 1:
        raise ValueError(f"best_of must be >= 1, got {best_of}")
    prompts = list(prompts)
    drawn = world.base_responses(prompts, n * best_of, rng, style=style)
    flat_p, flat_y = _flat(prompts, drawn)
    utility = world.utility(flat_p, flat_y).reshape(len(prompts), n, best_of)
    pick = utility.argmax(axis=2)
    return [[row[j * best_of + pick[i, j]] for j in range(n)] for i, row in enumerate(drawn)]


def candidate_pool(world: World, prompts: Sequence[str], n: int, rng: np.random.Generator, *,
                   best_of: int = 16) -> dict[str, list[list[str]]]:
    """Candidate policies built from the world itself, to measure exploitability.

    - ``base``: the base generator;
    - ``best_of_{best_of}``: best-of-n base responses under the utility (the transitive part);
    - ``style_{s}`` for each style: best-of-n base responses all opening in style ``s``
      (the best responses to a policy that commits to the style ``s`` beats);
    - ``style_nash``: the same bodies with each opener style drawn from the per-prompt style
      Nash equilibrium (:meth:`World.style_nash`).
    """
    prompts = list(prompts)
    pool: dict[str, list[list[str]]] = {
        "base": world.base_responses(prompts, n, rng),
        f"best_of_{best_of}": best_of_n(world, prompts, n, best_of, rng),
    }
    for style in lx.STYLES:
        pool[f"style_{style}"] = best_of_n(world, prompts, n, best_of, rng, style=style)
    pool["style_nash"] = style_mixture(world, prompts, n, best_of, rng)
    return pool


def style_mixture(world: World, prompts: Sequence[str], n: int, best_of: int,
                  rng: np.random.Generator, mixture: Sequence[np.ndarray] | None = None) -> list[list[str]]:
    """Best-of-n bodies whose opener style is drawn from ``mixture[i]`` (default: the per-prompt
    style Nash equilibrium) over ``lexicon.STYLES`` + no style."""
    prompts = list(prompts)
    bodies = best_of_n(world, prompts, n, best_of, rng, style="none")
    out = []
    for i, (prompt, row) in enumerate(zip(prompts, bodies)):
        probs = np.asarray(world.style_nash(prompt) if mixture is None else mixture[i], dtype=float)
        picks = rng.choice(len(probs), size=n, p=probs / probs.sum())
        out.append([
            body if s == lx.NO_STYLE else f"{lx.OPENERS[lx.STYLES[s]][rng.integers(3)]} {body}"
            for body, s in zip(row, picks)
        ])
    return out
