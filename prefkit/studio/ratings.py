"""The arena leaderboard: Bradley-Terry ratings with bootstrap intervals, win rates, cycles, GPM.

Computed as Chatbot Arena computes them (FastChat ``serve/monitor/rating_systems.py``; Chiang
et al. 2024, arXiv 2403.04132, section 4): a logistic maximum-likelihood fit without intercept
over the unique (model_a, model_b, outcome) rows weighted by their counts, outcome 1 / 0.5 / 0
(a tie, and "both bad", count as half a win and half a loss), reported on the Elo scale
``1000 + 400 log10(e) r`` (centred at a mean of 1000; BT fixes only differences). Intervals are
the 2.5 / 97.5 percentiles over ``n_boot`` bootstrap rounds that re-weight the battles
multinomially (seed 0); rank = 1 + the number of models whose lower bound is above this
model's upper bound.

When the majority relation has a cycle (A beats B, B beats C, C beats A by win rate), no
scalar rating is faithful: the view adds a tabular General Preference Model (Zhang et al. 2024,
arXiv 2410.02197: a ``2k`` vector per model, ``P(i beats j) = sigmoid(<R v_i, v_j>)``) and the
maximin (Nash) mixture of its preference matrix (``prefkit.sim.nash_equilibrium``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from prefkit.studio.store import Store, utcnow

SCALE = 400.0 / np.log(10.0)
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass
class Leaderboard:
    models: list[str]
    rating: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    rank: np.ndarray
    battles: np.ndarray
    """``[M]`` battles per model."""
    wins: np.ndarray
    """``[M, M]`` wins of row over column (ties count half)."""
    counts: np.ndarray
    """``[M, M]`` battles between row and column."""
    cycles: list[list[str]] = field(default_factory=list)
    gpm_prob: np.ndarray | None = None
    nash: np.ndarray | None = None
    n_boot: int = 0
    n_battles: int = 0

    def order(self) -> list[int]:
        return sorted(range(len(self.models)), key=lambda i: (-self.rating[i], self.models[i]))

    def win_rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.wins / np.maximum(self.counts, 1), np.nan)


def bt_fit(rows: np.ndarray, weights: np.ndarray, n_models: int, l2: float = 1e-6) -> np.ndarray:
    """Ratings ``r`` (natural-log units, mean 0) maximising the weighted BT likelihood of
    ``rows[:, :2]`` = (a, b) model indices with outcome ``rows[:, 2]``."""
    a, b, y = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]

    def objective(r: np.ndarray) -> tuple[float, np.ndarray]:
        z = r[a] - r[b]
        loss = -(weights * (y * log_expit(z) + (1 - y) * log_expit(-z))).sum() + 0.5 * l2 * r @ r
        g = weights * (expit(z) - y)
        grad = np.bincount(a, g, n_models) - np.bincount(b, g, n_models) + l2 * r
        return float(loss), grad

    r = minimize(objective, np.zeros(n_models), jac=True, method="L-BFGS-B").x
    return r - r.mean()


def find_cycles(win_rate: np.ndarray, names: list[str]) -> list[list[str]]:
    """Every directed 3-cycle of the majority relation (i beats j when its win rate > 1/2)."""
    n = len(names)
    beats = np.nan_to_num(win_rate, nan=0.5) > 0.5
    cycles = []
    for i, j, k in itertools.combinations(range(n), 3):
        if beats[i, j] and beats[j, k] and beats[k, i]:
            cycles.append([names[i], names[j], names[k]])
        elif beats[i, k] and beats[k, j] and beats[j, i]:
            cycles.append([names[i], names[k], names[j]])
    return cycles


def gpm_fit(rows: np.ndarray, weights: np.ndarray, n_models: int, *, k: int = 2, l2: float = 0.1,
            seed: int = 0) -> np.ndarray:
    """``[M, M]`` ``P(i beats j)`` of a tabular GPM (one ``2k`` vector per model) fitted by MLE."""
    a, b, y = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]

    def scores(V: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        vi, vj = V[i].reshape(-1, k, 2), V[j].reshape(-1, k, 2)
        return (vi[..., 0] * vj[..., 1] - vi[..., 1] * vj[..., 0]).sum(-1)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        V = flat.reshape(n_models, 2 * k)
        s = scores(V, a, b)
        loss = -(weights * (y * log_expit(s) + (1 - y) * log_expit(-s))).sum() + 0.5 * l2 * flat @ flat
        g = weights * (expit(s) - y)
        va, vb = V[a].reshape(-1, k, 2), V[b].reshape(-1, k, 2)
        da = np.stack([vb[..., 1], -vb[..., 0]], -1).reshape(-1, 2 * k) * g[:, None]
        db = np.stack([-va[..., 1], va[..., 0]], -1).reshape(-1, 2 * k) * g[:, None]
        grad = np.zeros_like(V)
        np.add.at(grad, a, da)
        np.add.at(grad, b, db)
        return float(loss), (grad + l2 * V).ravel()

    start = np.random.default_rng(seed).normal(scale=0.5, size=n_models * 2 * k)
    V = minimize(objective, start, jac=True, method="L-BFGS-B").x.reshape(n_models, 2 * k)
    i, j = np.meshgrid(np.arange(n_models), np.arange(n_models), indexing="ij")
    return expit(scores(V, i.ravel(), j.ravel())).reshape(n_models, n_models)


def leaderboard(battles: list[tuple[str, str, str]], *, n_boot: int = 100, seed: int = 0) -> Leaderboard | None:
    """The leaderboard of ``(model_a, model_b, verdict)`` battles; None without any."""
    from prefkit.sim import nash_equilibrium

    battles = [b for b in battles if b[0] != b[1]]
    if not battles:
        return None
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    n = len(models)
    unique = Counter((index[a], index[b], OUTCOME[v]) for a, b, v in battles)
    rows = np.array(list(unique.keys()), dtype=float)
    counts = np.array(list(unique.values()), dtype=float)
    r = bt_fit(rows, counts, n)
    rng = np.random.default_rng(seed)
    total = int(counts.sum())
    boot = np.stack([bt_fit(rows, rng.multinomial(total, counts / total).astype(float), n) for _ in range(n_boot)]) \
        if n_boot else r[None]
    rating = 1000 + SCALE * r
    lo = 1000 + SCALE * np.percentile(boot, 2.5, axis=0)
    hi = 1000 + SCALE * np.percentile(boot, 97.5, axis=0)
    rank = np.array([1 + int(np.sum(lo > hi[i])) for i in range(n)])
    wins, pair_counts = np.zeros((n, n)), np.zeros((n, n))
    per_model = np.zeros(n)
    for (i, j, y), c in unique.items():
        i, j = int(i), int(j)
        wins[i, j] += c * y
        wins[j, i] += c * (1 - y)
        pair_counts[i, j] += c
        pair_counts[j, i] += c
        per_model[i] += c
        per_model[j] += c
    board = Leaderboard(models, rating, lo, hi, rank, per_model, wins, pair_counts, n_boot=n_boot,
                        n_battles=total)
    board.cycles = find_cycles(board.win_rate(), models)
    if board.cycles:
        board.gpm_prob = gpm_fit(rows, counts, n, seed=seed)
        board.nash = nash_equilibrium(board.gpm_prob)
    return board


def arena_battles(store: Store) -> list[tuple[str, str, str]]:
    """Every labelled pair whose two responses come from two different checkpoints."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from prefkit.studio.schema import Assignment, Checkpoint, Label, Pair, Response

    ra, rb = aliased(Response), aliased(Response)
    ca, cb = aliased(Checkpoint), aliased(Checkpoint)
    with store.read() as s:
        rows = s.execute(
            select(ca.name, cb.name, Label.verdict).select_from(Label)
            .join(Assignment, Assignment.id == Label.assignment_id).join(Pair, Pair.id == Assignment.pair_id)
            .join(ra, ra.id == Pair.resp_a_id).join(rb, rb.id == Pair.resp_b_id)
            .join(ca, ca.id == ra.checkpoint_id).join(cb, cb.id == rb.checkpoint_id)
            .where(Pair.project_id == store.project_id, ra.checkpoint_id != rb.checkpoint_id)
            .order_by(Label.id)).all()
    return [tuple(r) for r in rows]


