"""The ordinal reward model: a scalar reward plus ordered thresholds, fitted to graded labels.

``OrdinalHead`` (defined in ``prefkit.preference.heads`` with the other heads, re-exported here)
maps the pooled state to a score ``r(x, y)`` (no bias: the thresholds carry the
offset) and holds ``L - 1`` strictly increasing thresholds ``theta_0 = b``,
``theta_j = theta_{j-1} + softplus(d_j) + MIN_GAP`` (so any parameter values are strictly ordered,
also in float32). The class
probabilities are the cumulative-logit model of ``prefkit.losses.ordinal``; the reward is
Bradley-Terry compatible, ``P(a beats b) = sigmoid(r_a - r_b)``, so the model is a
``ScoringPreferenceModel`` usable everywhere a BT reward model is (``rm eval``, best-of-n, a judge).

Training goes through the engine's preference-model step for ratings (``rm train --kind ordinal``,
``prefkit.engine.preference.ordinal``): :func:`ordinal_batch_loss` is what that step computes per
micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prefkit.data.records import Text
from prefkit.losses.ordinal import Variant, ordinal, ordinal_probabilities
from prefkit.preference.heads import MIN_GAP, OrdinalHead
from prefkit.preference.models import MODEL_CLASSES, EmbeddingPreferenceModel

__all__ = ["MIN_GAP", "OrdinalHead", "OrdinalRewardModel", "ordinal_batch_loss", "rating_classes"]


class OrdinalRewardModel(EmbeddingPreferenceModel):
    """A backbone with an :class:`OrdinalHead`: a reward, class probabilities and expected ratings."""

    kind = "ordinal"
    head: OrdinalHead

    def score(self, prompts: Sequence[Text], responses: Sequence[Text], *, batch_size: int = 32) -> torch.Tensor:
        """The scalar reward ``r(x, y)``, ``[N]``."""
        return self.embed(prompts, responses, batch_size=batch_size)[:, 0]

    def class_probabilities(self, prompts: Sequence[Text], responses: Sequence[Text], *,
                            batch_size: int = 32) -> torch.Tensor:
        """``[N, levels]``: ``P(rating class = j | x, y)``."""
        scores = self.score(prompts, responses, batch_size=batch_size)
        with torch.no_grad():
            return ordinal_probabilities(scores, self.head.thresholds().detach().float().cpu())

    def expected_rating(self, prompts: Sequence[Text], responses: Sequence[Text], *, low: float = 1.0,
                        batch_size: int = 32) -> torch.Tensor:
        """``E[rating]`` on the scale ``low, low + 1, ..., low + levels - 1``, ``[N]``."""
        probs = self.class_probabilities(prompts, responses, batch_size=batch_size)
        return probs @ (low + torch.arange(self.head.levels, dtype=probs.dtype))


def rating_classes(ratings: Sequence[float], *, low: int, levels: int) -> torch.Tensor:
    """Integer ratings on ``low..low + levels - 1`` as classes ``0..levels - 1``; anything else
    (a fraction, a value off the scale) is a ``ValueError`` naming the row."""
    out = []
    for i, r in enumerate(ratings):
        c = float(r) - low
        if c != int(c) or not 0 <= c < levels:
            raise ValueError(f"rating {r!r} (row {i}) is not an integer on the scale {low}..{low + levels - 1}")
        out.append(int(c))
    return torch.tensor(out, dtype=torch.long)


def ordinal_batch_loss(model: OrdinalRewardModel, batch: Any, labels: torch.Tensor, *,
                       variant: Variant = "likelihood", forward: Any = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss an ordinal preference step computes on one micro-batch.

    ``batch`` is ``model.backbone.collate(rows)`` of rows ``[prompt, completion]`` (one row per
    rated completion, as ``backbone.prepare(prompts, completions)`` gives), ``labels`` the rating
    classes ``[N]`` (:func:`rating_classes`). Returns the unreduced loss ``[N]`` (the engine
    normalises it over the optimizer step like every other step) and detached metrics:
    ``ordinal/accuracy`` (the most probable class is the label), ``ordinal/mae`` (mean absolute
    error of the expected class) and ``ordinal/score`` (mean reward). ``forward`` is the module
    to call for the scores (a data-parallel wrapper of ``model``; default ``model.embed_train``).
    """
    scores = (forward or model.embed_train)(batch)[:, 0]
    thresholds = model.head.thresholds()
    loss = ordinal(scores, thresholds.to(scores.dtype), labels.to(scores.device), variant=variant)
    with torch.no_grad():
        probs = ordinal_probabilities(scores.detach(), thresholds.detach().to(scores.dtype))
        expected = probs @ torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
        target = labels.to(scores.device)
        metrics = {"ordinal/accuracy": (probs.argmax(1) == target).float(),
                   "ordinal/mae": (expected - target).abs(), "ordinal/score": scores.detach()}
    return loss, metrics


MODEL_CLASSES["ordinal"] = OrdinalRewardModel  # so build_model and the saved-directory loader know it
