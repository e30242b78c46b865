"""Neural preference models: a backbone plus a head, behind the ``PreferenceModel`` interface.

- :class:`RewardModel` (``bt``) and :class:`GeneralPreferenceModel` (``gpm``) embed each
  response once (``embed``), so K responses cost K forward passes and every pair comes from
  the embeddings (``prob_from_embeddings``).
- :class:`PairwisePreferenceModel` (``pairpm``) reads the prompt and both responses together;
  ``prob`` averages both orders, ``(f(a, b) + 1 - f(b, a)) / 2``, which removes position bias
  and makes ``P(a, b) + P(b, a) = 1`` exact.

Inference methods (``prob``, ``embed``, ``score``) run without gradients, in eval mode (dropout
off; the previous mode is restored), in internal batches of ``batch_size`` rows of distinct
inputs sorted by length; they return float32 CPU tensors. ``*_train`` methods are the
differentiable forwards that training uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from prefkit.data.records import Text
from prefkit.preference.heads import GPMHead, PairHead, RewardHead


@contextlib.contextmanager
def inference(module: nn.Module, *, dropout: bool = False) -> Iterator[None]:
    """No gradients and eval mode (or, with ``dropout=True``, eval mode except dropout layers:
    MC-dropout); the previous modes are restored afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    if dropout:
        for m in module.modules():
            if isinstance(m, nn.Dropout):
                m.train()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


