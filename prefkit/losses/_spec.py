"""What each loss needs, declared next to it, so the engine never branches on loss names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

LossKind = Literal["pairwise", "listwise", "reward", "online"]


@dataclass(frozen=True)
class LossSpec:
    """A registry entry: the pure function and what the engine must feed it.

    Calling conventions by ``kind`` (all return an unreduced per-example tensor ``[B]``):

    - ``pairwise``: ``fn(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
      *, beta=..., **params)``; sequence log-prob sums ``[B]``. When ``needs_reference`` is
      false the reference tensors may be ``None``. When ``needs_lengths`` is true the engine
      also passes ``chosen_lengths`` and ``rejected_lengths`` (response token counts ``[B]``).
    - ``listwise``: ``fn(logps, ref_logps, labels, *, beta=..., mask=mask, **params)`` with
      ``[B, K]`` tensors; ``labels`` are per-response scores (higher is better) unless
      ``targets_from_scores`` is set, in which case the engine passes
      ``targets_from_scores(scores, mask)`` (for example ADPO's target distribution).
    - ``reward``: preference-model losses on scores or embeddings (see each function).
    - ``online``: objectives whose inputs come from the online sample-judge-update step.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    kind: LossKind
    paper: str
    """Short citation: authors, year, arXiv id and the equation implemented."""
    needs_reference: bool = True
    needs_lengths: bool = False
    online: bool = False
    """Needs samples from the current policy during training."""
    needs_oracle: bool = False
    """Needs a preference oracle (judge or preference model) during training."""
    strength_arg: str | None = "beta"
    """Name of the argument that ``loss.beta`` sets (``tau`` for ADPO); ``None`` if none."""
    targets_from_scores: Callable[..., torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword-only arguments of ``fn`` with their default values."""
        return {
            name: p.default
            for name, p in inspect.signature(self.fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }
