"""Active selection: an ensemble of preference models fitted on the votes so far picks the pairs
whose label is expected to tell it the most.

Members (``ensemble_kind``):

- ``bt``: a linear Bradley-Terry reward ``r(x, y) = w . phi(x, y)`` fitted by L2-regularised
  maximum likelihood (L-BFGS), one per *bootstrap replica* of the votes (multinomial
  re-weighting, as Chatbot Arena's bootstrap): ``P_m(a beats b) = sigmoid(w_m . (phi_a - phi_b))``.
- ``gpm``: a linear General Preference Model (Zhang et al. 2024, arXiv 2410.02197): embeddings
  ``v = W phi`` (``2k`` values; ``phi`` carries a constant, so a BT reward is the special case
  ``v = [1, r]``), score ``s(a, b) = <R v_a, v_b>`` (``prefkit.losses.gpm_score``),
  ``P = sigmoid(s)``; each member a bootstrap replica from its own random start.

``phi`` is a hashed bag of words of the response (mean over its words), its opener word, its
length and length squared, the prompt's words times the length (so the preferred length may
depend on the prompt), and the share of repeated words: generic text features, nothing taken
from the simulated world.

Scores (Houlsby et al. 2011, arXiv 1112.5745; UPO, Wang et al. 2024, arXiv 2409.11212):
``bald`` = ``H(mean_m p_m) - mean_m H(p_m)`` (``prefkit.preference.noise.bald``), high where
members are each confident but disagree; ``variance`` = the members' variance of ``p_m``.
``random`` fits nothing: pairs go in the random order fixed at import (the control).

A tie or "both bad" vote is a soft label 1/2 (Chatbot Arena counts "both bad" as a tie).
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from prefkit.studio.store import Store, utcnow

MIN_LABELS = 10
WORD = re.compile(r"\w+")


def _bucket(word: str, size: int, salt: str) -> int:
    return zlib.crc32(f"{salt}:{word}".encode()) % size


@dataclass(frozen=True)
class TextFeatures:
    """Hashed generic features ``phi(x, y)`` of a prompt and a response (module docstring)."""

    words: int = 512
    openers: int = 16
    prompt_words: int = 64

    @property
    def dim(self) -> int:
        return self.words + self.openers + self.prompt_words + 4

    def __call__(self, prompt: str, response: str) -> np.ndarray:
        tokens = WORD.findall(response.lower())
        n = len(tokens)
        phi = np.zeros(self.dim)
        for t in tokens:
            phi[_bucket(t, self.words, "w")] += 1.0 / n
        if tokens:
            phi[self.words + _bucket(tokens[0], self.openers, "o")] = 1.0
        length = n / 10.0
        base = self.words + self.openers
        for t in set(WORD.findall(prompt.lower())):
            phi[base + _bucket(t, self.prompt_words, "p")] = length
        tail = base + self.prompt_words
        phi[tail] = length
        phi[tail + 1] = length**2
        phi[tail + 2] = (n - len(set(tokens))) / n if n else 0.0
        phi[tail + 3] = 1.0  # constant: cancels in BT differences; lets a GPM hold a BT reward
        return phi


@dataclass(frozen=True)
class Votes:
    """Training data: features of each pair's two responses and the target P(a beats b)."""

    phi_a: np.ndarray
    phi_b: np.ndarray
    target: np.ndarray


