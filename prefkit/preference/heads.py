"""Heads on a pooled hidden state: a scalar reward, a GPM embedding, a pairwise logit, or an
ordinal score with ordered thresholds.

Each head maps ``[N, H]`` to an embedding and knows how to turn two embeddings into the logit
of ``P(a beats b)``; the skew-symmetry ``logit(a, b) = -logit(b, a)`` holds exactly for the
scalar and GPM heads, so ``P(a, a) = 1/2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prefkit.losses import gpm_score


class RewardHead(nn.Module):
    """Bradley-Terry: a scalar ``r(x, y)`` (no bias: only differences matter);
    ``logit(a, b) = r_a - r_b``."""

    kind = "bt"

    def __init__(self, hidden_size: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, 1, bias=False)

    @property
    def embedding_size(self) -> int:
        return 1

    def forward(self, hidden: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.dropout(hidden))

    def logits(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return e_a[..., 0] - e_b[..., 0]

    def config(self) -> dict:
        return {"dim": 1}


class GPMHead(nn.Module):
    """General preference embedding (Zhang et al. 2024, arXiv 2410.02197, §3).

    ``v = W h`` (``2k`` values, optionally L2-normalised); the preference score is
    ``s(a, b) = <R v_a, v_b>`` with ``R = diag(λ_1 J, ..., λ_k J)``, ``J = [[0, -1], [1, 0]]``
    (:func:`prefkit.losses.gpm_score`), and ``logit(a, b) = s(a, b) / τ``.

    Eigenvalues ``λ``: ``ones`` (the paper's default), ``learned`` (one constant per block), or
    ``prompt`` (``λ = k softmax(W_p h_x / sqrt(d))``, the official code's prompt head). A
    prompt-dependent ``λ`` is stored after ``v`` in the embedding (``[2k + k]``) and the pair uses
    ``(λ_a + λ_b) / 2``, so the score stays exactly skew-symmetric even when the two rows' prompt
    vectors differ (an encoder's prompt vector also reads the response).
    """

    kind = "gpm"

    def __init__(
        self,
        hidden_size: int,
        *,
        dim: int = 2,
        tau: float = 0.1,
        normalize: bool = False,
        eigenvalues: str = "ones",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"dim must be a positive even number 2k, got {dim}")
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if eigenvalues not in ("ones", "learned", "prompt"):
            raise ValueError(f"eigenvalues must be 'ones', 'learned' or 'prompt', got {eigenvalues!r}")
        self.dim, self.tau, self.normalize, self.eigenvalue_mode = dim, float(tau), bool(normalize), eigenvalues
        self.blocks = dim // 2
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, dim, bias=False)
        self.hidden_size = hidden_size
        if eigenvalues == "learned":
            self.eigenvalues = nn.Parameter(torch.ones(self.blocks))
        elif eigenvalues == "prompt":
            self.prompt_linear = nn.Linear(hidden_size, self.blocks, bias=False)

    @property
    def embedding_size(self) -> int:
        return self.dim + (self.blocks if self.eigenvalue_mode == "prompt" else 0)

    def forward(self, hidden: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        v = self.linear(self.dropout(hidden))
        if self.normalize:
            v = F.normalize(v, dim=-1)
        if self.eigenvalue_mode != "prompt":
            return v
        if prompt is None:
            raise ValueError("prompt-dependent eigenvalues need the prompt's hidden state")
        lam = self.blocks * torch.softmax(self.prompt_linear(prompt) / math.sqrt(self.hidden_size), dim=-1)
        return torch.cat([v, lam], dim=-1)

    def split(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if e.shape[-1] != self.embedding_size:
            raise ValueError(f"GPM embeddings have {self.embedding_size} values, got {e.shape[-1]}")
        if self.eigenvalue_mode == "prompt":
            return e[..., : self.dim], e[..., self.dim :]
        return e, (self.eigenvalues if self.eigenvalue_mode == "learned" else None)

    def scores(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        """The skew-symmetric score ``s(a, b)`` (before the temperature); broadcasts."""
        v_a, lam_a = self.split(e_a)
        v_b, lam_b = self.split(e_b)
        v_a, v_b = torch.broadcast_tensors(v_a, v_b)
        lam = lam_a
        if self.eigenvalue_mode == "prompt":
            lam = 0.5 * (lam_a + lam_b)
        return gpm_score(v_a, v_b, eigenvalues=lam)

    def logits(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return self.scores(e_a, e_b) / self.tau

    def config(self) -> dict:
        return {"dim": self.dim, "tau": self.tau, "normalize": self.normalize, "eigenvalues": self.eigenvalue_mode}


class PairHead(nn.Module):
    """Pairwise classifier: the logit of ``P(first response beats second)`` from the pooled
    state of ``[prompt, a, b]`` (a bias is kept: it absorbs position bias, which the model's
    two-order average then cancels)."""

    kind = "pairpm"

    def __init__(self, hidden_size: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.dropout(hidden))[..., 0]

    def config(self) -> dict:
        return {}


MIN_GAP = 1e-3
"""Smallest distance between consecutive thresholds."""


class OrdinalHead(nn.Module):
    """Score ``r = w^T h`` and ``levels - 1`` ordered thresholds; ``logit(a, b) = r_a - r_b``."""

    kind = "ordinal"

    def __init__(self, hidden_size: int, *, levels: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"an ordinal head needs at least 2 levels, got {levels!r}")
        self.levels = levels
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, 1, bias=False)
        spacing = 4.0 / max(levels - 1, 1)  # initial thresholds spread over [-2, 2]
        self.first = nn.Parameter(torch.tensor(-2.0 if levels > 2 else 0.0))
        inverse_softplus = float(torch.log(torch.expm1(torch.tensor(spacing - MIN_GAP))))
        self.increments = nn.Parameter(torch.full((levels - 2,), inverse_softplus))

    @property
    def embedding_size(self) -> int:
        return 1

    def thresholds(self) -> torch.Tensor:
        """``[levels - 1]`` strictly increasing thresholds."""
        steps = F.softplus(self.increments) + MIN_GAP
        return torch.cat([self.first.reshape(1), self.first + torch.cumsum(steps, 0)])

    def forward(self, hidden: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.dropout(hidden))

    def logits(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return e_a[..., 0] - e_b[..., 0]

    def config(self) -> dict:
        return {"dim": 1, "levels": self.levels}


def build_head(kind: str, hidden_size: int, *, dim: int = 2, tau: float = 0.1, normalize: bool = False,
               eigenvalues: str = "ones", dropout: float = 0.0, levels: int = 5) -> nn.Module:
    if kind == "bt":
        return RewardHead(hidden_size, dropout=dropout)
    if kind == "gpm":
        return GPMHead(hidden_size, dim=dim, tau=tau, normalize=normalize, eigenvalues=eigenvalues, dropout=dropout)
    if kind == "pairpm":
        return PairHead(hidden_size, dropout=dropout)
    if kind == "ordinal":
        return OrdinalHead(hidden_size, levels=levels, dropout=dropout)
    raise ValueError(f"unknown preference model kind {kind!r} (known: bt, gpm, pairpm, ordinal)")
