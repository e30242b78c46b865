"""Small numpy helpers shared by the game, the Nash solvers and the iterative methods.

Every helper works on the last axis and broadcasts over any leading (batch) axes.
"""

from __future__ import annotations

import numpy as np


def normalize_log(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis: ``logits - logsumexp(logits)``."""
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def matvec(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """``P @ pi`` for ``P[..., N, N]`` and ``pi[..., N]``: the win-rate of each action against pi."""
    return np.matmul(P, pi[..., None])[..., 0]


def regularized_gap(log_pi: np.ndarray, pi: np.ndarray, P_pi: np.ndarray,
                    log_ref: np.ndarray, beta: float) -> np.ndarray:
    """Duality gap of the KL-regularised symmetric game, ``2 beta KL(pi || BR(pi))``.

    With ``J(p, q) = p^T P q - beta KL(p||ref) + beta KL(q||ref)`` and ``P + P^T = 1``,
    ``max_p J(p, pi) - min_q J(pi, q) = 2 beta log sum ref exp(P pi / beta) + 2 beta KL(pi||ref) - 1``,
    which equals ``2 beta KL(pi || BR(pi))`` with ``BR(pi) = softmax(log ref + P pi / beta)``
    (use ``pi^T P pi = 1/2``). The KL form has no cancellation against the 1/2, so gaps down to
    1e-15 are resolved; it is non-negative up to rounding and clipped at 0.
    """
    log_br = normalize_log(log_ref + P_pi / beta)
    terms = np.where(pi > 0, pi * (log_pi - log_br), 0.0)
    return np.maximum(2.0 * beta * terms.sum(axis=-1), 0.0)


def unregularized_gap(P_pi: np.ndarray) -> np.ndarray:
    """Duality gap of the plain game, ``2 max_i (P pi)_i - 1`` (best pure reply on each side)."""
    return np.maximum(2.0 * P_pi.max(axis=-1) - 1.0, 0.0)


def sample_categorical(rng: np.random.Generator, probs: np.ndarray, k: int) -> np.ndarray:
    """``k`` draws from each row of ``probs[G, N]`` by inverting the CDF; returns ``[G, k]`` ints.

    The rows' CDFs are shifted by the row index (row g lives in [g, g + 1]) so that one
    ``searchsorted`` over the flattened, increasing array serves the whole batch.
    """
    g, n = probs.shape
    cdf = np.cumsum(probs, axis=-1)
    rows = np.arange(g)[:, None]
    u = rng.random((g, k)) * cdf[:, -1:] + rows
    flat = np.searchsorted((cdf + rows).ravel(), u.ravel(), side="right").reshape(g, k)
    return np.minimum(flat - rows * n, n - 1)
