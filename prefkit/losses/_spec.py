"""What each loss needs, declared next to it, so the engine never branches on loss names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

LossKind = Literal["pairwise", "listwise", "reward", "online", "unpaired"]

INPUTS: dict[str, str] = {
    "chosen_tail_logps": "policy log-prob sum of the chosen response's tokens past position "
                         "min(|y_c|, |y_r|) (zero when chosen is the shorter), with gradients",
    "rejected_tail_logps": "the same for the rejected response",
    "ref_chosen_tail_logps": "chosen_tail_logps under the reference (no gradients)",
    "ref_rejected_tail_logps": "rejected_tail_logps under the reference",
    "chosen_wpo_logps": "mean over the chosen response's tokens of log π(y_t) − log Σ_v π(v)² under "
                        "the policy, no gradients (prefkit.policy.wpo_weight_logps)",
    "rejected_wpo_logps": "the same for the rejected response",
    "gold_logps": "policy log-prob sum of a gold (reference) response to the prompt, with gradients "
                  "(TRL's `reference` column)",
    "gold_lengths": "token count of that gold response",
    "kl_logps": "policy log-prob sums [B] of mismatched completions: row i's prompt with row i-1's "
                "completion (prefkit.data.kl_partners), no gradients",
    "ref_kl_logps": "the same under the reference",
}
"""Per-example tensors beyond a kind's standard arguments that a loss can declare in
``LossSpec.inputs``, and how the step computes each (the ``[B]`` shape of the batch)."""


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
    - ``unpaired``: ``fn(logps, ref_logps, labels, *, beta=..., **params)``: ``[B]`` sequence
      log-prob sums of one completion per example under the policy and the reference, and
      ``labels`` ``[B]`` bool (True: desirable); TRL's unpaired ``prompt``/``completion``/``label``
      format (``prefkit.data.UnpairedRecord``). The output includes any per-kind weights; the
      batch loss is its mean.

    ``inputs`` names further per-example tensors the step must pass by keyword (for example
    KTO's ``kl_logps``/``ref_kl_logps``, LD-DPO's tail log-probs); :data:`INPUTS` says how each
    is computed. A step that cannot compute one of them must refuse the loss.
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
    inputs: tuple[str, ...] = ()
    """Extra per-example tensors the step passes by keyword (names from :data:`INPUTS`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.inputs if name not in INPUTS]
        if unknown:
            raise ValueError(f"{self.name}: unknown inputs {unknown} (known: {', '.join(INPUTS)})")

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword-only arguments of ``fn`` with their default values."""
        return {
            name: p.default
            for name, p in inspect.signature(self.fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
            and name not in self.inputs
        }