def record_run(store: Store, board: Leaderboard, *, seed: int = 0) -> int:
    """Persist a computed leaderboard (``rating_run`` + one ``rating`` per model)."""
    from sqlalchemy import select

    from prefkit import __version__
    from prefkit.studio.schema import Checkpoint, Rating, RatingRun

    with store.write() as s:
        run = RatingRun(project_id=store.project_id, method="bt", n_boot=board.n_boot, seed=seed,
                        tie_policy="half win (both bad = tie)", n_labels=board.n_battles, code_version=__version__,
                        created_at=utcnow())
        s.add(run)
        s.flush()
        ids = dict(s.execute(select(Checkpoint.name, Checkpoint.id)).all())
        for i, name in enumerate(board.models):
            s.add(Rating(run_id=run.id, checkpoint_id=ids[name], score=float(board.rating[i]),
                         ci_lo=float(board.ci_lo[i]), ci_hi=float(board.ci_hi[i]), rank=int(board.rank[i]),
                         n_battles=int(board.battles[i])))
        return run.id


def as_json(board: Leaderboard) -> dict[str, Any]:
    order = board.order()
    rate = board.win_rate()
    out: dict[str, Any] = {
        "battles": board.n_battles, "bootstrap_rounds": board.n_boot,
        "models": [{"model": board.models[i], "rating": round(float(board.rating[i]), 1),
                    "ci_lo": round(float(board.ci_lo[i]), 1), "ci_hi": round(float(board.ci_hi[i]), 1),
                    "rank": int(board.rank[i]), "battles": int(board.battles[i])} for i in order],
        "win_rate": {board.models[i]: {board.models[j]: (None if np.isnan(rate[i, j]) else round(float(rate[i, j]), 3))
                                       for j in order if j != i} for i in order},
        "cycles": board.cycles,
    }
    if board.gpm_prob is not None and board.nash is not None:
        out["gpm"] = {"prob": {board.models[i]: {board.models[j]: round(float(board.gpm_prob[i, j]), 3)
                                                 for j in order if j != i} for i in order},
                      "nash": {board.models[i]: round(float(board.nash[i]), 3) for i in order}}
    return out
