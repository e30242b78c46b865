"""Iterative solvers of preference games: OMD (online IPO 1), online IPO 2, Nash-MD, Nash-MD-PG,
EGPO and MWU, exact or from samples, vectorised over a batch of games.

Step size. ``eta`` is always the mirror-descent step of EGPO (Zhou, Fazel, Du 2025) Sec. 3.2:

    log pi_{t+1} = (1 - eta beta) log pi_t + eta beta log ref + eta P q_t   (+ const)

with ``q_t = pi_t`` (OMD), ``q_t = pi_t^mu`` (Nash-MD) or ``q_t = pi_{t+1/2}`` (EGPO).
The EGPO repository (``simulations/``) instead takes plain SGD steps with a learning rate ``lr``
on online-IPO losses over softmax logits. One SGD step of ``lr`` on its online-IPO loss
``(1/N^2) sum_{y,y'} [(h(y) - h(y')) - (P(y > q) - P(y' > q)) / beta]^2`` is exactly the mirror
step with

    eta = 4 lr / (N beta)          (``eta_from_sgd_lr``)

so every method here is that repository's SGD step at ``lr = eta N beta / 4``; for OMD, EGPO and
Nash-MD this *is* the mirror step ``eta``. The repository itself forms Nash-MD's geometric
mixture with ``true_lr = 2 lr / (N beta) = eta / 2``, a factor 2 away from the step its own
loss takes; pass ``mixture_eta=eta / 2`` to reproduce that, the default (``mixture_eta=eta``) is
Nash-MD as in Munos et al. (2024), Eq. (8).

Methods (``q`` the opponent, ``h = log pi_t - log ref``, ``A = P - 1/2``):

* ``"omd"``: online IPO 1 / online mirror descent, ``q_t = pi_t``.
* ``"online_ipo2"``: online IPO of Calandriello et al. (2024), the loss
  ``sum_{y,y'} pi(y) pi(y') [h(y) - h(y') - (P(y > y') - 1/2) / beta]^2``; one SGD step is the
  mirror template with a per-action step ``eta N pi_t(y)``:
  ``log pi' = log pi - eta N pi * (beta (h - <pi, h>) - (P pi - 1/2))``.
* ``"nash_md"``: Nash-MD (Munos et al. 2024, Eq. 8), ``q_t = softmax((1 - eta beta) log pi_t +
  eta beta log ref)``. With ``schedule="decay"``, ``eta_t = 2 / (beta (t + 2))`` (Theorem 1:
  ``KL(pi*, pi_T) <= 8 / (beta^2 (T + 1))``); with a constant step its fixed point is biased
  (the gap scales like ``eta^2``).
* ``"nash_md_pg"``: Nash-MD-PG, the exact softmax policy gradient of
  ``sum_y pi(y) [(P pi^mu)(y) - beta h(y)] log pi(y)`` at ``lr = eta N beta / 4``:
  ``log pi' = log pi + (eta N beta / 4) pi * (a - <pi, a>)``, ``a = P pi^mu - beta h``.
  Needs ``beta > 0`` (the repository's learning rate conversion vanishes at ``beta = 0``).
* ``"egpo"``: extragradient, ``pi_{t+1/2}`` = the OMD step from ``pi_t``, then the step with
  ``q_t = pi_{t+1/2}`` restarting from ``pi_t``.
* ``"mwu"``: multiplicative weights on the plain game, ``log pi' = log pi + eta P pi`` (beta is
  ignored by the update), reporting the average iterate ``(pi_1 + ... + pi_t) / t``.

Sampled variants (``samples=K``) follow the repository's estimators: for OMD, Nash-MD and EGPO,
``y, y'`` uniform and ``y'' ~ q`` with the unbiased target ``P(y > y'') - P(y' > y'')``; for
online IPO 2, ``y, y' ~ pi_t`` with target ``P(y > y') - 1/2``; for Nash-MD-PG, ``y ~ pi_t``,
``y' ~ pi^mu``; EGPO draws fresh ``y, y'`` and ``y'' ~ pi_{t+1/2}`` for its second step. MWU
estimates ``P pi_t`` by the mean column of ``K`` draws ``y'' ~ pi_t``. Each is one SGD step on
the sampled loss; its expectation is the exact update (EGPO: given the half-step).

``gaps[t]`` is the exact duality gap of the policy after iteration ``t + 1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from prefkit.games._arrays import (
    matvec,
    normalize_log,
    regularized_gap,
    sample_categorical,
    unregularized_gap,
)


class Game(Protocol):
    """What a solver needs of a game (``prefkit.games.PreferenceGame`` is one); a protocol, so
    this module does not import ``game`` (which calls into it)."""

    P: np.ndarray
    ref: np.ndarray
    beta: float
    batched: bool

    def as_policy(self, pi: Any, name: str = "pi") -> np.ndarray: ...

METHODS = ("omd", "online_ipo2", "nash_md", "nash_md_pg", "egpo", "mwu")
SCHEDULES = ("constant", "decay")


def eta_from_sgd_lr(lr: float, n_actions: int, beta: float) -> float:
    """Mirror step ``eta = 4 lr / (N beta)`` equal to one SGD step of ``lr`` on the online-IPO loss."""
    if beta <= 0:
        raise ValueError("the SGD learning rate maps to a mirror step only for beta > 0")
    return 4.0 * lr / (n_actions * beta)


def sgd_lr_from_eta(eta: float, n_actions: int, beta: float) -> float:
    """Inverse of ``eta_from_sgd_lr``: ``lr = eta N beta / 4``."""
    return eta * n_actions * beta / 4.0


@dataclass
class SolveResult:
    """Outcome of ``PreferenceGame.solve``.

    ``policy``: final policy ``[N]`` (``[G, N]`` for a batch); MWU returns the average iterate.
    ``gaps``: exact duality gap after each iteration, ``[iters]`` (``[G, iters]``).
    ``iterates``: with ``keep_iterates=True``, the policy after each iteration (the last
    iterate, also for MWU), ``[iters, N]`` (``[iters, G, N]``); else ``None``.
    """

    method: str
    policy: np.ndarray
    gaps: np.ndarray
    eta: float | None
    schedule: str
    samples: int | None
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)
    iterates: np.ndarray | None = None

    @property
    def final_gap(self) -> float | np.ndarray:
        last = self.gaps[..., -1]
        return float(last) if last.ndim == 0 else last

    def iterations_to(self, threshold: float) -> int | np.ndarray:
        """First iteration count ``t`` (1-based) with ``gaps[t-1] <= threshold``; -1 if never."""
        reached = self.gaps <= threshold
        first = np.where(reached.any(axis=-1), reached.argmax(axis=-1) + 1, -1)
        return int(first) if first.ndim == 0 else first


class _Iteration:
    """The per-iteration updates for one batch ``P[G, N, N]``; every array is ``[G, N]``."""

    def __init__(self, P: np.ndarray, log_ref: np.ndarray, beta: float,
                 samples: int | None, rng: np.random.Generator) -> None:
        self.P, self.log_ref, self.beta = P, log_ref, beta
        self.G, self.N = P.shape[0], P.shape[-1]
        self.samples, self.rng = samples, rng
        self.rows = np.arange(self.G)[:, None]
        self.flat_offset = self.rows * self.N

    # mirror template: (1 - eta beta) log pi + eta beta log ref + eta P q
    def template(self, log_pi: np.ndarray, P_q: np.ndarray, eta: float) -> np.ndarray:
        return (1.0 - eta * self.beta) * log_pi + (eta * self.beta) * self.log_ref + eta * P_q

    def mixture(self, log_pi: np.ndarray, eta: float) -> np.ndarray:
        """Nash-MD's geometric mixture pi^mu propto pi^(1 - eta beta) ref^(eta beta)."""
        return np.exp(normalize_log((1.0 - eta * self.beta) * log_pi + (eta * self.beta) * self.log_ref))

    # ---- sampled helpers
    def uniform_pair(self) -> tuple[np.ndarray, np.ndarray]:
        both = self.rng.integers(0, self.N, size=(self.G, 2 * self.samples))
        return both[:, : self.samples], both[:, self.samples :]

    def draw(self, probs: np.ndarray) -> np.ndarray:
        return sample_categorical(self.rng, probs, self.samples)

    def scatter(self, actions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        flat = np.bincount((self.flat_offset + actions).ravel(), weights=weights.ravel(),
                           minlength=self.G * self.N)
        return flat.reshape(self.G, self.N)

    def regression_step(self, log_pi: np.ndarray, y: np.ndarray, y2: np.ndarray,
                        target: np.ndarray, eta: float) -> np.ndarray:
        """One SGD step (lr = eta N beta / 4) on ``(1/K) sum [(h_y - h_y') - target / beta]^2``.

        The gradient in the logits is ``(2/K) sum r_k (e_y - e_y')``, so the step is
        ``-(eta N / 2K) sum [beta (h_y - h_y') - target] (e_y - e_y')``.
        """
        h = log_pi - self.log_ref
        residual = self.beta * (h[self.rows, y] - h[self.rows, y2]) - target
        coef = -(eta * self.N / (2.0 * self.samples)) * residual
        both = np.concatenate([y, y2], axis=1)
        return log_pi + self.scatter(both, np.concatenate([coef, -coef], axis=1))

    def pair_target(self, y: np.ndarray, y2: np.ndarray, opponent: np.ndarray) -> np.ndarray:
        return self.P[self.rows, y, opponent] - self.P[self.rows, y2, opponent]

    # ---- exact updates: (log pi_t, pi_t, P pi_t, eta, mixture eta) -> new logits
    def omd(self, log_pi, pi, P_pi, eta, mix_eta):
        return self.template(log_pi, P_pi, eta)

    def nash_md(self, log_pi, pi, P_pi, eta, mix_eta):
        return self.template(log_pi, matvec(self.P, self.mixture(log_pi, mix_eta)), eta)

    def egpo(self, log_pi, pi, P_pi, eta, mix_eta):
        half = np.exp(normalize_log(self.template(log_pi, P_pi, eta)))
        return self.template(log_pi, matvec(self.P, half), eta)

    def online_ipo2(self, log_pi, pi, P_pi, eta, mix_eta):
        h = log_pi - self.log_ref
        h_mean = (pi * h).sum(axis=-1, keepdims=True)
        return log_pi - (eta * self.N) * pi * (self.beta * (h - h_mean) - (P_pi - 0.5))

    def nash_md_pg(self, log_pi, pi, P_pi, eta, mix_eta):
        advantage = matvec(self.P, self.mixture(log_pi, mix_eta)) - self.beta * (log_pi - self.log_ref)
        baseline = (pi * advantage).sum(axis=-1, keepdims=True)
        return log_pi + (eta * self.N * self.beta / 4.0) * pi * (advantage - baseline)

    def mwu(self, log_pi, pi, P_pi, eta, mix_eta):
        return log_pi + eta * P_pi

    # ---- sampled updates
    def omd_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        (y, y2), opp = self.uniform_pair(), self.draw(pi)
        return self.regression_step(log_pi, y, y2, self.pair_target(y, y2, opp), eta)

    def nash_md_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        (y, y2), opp = self.uniform_pair(), self.draw(self.mixture(log_pi, mix_eta))
        return self.regression_step(log_pi, y, y2, self.pair_target(y, y2, opp), eta)

    def egpo_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        half = np.exp(normalize_log(self.omd_sampled(log_pi, pi, P_pi, eta, mix_eta)))
        (y, y2), opp = self.uniform_pair(), self.draw(half)
        return self.regression_step(log_pi, y, y2, self.pair_target(y, y2, opp), eta)

    def online_ipo2_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        y, y2 = self.draw(pi), self.draw(pi)
        return self.regression_step(log_pi, y, y2, self.P[self.rows, y, y2] - 0.5, eta)

    def nash_md_pg_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        y, opp = self.draw(pi), self.draw(self.mixture(log_pi, mix_eta))
        h_y = (log_pi - self.log_ref)[self.rows, y]
        advantage = self.P[self.rows, y, opp] - self.beta * h_y
        scale = eta * self.N * self.beta / (4.0 * self.samples)
        return log_pi + scale * (self.scatter(y, advantage) - advantage.sum(axis=1, keepdims=True) * pi)

    def mwu_sampled(self, log_pi, pi, P_pi, eta, mix_eta):
        opp = self.draw(pi)
        columns = self.P[self.rows, :, opp]  # [G, K, N]: P(i beats y''_k)
        return log_pi + eta * columns.mean(axis=1)

    def step(self, method: str) -> Callable[..., np.ndarray]:
        return getattr(self, method + ("_sampled" if self.samples else ""))

    def gap(self, log_pi: np.ndarray, pi: np.ndarray, P_pi: np.ndarray) -> np.ndarray:
        if self.beta > 0:
            return regularized_gap(log_pi, pi, P_pi, self.log_ref, self.beta)
        return unregularized_gap(P_pi)


def _step_sizes(beta: float, iters: int, eta: float | None, schedule: str) -> np.ndarray:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    if schedule == "decay":
        if beta <= 0:
            raise ValueError("the decaying schedule eta_t = 2 / (beta (t + 2)) needs beta > 0")
        if eta is not None:
            raise ValueError("schedule='decay' sets eta_t = 2 / (beta (t + 2)); do not pass eta")
        return 2.0 / (beta * (np.arange(iters) + 2.0))
    if eta is None:
        raise ValueError("eta (the mirror-descent step) is required with a constant schedule")
    eta = float(eta)
    if not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a finite number > 0; got {eta}")
    if eta * beta > 1.0:
        raise ValueError(f"eta * beta must be <= 1 for the mirror step; got {eta} * {beta}")
    return np.full(iters, eta)


def solve(game: Game, method: str, iters: int = 1000, eta: float | None = None, *,
          schedule: str = "constant", samples: int | None = None, seed: int | None = 0,
          init: Any = None, mixture_eta: float | None = None,
          keep_iterates: bool = False) -> SolveResult:
    """Run ``method`` for ``iters`` iterations on ``game`` (one game or a batch).

    Args:
        method: one of ``METHODS`` (see the module docstring for each update).
        iters: number of iterations; one duality gap is recorded per iteration.
        eta: the mirror-descent step (convert an EGPO-repository SGD learning rate with
            ``eta_from_sgd_lr``). Not used with ``schedule="decay"``.
        schedule: ``"constant"`` or ``"decay"`` (``eta_t = 2 / (beta (t + 2))``, Nash-MD Thm 1).
        samples: ``None`` for the exact update, or the number of samples per step (the EGPO
            experiments use 100).
        seed: seed of the sampler (``numpy.random.default_rng``).
        init: starting policy (default: ``game.ref``, as in the EGPO experiments).
        mixture_eta: step used in Nash-MD's geometric mixture (default ``eta``; the EGPO
            repository uses ``eta / 2``).
        keep_iterates: also return every iterate (``SolveResult.iterates``).

    The loop over iterations is Python; each iteration is a handful of numpy operations on the
    whole batch ``[G, N]`` (no loop over games).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer; got {iters!r}")
    if samples is not None and (not isinstance(samples, (int, np.integer)) or samples < 1):
        raise ValueError(f"samples must be None (exact) or a positive integer; got {samples!r}")
    if method == "nash_md_pg" and game.beta <= 0:
        raise ValueError("nash_md_pg needs beta > 0 (its step is lr = eta N beta / 4)")
    etas = _step_sizes(game.beta, int(iters), eta, schedule)
    if mixture_eta is not None:
        if method not in ("nash_md", "nash_md_pg"):
            raise ValueError("mixture_eta applies to nash_md and nash_md_pg only")
        if not mixture_eta > 0 or mixture_eta * game.beta > 1.0:
            raise ValueError(f"mixture_eta must be > 0 with mixture_eta * beta <= 1; got {mixture_eta}")
    mix_etas = etas if mixture_eta is None else np.full(int(iters), float(mixture_eta))

    P = game.P if game.batched else game.P[None]
    log_ref = np.log(game.ref if game.batched else game.ref[None])
    start = game.ref if init is None else game.as_policy(init, "init")
    if start.min() <= 0.0:
        raise ValueError("init must have full support (multiplicative updates keep zeros at zero)")
    start = start if game.batched else start[None]
    log_pi = normalize_log(np.log(start))
    state = _Iteration(P, log_ref, game.beta, samples, np.random.default_rng(seed))
    update = state.step(method)

    pi = np.exp(log_pi)
    P_pi = matvec(P, pi)
    gaps = np.empty((int(iters), P.shape[0]))
    average = np.zeros_like(pi)
    iterates = np.empty((int(iters), *pi.shape)) if keep_iterates else None
    began = time.perf_counter()
    for t in range(int(iters)):
        log_pi = normalize_log(update(log_pi, pi, P_pi, etas[t], mix_etas[t]))
        pi = np.exp(log_pi)
        P_pi = matvec(P, pi)
        if iterates is not None:
            iterates[t] = pi
        if method == "mwu":
            average += (pi - average) / (t + 1)
            gaps[t] = state.gap(np.log(average), average, matvec(P, average))
        else:
            gaps[t] = state.gap(log_pi, pi, P_pi)
    seconds = time.perf_counter() - began
    policy = average if method == "mwu" else pi
    if not game.batched:
        policy, gaps = policy[0], gaps[:, 0]
        iterates = None if iterates is None else iterates[:, 0]
    else:
        gaps = gaps.T.copy()
    return SolveResult(
        method=method, policy=policy, gaps=gaps, eta=None if schedule == "decay" else float(eta),
        schedule=schedule, samples=samples, seconds=seconds,
        options={"seed": seed, "mixture_eta": mixture_eta}, iterates=iterates,
    )