class Ensemble:
    """Fitted members; ``probabilities(phi_a, phi_b)`` is ``[M, N]``."""

    def __init__(self, kind: str, members: list[np.ndarray], k: int = 2) -> None:
        self.kind, self.members, self.k = kind, members, k

    def probabilities(self, phi_a: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
        if self.kind == "bt":
            d = phi_a - phi_b
            return np.stack([expit(d @ w) for w in self.members])
        return np.stack([expit(_gpm_scores(W, phi_a, phi_b, self.k)) for W in self.members])

    def mean_probability(self, phi_a: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
        return self.probabilities(phi_a, phi_b).mean(0)


def _gpm_scores(W: np.ndarray, phi_a: np.ndarray, phi_b: np.ndarray, k: int) -> np.ndarray:
    va, vb = phi_a @ W.T, phi_b @ W.T
    va, vb = va.reshape(len(va), k, 2), vb.reshape(len(vb), k, 2)
    return (va[..., 0] * vb[..., 1] - va[..., 1] * vb[..., 0]).sum(-1)


def bt_objective(votes: Votes, weights: np.ndarray, l2: float) -> Any:
    """``w -> (loss, gradient)``: the weighted soft-target BT log loss of ``w . (phi_a - phi_b)``
    plus ``l2 / 2 |w|^2``."""
    d = votes.phi_a - votes.phi_b
    y = votes.target

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = d @ w
        loss = -(weights * (y * log_expit(z) + (1 - y) * log_expit(-z))).sum() + 0.5 * l2 * w @ w
        grad = d.T @ (weights * (expit(z) - y)) + l2 * w
        return float(loss), grad

    return objective


def gpm_objective(votes: Votes, weights: np.ndarray, l2: float, k: int) -> Any:
    """``flat W -> (loss, gradient)`` of the linear GPM: the soft-target log loss of
    ``s(a, b) = <R W phi_a, W phi_b>`` (``prefkit.losses.gpm_score`` with unit eigenvalues and
    tau = 1) plus ``l2 / 2 |W|^2``."""
    dim = votes.phi_a.shape[1]
    y = votes.target

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        W = flat.reshape(2 * k, dim)
        ra = (votes.phi_a @ W.T).reshape(-1, k, 2)
        rb = (votes.phi_b @ W.T).reshape(-1, k, 2)
        s = (ra[..., 0] * rb[..., 1] - ra[..., 1] * rb[..., 0]).sum(-1)
        loss = -(weights * (y * log_expit(s) + (1 - y) * log_expit(-s))).sum() + 0.5 * l2 * (flat @ flat)
        g = weights * (expit(s) - y)  # d loss / d s
        # s = a0 b1 - a1 b0 per block: ds/da = (b1, -b0), ds/db = (-a1, a0)
        dva = np.stack([rb[..., 1], -rb[..., 0]], -1).reshape(len(s), 2 * k) * g[:, None]
        dvb = np.stack([-ra[..., 1], ra[..., 0]], -1).reshape(len(s), 2 * k) * g[:, None]
        grad = dva.T @ votes.phi_a + dvb.T @ votes.phi_b + l2 * W
        return float(loss), grad.ravel()

    return objective


def _bt_member(votes: Votes, weights: np.ndarray, l2: float) -> np.ndarray:
    start = np.zeros(votes.phi_a.shape[1])
    return minimize(bt_objective(votes, weights, l2), start, jac=True, method="L-BFGS-B",
                    options={"maxiter": 200}).x


def _gpm_member(votes: Votes, weights: np.ndarray, l2: float, k: int, rng: np.random.Generator) -> np.ndarray:
    dim = votes.phi_a.shape[1]
    start = rng.normal(scale=0.1, size=2 * k * dim)
    result = minimize(gpm_objective(votes, weights, l2, k), start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 300})
    return result.x.reshape(2 * k, dim)


def fit_ensemble(votes: Votes, *, kind: str = "bt", members: int = 8, seed: int = 0, l2: float = 1.0,
                 k: int = 2) -> Ensemble:
    """``members`` bootstrap replicas of the votes, each fitted (see the module docstring)."""
    if kind not in ("bt", "gpm"):
        raise ValueError(f"ensemble kind must be 'bt' or 'gpm', got {kind!r}")
    n = len(votes.target)
    if n == 0:
        raise ValueError("no votes to fit")
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    fitted = []
    with threadpool_limits(1):  # small matrices: BLAS threads only contend (40x slower on 2 cores)
        for _ in range(members):
            weights = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
            if kind == "bt":
                fitted.append(_bt_member(votes, weights, l2))
            else:
                fitted.append(_gpm_member(votes, weights, l2, k, rng))
    return Ensemble(kind, fitted, k)


def selection_scores(probabilities: np.ndarray, method: str) -> np.ndarray:
    """Per pair: BALD (nats) or the members' variance, from ``[M, N]`` probabilities."""
    if method == "bald":
        import torch

        from prefkit.preference.noise import bald

        return bald(torch.as_tensor(probabilities, dtype=torch.float64)).double().numpy()
    if method == "variance":
        return probabilities.var(0)
    raise ValueError(f"selection method must be 'bald' or 'variance', got {method!r}")


TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass
class StoreData:
    """Everything a refit needs, read in one transaction."""

    n_labels: int
    label_pairs: list[tuple[int, int, str]]  # (resp_a_id, resp_b_id, verdict)
    open_pairs: list[tuple[int, int, int]]  # (pair_id, resp_a_id, resp_b_id)
    texts: dict[int, tuple[str, str]]  # response id -> (prompt, response)


def read_store(store: Store) -> StoreData:
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment, Label, Pair, Prompt, Response

    with store.read() as s:
        labels = s.execute(
            select(Pair.resp_a_id, Pair.resp_b_id, Label.verdict).join(Assignment, Assignment.pair_id == Pair.id)
            .join(Label, Label.assignment_id == Assignment.id)
            .where(Pair.project_id == store.project_id, Pair.origin != "arena").order_by(Label.id)).all()
        open_pairs = s.execute(select(Pair.id, Pair.resp_a_id, Pair.resp_b_id).where(
            Pair.project_id == store.project_id, Pair.status == "open", Pair.origin != "arena").order_by(Pair.id)).all()
        texts = {rid: (p, t) for rid, p, t in s.execute(
            select(Response.id, Prompt.text, Response.text).join(Prompt, Prompt.id == Response.prompt_id)
            .where(Prompt.project_id == store.project_id))}
    return StoreData(len(labels), [tuple(r) for r in labels], [tuple(r) for r in open_pairs], texts)


class FeatureCache:
    def __init__(self, features: TextFeatures | None = None) -> None:
        self.features = features or TextFeatures()
        self.rows: dict[int, np.ndarray] = {}

    def matrix(self, ids: Sequence[int], texts: dict[int, tuple[str, str]]) -> np.ndarray:
        for rid in ids:
            if rid not in self.rows:
                self.rows[rid] = self.features(*texts[rid])
        if not ids:
            return np.zeros((0, self.features.dim))
        return np.stack([self.rows[rid] for rid in ids])


def votes_from(data: StoreData, cache: FeatureCache) -> Votes:
    a = [r[0] for r in data.label_pairs]
    b = [r[1] for r in data.label_pairs]
    target = np.array([TARGET[r[2]] for r in data.label_pairs], dtype=float)
    return Votes(cache.matrix(a, data.texts), cache.matrix(b, data.texts), target)


@dataclass(frozen=True)
class RoundResult:
    round_id: int
    n_labels: int
    scored: int


def refit(store: Store, cache: FeatureCache | None = None) -> RoundResult | None:
    """Fit the ensemble on every vote so far and score every open pair (one selection round).
    Returns None for ``random`` selection or fewer than ``MIN_LABELS`` votes. The background
    :class:`Refitter` calls it once ``max(MIN_LABELS, refit_every)`` votes exist and again after
    every ``refit_every`` more."""
    from sqlalchemy import update

    from prefkit import __version__
    from prefkit.studio.schema import Pair, SelectionRound

    project = store.project()
    if project.selection == "random":
        return None
    cache = cache or FeatureCache()
    data = read_store(store)
    if data.n_labels < MIN_LABELS:
        return None
    ensemble = fit_ensemble(votes_from(data, cache), kind=project.ensemble_kind, members=project.ensemble_size,
                            seed=project.seed + data.n_labels)
    scores = np.zeros(0)
    if data.open_pairs:
        phi_a = cache.matrix([p[1] for p in data.open_pairs], data.texts)
        phi_b = cache.matrix([p[2] for p in data.open_pairs], data.texts)
        scores = selection_scores(ensemble.probabilities(phi_a, phi_b), project.selection)
    params = {"kind": project.ensemble_kind, "members": project.ensemble_size, "l2": 1.0,
              "features": cache.features.dim, "min_labels": MIN_LABELS}
    with store.write() as s:
        round_row = SelectionRound(project_id=store.project_id, method=project.selection,
                                   params_json=json.dumps(params, sort_keys=True),
                                   model_version=f"prefkit-{__version__}/{project.ensemble_kind}x{project.ensemble_size}",
                                   n_labels=data.n_labels, created_at=utcnow())
        s.add(round_row)
        s.flush()
        if len(scores):
            s.execute(update(Pair), [{"id": pid, "score": float(sc), "selection_round_id": round_row.id}
                                     for (pid, _, _), sc in zip(data.open_pairs, scores)])
        return RoundResult(round_row.id, data.n_labels, len(scores))


def last_round_labels(store: Store) -> int | None:
    from sqlalchemy import select

    from prefkit.studio.schema import SelectionRound

    with store.read() as s:
        return s.scalar(select(SelectionRound.n_labels).where(SelectionRound.project_id == store.project_id)
                        .order_by(SelectionRound.id.desc()).limit(1))


def label_count(store: Store) -> int:
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment, Label, Pair

    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Label).join(Assignment, Assignment.id == Label.assignment_id)
                            .join(Pair, Pair.id == Assignment.pair_id)
                            .where(Pair.project_id == store.project_id, Pair.origin != "arena")) or 0)


