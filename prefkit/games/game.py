"""The tabular preference game ``P[i, j] = P(i beats j)`` and its exact duality gap.

A preference game (Munos et al. 2024, "Nash Learning from Human Feedback", Eq. 1-2; Zhou, Fazel
and Du 2025, "Extragradient Preference Optimization", Sec. 3) is the symmetric two-player
constant-sum game whose payoff to the row player is ``p^T P q``. With a KL coefficient
``beta > 0`` and a reference policy ``ref`` it becomes

    J_beta(p, q) = p^T P q - beta KL(p || ref) + beta KL(q || ref),

whose unique Nash equilibrium is the fixed point ``pi = softmax(log ref + P pi / beta)``.
Everything here is exact: best responses in closed form, the equilibrium by linear programming
(beta = 0) or Newton's method (beta > 0), and the duality gap
``max_p J(p, pi) - min_q J(pi, q)``.

One class serves a single game (``P[N, N]``) and a batch of games of the same size
(``P[G, N, N]``, e.g. the EGPO experiment's 10 random games): every method then works on all
games at once and returns one value per game.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prefkit.games._arrays import matvec, normalize_log, regularized_gap, unregularized_gap

#: Tolerance of the checks ``P + P^T = 1`` and ``diag(P) = 1/2``.
SYMMETRY_TOL = 1e-9


def _check_preferences(P: Any) -> np.ndarray:
    try:
        P = np.array(P, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"P must be a numeric array, got {type(P).__name__}: {err}") from None
    if P.ndim not in (2, 3) or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must be square, shape [N, N] (or [G, N, N] for a batch); got {P.shape}")
    if P.shape[-1] < 1 or (P.ndim == 3 and P.shape[0] < 1):
        raise ValueError(f"P must have at least one action (and one game); got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise ValueError("P contains NaN or infinite entries")
    if P.min() < 0.0 or P.max() > 1.0:
        bad = np.argwhere((P < 0.0) | (P > 1.0))[0]
        raise ValueError(f"P must lie in [0, 1]: P{tuple(int(i) for i in bad)} = {P[tuple(bad)]:.6g}")
    diag = np.diagonal(P, axis1=-2, axis2=-1)
    if np.abs(diag - 0.5).max() > SYMMETRY_TOL:
        raise ValueError(f"the diagonal of P must be 1/2 (an action ties with itself); got {diag}")
    transpose = np.swapaxes(P, -1, -2)
    asym = np.abs(P + transpose - 1.0)
    if asym.max() > SYMMETRY_TOL:
        bad = tuple(int(i) for i in np.argwhere(asym == asym.max())[0])
        raise ValueError(
            f"P must satisfy P + P.T == 1 (P(i beats j) + P(j beats i) = 1): at {bad} the sum is "
            f"{(P + transpose)[bad]:.6g}"
        )
    return P


def _check_reference(ref: Any, n: int, batch: int | None) -> np.ndarray:
    if ref is None:
        shape = (n,) if batch is None else (batch, n)
        return np.full(shape, 1.0 / n)
    try:
        ref = np.array(ref, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ref must be a numeric array, got {type(ref).__name__}: {err}") from None
    allowed = [(n,)] if batch is None else [(n,), (batch, n)]
    if ref.shape not in allowed:
        raise ValueError(f"ref must have shape {' or '.join(map(str, allowed))}; got {ref.shape}")
    if not np.all(np.isfinite(ref)) or ref.min() <= 0.0:
        raise ValueError("ref must be a strictly positive (full-support) probability vector")
    sums = ref.sum(axis=-1)
    if np.abs(sums - 1.0).max() > 1e-6:
        raise ValueError(f"ref must sum to 1; sums to {sums}")
    ref = ref / ref.sum(axis=-1, keepdims=True)
    if batch is not None and ref.ndim == 1:
        ref = np.broadcast_to(ref, (batch, n)).copy()
    return ref


class PreferenceGame:
    """A tabular preference game, or a batch of games of the same size.

    Args:
        P: ``P[i, j] = P(i beats j)``, shape ``[N, N]`` or ``[G, N, N]``. Checked: square, in
            ``[0, 1]``, ``P + P.T == 1`` and diagonal 1/2 (to 1e-9), else ``ValueError``.
        ref: reference policy ``[N]`` (or ``[G, N]``); strictly positive, sums to 1. Default
            uniform. With ``beta = 0`` it only serves as the starting policy of ``solve``.
        beta: KL coefficient (``tau`` in Nash-MD, ``beta`` in EGPO); ``0`` is the plain game.

    Shapes: for a single game, policies are ``[N]`` and scalar results are floats; for a batch,
    policies are ``[G, N]`` and results are arrays ``[G]``.
    """

    def __init__(self, P: Any, ref: Any = None, beta: float = 0.0) -> None:
        self.P = _check_preferences(P)
        self.batched = self.P.ndim == 3
        self.n_actions = self.P.shape[-1]
        self.n_games = self.P.shape[0] if self.batched else 1
        self.ref = _check_reference(ref, self.n_actions, self.n_games if self.batched else None)
        beta = float(beta)
        if not np.isfinite(beta) or beta < 0.0:
            raise ValueError(f"beta must be a finite number >= 0; got {beta}")
        self.beta = beta

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def stack(cls, games: Sequence[PreferenceGame]) -> PreferenceGame:
        """One batched game from single games with the same number of actions and beta."""
        if not games:
            raise ValueError("stack needs at least one game")
        if any(g.batched for g in games):
            raise ValueError("stack takes single games, not batches")
        sizes = {g.n_actions for g in games}
        betas = {g.beta for g in games}
        if len(sizes) != 1 or len(betas) != 1:
            raise ValueError(f"games to stack must share N and beta; got N={sizes}, beta={betas}")
        return cls(np.stack([g.P for g in games]), np.stack([g.ref for g in games]), games[0].beta)

    def __getitem__(self, index: int) -> PreferenceGame:
        if not self.batched:
            raise TypeError("only a batch of games can be indexed")
        return PreferenceGame(self.P[index], self.ref[index], self.beta)

    def __len__(self) -> int:
        return self.n_games

    def with_beta(self, beta: float) -> PreferenceGame:
        """The same preferences and reference with another KL coefficient."""
        return PreferenceGame(self.P, self.ref, beta)

    def __repr__(self) -> str:
        size = f"{self.n_games} games x {self.n_actions} actions" if self.batched else f"{self.n_actions} actions"
        return f"PreferenceGame({size}, beta={self.beta:g})"

    # ------------------------------------------------------------------ exact quantities
    def as_policy(self, pi: Any, name: str = "pi") -> np.ndarray:
        pi = np.array(pi, dtype=np.float64)
        expected = (self.n_games, self.n_actions) if self.batched else (self.n_actions,)
        if pi.shape != expected:
            raise ValueError(f"{name} must have shape {expected}; got {pi.shape}")
        if not np.all(np.isfinite(pi)) or pi.min() < -1e-12:
            raise ValueError(f"{name} must be a probability vector (finite, non-negative)")
        if np.abs(pi.sum(axis=-1) - 1.0).max() > 1e-8:
            raise ValueError(f"{name} must sum to 1; sums to {pi.sum(axis=-1)}")
        pi = np.clip(pi, 0.0, None)
        return pi / pi.sum(axis=-1, keepdims=True)

    def _out(self, value: np.ndarray) -> float | np.ndarray:
        return value if self.batched else float(value)

    def win_rate(self, pi: Any, opponent: Any) -> float | np.ndarray:
        """``P(pi beats opponent) = pi^T P opponent``."""
        pi, opponent = self.as_policy(pi), self.as_policy(opponent, "opponent")
        return self._out(np.einsum("...i,...ij,...j->...", pi, self.P, opponent))

    def kl_to_ref(self, pi: Any) -> float | np.ndarray:
        """``KL(pi || ref)``."""
        pi = self.as_policy(pi)
        terms = np.where(pi > 0, pi * (np.log(np.where(pi > 0, pi, 1.0)) - np.log(self.ref)), 0.0)
        return self._out(terms.sum(axis=-1))

    def payoff(self, pi: Any, opponent: Any) -> float | np.ndarray:
        """``J_beta(pi, opponent) = pi^T P opponent - beta KL(pi||ref) + beta KL(opponent||ref)``."""
        value = self.win_rate(pi, opponent)
        if self.beta > 0:
            value = value - self.beta * self.kl_to_ref(pi) + self.beta * self.kl_to_ref(opponent)
        return value

    def best_response(self, pi: Any) -> np.ndarray:
        """The best reply to ``pi`` (for either player, the game being symmetric).

        ``beta > 0``: the closed-form KL-regularised reply ``softmax(log ref + P pi / beta)``.
        ``beta = 0``: the pure strategy on ``argmax_i (P pi)_i`` (lowest index on ties).
        """
        pi = self.as_policy(pi)
        P_pi = matvec(self.P, pi)
        if self.beta > 0:
            return np.exp(normalize_log(np.log(self.ref) + P_pi / self.beta))
        reply = np.zeros_like(pi)
        np.put_along_axis(reply, P_pi.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return reply

    def duality_gap(self, pi: Any) -> float | np.ndarray:
        """Exact duality gap ``max_p J(p, pi) - min_q J(pi, q)`` of the symmetric profile.

        ``beta > 0``: ``2 beta KL(pi || softmax(log ref + P pi / beta))`` (the closed-form
        best response plugged in; see ``_arrays.regularized_gap``). ``beta = 0``:
        ``2 max_i (P pi)_i - 1`` (the best pure reply). Zero exactly at the Nash equilibrium;
        a float for one game, an array ``[G]`` for a batch.
        """
        pi = self.as_policy(pi)
        P_pi = matvec(self.P, pi)
        if self.beta > 0:
            log_pi = np.log(np.where(pi > 0, pi, 1.0))
            gap = regularized_gap(log_pi, pi, P_pi, np.log(self.ref), self.beta)
        else:
            gap = unregularized_gap(P_pi)
        return self._out(gap)

    # ------------------------------------------------------------------ solvers
    def nash(self) -> tuple[np.ndarray, float | np.ndarray]:
        """The Nash equilibrium and the game value.

        ``beta = 0``: the exact max-min policy by linear programming (scipy's HiGHS), then
        polished on its support by solving the equaliser equations, so its duality gap is at
        rounding level. ``beta > 0``: the unique regularised equilibrium, solved as the fixed
        point ``log pi = log ref + P pi / beta - c`` by damped Newton's method, continued from
        ``beta' = max(beta, 1)`` down to ``beta`` (halving), to a duality gap below 1e-10
        (``RuntimeError`` otherwise). See ``prefkit.games.nash``.

        Returns ``(pi, value)``: ``value`` is ``min_j P(pi beats j)`` for ``beta = 0`` and
        ``J_beta(pi, pi)`` for ``beta > 0``; both are 1/2 for every symmetric preference game,
        up to rounding.
        """
        from prefkit.games.nash import lp_equilibrium, regularized_equilibrium

        Ps = self.P if self.batched else self.P[None]
        refs = self.ref if self.batched else self.ref[None]
        policies, values = [], []
        for P, ref in zip(Ps, refs):
            if self.beta > 0:
                pi = regularized_equilibrium(P, ref, self.beta)
                value = float(pi @ P @ pi)
            else:
                pi, value = lp_equilibrium(P)
            policies.append(pi)
            values.append(value)
        if self.batched:
            return np.stack(policies), np.array(values)
        return policies[0], values[0]

    def solve(self, method: str, iters: int = 1000, eta: float | None = None, **options: Any):
        """Run an iterative method; see ``prefkit.games.solvers.solve`` for methods and options.

        ``eta`` is the mirror-descent step of EGPO Sec. 3.2,
        ``log pi_{t+1} = (1 - eta beta) log pi_t + eta beta log ref + eta P q_t``.
        Returns a ``SolveResult`` with ``.policy`` and ``.gaps`` (one per iteration).
        """
        from prefkit.games.solvers import solve

        return solve(self, method, iters, eta, **options)