class NeuralPreferenceModel(nn.Module):
    """A backbone plus a head; ``forward(batch)`` is the differentiable training forward (so
    data-parallel wrappers see it): embeddings for ``bt``/``gpm``, one-order logits for ``pairpm``."""

    kind = ""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def head_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the head (``rm.head_lr``): ``head.``, and the classification
        layer of a sequence-classifier backbone, which lives inside the transformers model."""
        return ("head.", *(f"backbone.{p}" for p in getattr(self.backbone, "head_prefixes", ())))

    def describe(self) -> dict[str, Any]:
        """What ``preference_model.json`` records about this model."""
        backbone = self.backbone.describe() if hasattr(self.backbone, "describe") else {"backbone": "features"}
        return {"kind": self.kind, **backbone, **self.head.config(), "dropout": float(self.head.dropout.p)}


class EmbeddingPreferenceModel(NeuralPreferenceModel):
    """Shared by ``bt`` and ``gpm``: one embedding per (prompt, response)."""

    def embed_train(self, batch: Any) -> torch.Tensor:
        hidden, prompt = self.backbone(batch)
        return self.head(hidden.float(), prompt.float())

    def forward(self, batch: Any) -> torch.Tensor:
        return self.embed_train(batch)

    def embed(
        self, prompts: Sequence[Text], responses: Sequence[Text], *, batch_size: int = 32, dropout: bool = False
    ) -> torch.Tensor:
        """``[N, D]`` embeddings (D = 1 for a reward); identical rows are computed once."""
        rows = self.backbone.prepare(prompts, responses)
        return self._embed_rows(rows, batch_size=batch_size, dropout=dropout)

    def _embed_rows(self, rows: Sequence[Any], *, batch_size: int, dropout: bool = False) -> torch.Tensor:
        out = torch.empty(len(rows), self.head.embedding_size)
        with inference(self, dropout=dropout):
            for positions, batch in self.backbone.batches(rows, batch_size):
                e = self.embed_train(batch).float().cpu()
                for j, where in enumerate(positions):
                    out[where] = e[j]
        return out

    def logits_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        """``logit P(a beats b)`` from embeddings (broadcasting: ``E[:, None], E[None, :]`` gives
        the K x K matrix of K responses)."""
        return self.head.logits(e_a, e_b)

    def prob_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits_from_embeddings(e_a, e_b))

    def logits(
        self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text], *, batch_size: int = 32,
        dropout: bool = False,
    ) -> torch.Tensor:
        """``logit P(a beats b | x)``, ``[N]``: a and b embedded together (each distinct row once)."""
        n = len(prompts)
        if not (len(a) == len(b) == n):
            raise ValueError(f"prompts, a and b must have the same length, got {n}, {len(a)}, {len(b)}")
        rows = self.backbone.prepare([*prompts, *prompts], [*a, *b])
        e = self._embed_rows(rows, batch_size=batch_size, dropout=dropout)
        with torch.no_grad():
            return self.logits_from_embeddings(e[:n], e[n:]).float()

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text], *, batch_size: int = 32) -> torch.Tensor:
        """``P(a beats b | x)``, ``[N]`` (exactly 1/2 when ``a == b``)."""
        return torch.sigmoid(self.logits(prompts, a, b, batch_size=batch_size))


class RewardModel(EmbeddingPreferenceModel):
    """Bradley-Terry reward model: ``P(a beats b) = sigmoid(r(x, a) - r(x, b))``."""

    kind = "bt"
    head: RewardHead

    def score(self, prompts: Sequence[Text], responses: Sequence[Text], *, batch_size: int = 32) -> torch.Tensor:
        """The scalar reward ``r(x, y)``, ``[N]``."""
        return self.embed(prompts, responses, batch_size=batch_size)[:, 0]


class GeneralPreferenceModel(EmbeddingPreferenceModel):
    """GPM: ``P(a beats b) = sigmoid(<R v_a, v_b> / τ)``; can represent cyclic preferences."""

    kind = "gpm"
    head: GPMHead

    def scores_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        """The skew-symmetric preference score ``s(a, b)`` (logit times τ)."""
        return self.head.scores(e_a, e_b)


class PairwisePreferenceModel(NeuralPreferenceModel):
    """A classifier over ``[prompt, a, b]``; ``prob`` is the position-debiased average."""

    kind = "pairpm"
    head: PairHead

    def logits_train(self, batch: Any) -> torch.Tensor:
        """The raw (one-order) logit of ``P(first beats second)`` for each row."""
        hidden, prompt = self.backbone(batch)
        return self.head(hidden.float(), prompt.float())

    def forward(self, batch: Any) -> torch.Tensor:
        return self.logits_train(batch)

    def ordered_logits(
        self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text], *, batch_size: int = 32,
        dropout: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(x, a, b), f(x, b, a))``: the raw logits in both orders, ``[N]`` each."""
        n = len(prompts)
        if not (len(a) == len(b) == n):
            raise ValueError(f"prompts, a and b must have the same length, got {n}, {len(a)}, {len(b)}")
        rows = self.backbone.prepare([*prompts, *prompts], [*a, *b], [*b, *a])
        out = torch.empty(2 * n)
        with inference(self, dropout=dropout):
            for positions, batch in self.backbone.batches(rows, batch_size):
                f = self.logits_train(batch).float().cpu()
                for j, where in enumerate(positions):
                    out[where] = f[j]
        return out[:n], out[n:]

    def logits(
        self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text], *, batch_size: int = 32,
        dropout: bool = False,
    ) -> torch.Tensor:
        """``logit`` of the debiased ``P(a beats b)``."""
        return self.debiased_logit(*self.ordered_logits(prompts, a, b, batch_size=batch_size, dropout=dropout))

    @staticmethod
    def debiased_logit(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
        """``logit((sigmoid(f) + sigmoid(-g)) / 2)`` computed in log space (finite for any f, g)."""
        ls = torch.nn.functional.logsigmoid
        return torch.logaddexp(ls(forward), ls(-backward)) - torch.logaddexp(ls(-forward), ls(backward))

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text], *, batch_size: int = 32) -> torch.Tensor:
        """``(P(a first beats b) + 1 - P(b first beats a)) / 2``, ``[N]`` (exactly 1/2 when ``a == b``)."""
        return torch.sigmoid(self.debiased_logit(*self.ordered_logits(prompts, a, b, batch_size=batch_size))).float()


MODEL_CLASSES: dict[str, type[NeuralPreferenceModel]] = {
    "bt": RewardModel,
    "gpm": GeneralPreferenceModel,
    "pairpm": PairwisePreferenceModel,
}


def build_model(kind: str, backbone: nn.Module, head: nn.Module) -> NeuralPreferenceModel:
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown preference model kind {kind!r} (known: {', '.join(MODEL_CLASSES)})")
    return MODEL_CLASSES[kind](backbone, head)
