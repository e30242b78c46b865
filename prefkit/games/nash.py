"""Exact Nash equilibria of one preference game (``P[N, N]``).

* ``lp_equilibrium``: the plain game (beta = 0). The max-min policy
  ``argmax_pi min_j (pi^T P)_j`` is a linear program (von Neumann); scipy's HiGHS solves it,
  then the solution is polished on its support by solving the equaliser equations
  ``(A pi)_S = 0, sum pi = 1`` with ``A = P - 1/2`` (accepted only if it is a distribution with
  a smaller duality gap), which removes the LP's ~1e-9 feasibility tolerance.
* ``regularized_equilibrium``: the KL-regularised game (beta > 0). Its unique equilibrium is
  the fixed point of the best response, ``log pi = log ref + P pi / beta - c``. We solve these
  ``N + 1`` equations in ``(u = log pi, c)`` together with ``sum exp(u) = 1`` by damped
  Newton's method. For small beta the fixed point is far from ``ref``, so we continue from
  ``beta' = max(beta, 1)`` (where ``pi ~ ref`` is an excellent start) down to ``beta`` by
  halving, each stage starting from the previous solution; Newton converges quadratically at
  every stage. The result is certified by the exact duality gap (below 1e-10, else
  ``RuntimeError``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from prefkit.games._arrays import matvec, normalize_log, regularized_gap, unregularized_gap

#: Required duality gap of ``regularized_equilibrium``.
REGULARIZED_GAP_TARGET = 1e-10


def _plain_gap(P: np.ndarray, pi: np.ndarray) -> float:
    return float(unregularized_gap(matvec(P, pi)))


def lp_equilibrium(P: np.ndarray) -> tuple[np.ndarray, float]:
    """Max-min policy of the plain preference game and its value ``min_j P(pi beats j)``."""
    n = P.shape[0]
    # variables (pi_1..pi_n, v): maximise v s.t. v <= sum_i pi_i P[i, j] for every column j.
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    a_ub = np.hstack([-P.T, np.ones((n, 1))])
    a_eq = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
    bounds = [(0.0, None)] * n + [(None, None)]
    res = linprog(
        cost, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        raise RuntimeError(f"the equilibrium LP failed: {res.message}")
    pi = np.clip(res.x[:n], 0.0, None)
    pi /= pi.sum()
    pi = _polish_on_support(P, pi)
    return pi, float((pi @ P).min())


def _polish_on_support(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Solve the equaliser equations on pi's support; keep the result only if it is better."""
    support = np.flatnonzero(pi > 1e-9)
    skew = P - 0.5
    system = np.vstack([skew[np.ix_(support, support)], np.ones((1, support.size))])
    rhs = np.zeros(support.size + 1)
    rhs[-1] = 1.0
    solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    if solution.min() < 0.0:
        return pi
    candidate = np.zeros_like(pi)
    candidate[support] = solution / solution.sum()
    return candidate if _plain_gap(P, candidate) <= _plain_gap(P, pi) else pi


def _newton_fixed_point(P: np.ndarray, log_ref: np.ndarray, beta: float, u: np.ndarray,
                        max_steps: int = 100) -> np.ndarray:
    """Damped Newton on ``F(u, c) = [u - log ref - P e^u / beta + c ; sum e^u - 1] = 0``."""
    n = u.size

    def residual(u: np.ndarray, c: float) -> np.ndarray:
        pi = np.exp(u)
        return np.concatenate([u - log_ref - P @ pi / beta + c, [pi.sum() - 1.0]])

    c = float(np.mean(log_ref + P @ np.exp(u) / beta - u))
    r = residual(u, c)
    norm = np.linalg.norm(r)
    for _ in range(max_steps):
        if norm < 1e-15:
            break
        pi = np.exp(u)
        jac = np.zeros((n + 1, n + 1))
        jac[:n, :n] = np.eye(n) - P * pi[None, :] / beta
        jac[:n, n] = 1.0
        jac[n, :n] = pi
        step = np.linalg.solve(jac, -r)
        scale = 1.0
        while scale > 1e-12:
            u_new, c_new = u + scale * step[:n], c + scale * step[n]
            r_new = residual(u_new, c_new)
            norm_new = np.linalg.norm(r_new)
            if np.isfinite(norm_new) and norm_new < (1.0 - 1e-4 * scale) * norm:
                break
            scale *= 0.5
        else:
            break
        if norm - norm_new < 1e-16:
            u, c, r, norm = u_new, c_new, r_new, norm_new
            break
        u, c, r, norm = u_new, c_new, r_new, norm_new
    return normalize_log(u)


def regularized_equilibrium(P: np.ndarray, ref: np.ndarray, beta: float) -> np.ndarray:
    """The unique Nash equilibrium of the KL-regularised game, to a duality gap < 1e-10."""
    if beta <= 0:
        raise ValueError("regularized_equilibrium needs beta > 0; use lp_equilibrium for beta = 0")
    log_ref = np.log(ref)
    schedule = [max(beta, 1.0)]
    while schedule[-1] > beta:
        schedule.append(max(schedule[-1] / 2.0, beta))
    u = log_ref.copy()
    for stage_beta in schedule:
        u = _newton_fixed_point(P, log_ref, stage_beta, u)
    pi = np.exp(u)
    pi /= pi.sum()
    log_pi = normalize_log(u)
    gap = float(regularized_gap(log_pi, pi, matvec(P, pi), log_ref, beta))
    if not gap < REGULARIZED_GAP_TARGET:
        raise RuntimeError(
            f"Newton's method reached a duality gap of {gap:.3g} only (target "
            f"{REGULARIZED_GAP_TARGET:g}) at beta={beta:g}"
        )
    return pi