def refit_due(store: Store) -> bool:
    project = store.project()
    if project.selection == "random":
        return False
    n = label_count(store)
    last = last_round_labels(store)
    if last is None:
        return n >= max(MIN_LABELS, project.refit_every)
    return n - last >= project.refit_every


class Refitter:
    """Refits in a background thread whenever ``refit_every`` new votes have arrived.

    ``notify()`` after each vote wakes it; ``state()`` tells whether a fit is running and how
    many votes the latest round saw (the benchmark waits on it through ``/api/status``).
    """

    def __init__(self, store: Store, *, log: Any = print) -> None:
        self.store, self.log = store, log
        self.cache = FeatureCache()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.fitting = False
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="studio-refit", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.wake.set()

    def notify(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=10)

    def state(self) -> dict[str, Any]:
        return {"fitting": self.fitting or self.wake.is_set(), "last_round_labels": last_round_labels(self.store),
                "error": self.error}

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(timeout=30)
            if self.stopping.is_set():
                return
            self.fitting = True
            self.wake.clear()
            try:
                while refit_due(self.store) and not self.stopping.is_set():
                    result = refit(self.store, self.cache)
                    if result is None:
                        break
                    self.error = None
            except Exception as err:  # keep serving tasks (random order) if a fit fails
                self.error = f"{type(err).__name__}: {err}"
                self.log(f"prefkit studio: active-selection refit failed: {self.error}")
            finally:
                self.fitting = False
