"""What each loss needs, declared next to it, so the engine never branches on loss names."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

LossKind = Literal["pairwise", "listwise", "reward", "online", "token", "unpaired"]
Reduction = Literal["sequences", "tokens", "micro_tokens"]

TOKEN_TENSORS = ("logps", "old_logps", "ref_logps", "advantages", "mask")
"""The positional arguments of every ``token`` loss, in order."""

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
    - ``token`` (reinforcement-learning baselines: PPO, RLOO, GRPO, ...; ``prefkit.losses.rl``):
      per-token tensors ``[B, T]`` with a boolean response ``mask`` ``[B, T]``.

      1. Once per rollout batch: ``adv = advantage_fn(Rollout(rewards [B], mask, old_logps,
         ref_logps, values, group_size=K), **advantage_params)`` → ``Advantages``
         (``advantages`` ``[B]`` or ``[B, T]``, ``returns`` ``[B, T]`` for a value loss).
         ``old_logps`` are the sampling policy's per-token log-probs, ``values`` the critic's at
         sampling time; rows are prompt-major groups of K = ``online.samples_per_prompt``
         (at least ``min_samples_per_prompt``).
      2. Per micro-batch (rows sliced from the rollout): ``per_seq = fn(logps, old_logps,
         ref_logps, advantages, mask, **loss_params, **{p: engine value for p in
         engine_params})`` with ``logps`` ``[B, T]`` carrying gradients, and, when
         ``value_fn`` is set, ``per_seq += value_fn(values, old_values, returns, mask,
         **value_params)`` with the critic's current ``values`` (gradients). Then
         ``loss = prefkit.losses.reduce_to_step(per_seq, mask, reduction, step)`` with
         ``step = StepSize(sequences, tokens, micro_batches)`` of the whole optimizer step, and
         ``loss.backward()``: the micro-batch losses sum to the step's loss.

      ``split_params`` sorts ``loss.params`` between the three functions (their keyword names
      are disjoint); ``strength_arg`` (what ``loss.beta`` sets) may belong to ``fn`` or to
      ``advantage_fn``.
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
    strength_arg: str | None = "beta"
    """Name of the argument that ``loss.beta`` sets (``tau`` for ADPO); ``None`` if none."""
    targets_from_scores: Callable[..., torch.Tensor] | None = None
    advantage_fn: Callable[..., Any] | None = None
    """``token`` kind: ``Rollout`` → ``Advantages``, called once per rollout batch."""
    value_fn: Callable[..., torch.Tensor] | None = None
    """``token`` kind: the critic's loss (PPO), added to ``fn``'s per-sequence loss."""
    reduction: Reduction | None = None
    """``token`` kind: the batch normaliser of ``reduce_to_step``."""
    min_samples_per_prompt: int = 1
    """``token`` kind: the smallest K (``online.samples_per_prompt``) the advantages accept."""
    engine_params: tuple[str, ...] = ()
    """Keyword arguments of ``fn`` the engine supplies from its own settings (not
    ``loss.params``), e.g. ``max_completion_length`` = ``online.max_new_tokens``."""
    inputs: tuple[str, ...] = ()
    """Extra per-example tensors the step passes by keyword (names from :data:`INPUTS`)."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.inputs if name not in INPUTS]
        if unknown:
            raise ValueError(f"{self.name}: unknown inputs {unknown} (known: {', '.join(INPUTS)})")
        if self.kind == "token":
            if self.advantage_fn is None or self.reduction is None:
                raise ValueError(f"{self.name}: a token loss needs advantage_fn and reduction")
            seen: dict[str, str] = {}
            for part, fn in self._parts().items():
                for name in _keywords(fn):
                    if name in seen:
                        raise ValueError(
                            f"{self.name}: keyword {name!r} is in both {seen[name]} and {part}"
                        )
                    seen[name] = part

    def _parts(self) -> dict[str, Callable[..., Any]]:
        parts: dict[str, Callable[..., Any]] = {"fn": self.fn}
        if self.advantage_fn is not None:
            parts["advantage_fn"] = self.advantage_fn
        if self.value_fn is not None:
            parts["value_fn"] = self.value_fn
        return parts

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword-only arguments of ``fn`` with their default values."""
        return {name: value for name, value in _keywords(self.fn).items() if name not in self.inputs}

    @property
    def all_defaults(self) -> dict[str, dict[str, Any]]:
        """``{"fn": ..., "advantage_fn": ..., "value_fn": ...}``: each part's keyword defaults
        (only ``fn`` for kinds other than ``token``)."""
        return {part: _keywords(fn) for part, fn in self._parts().items()}

    def split_params(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Sort ``loss.params`` by the function that takes each key (``fn``, ``advantage_fn``,
        ``value_fn``); an unknown key, or one the engine supplies, is an error naming it."""
        owners = {name: part for part, names in self.all_defaults.items() for name in names}
        out: dict[str, dict[str, Any]] = {part: {} for part in self._parts()}
        for key, value in params.items():
            if key in self.engine_params or key not in owners:
                settable = sorted(set(owners) - set(self.engine_params))
                why = "is set by the engine" if key in self.engine_params else "is not a setting"
                raise ValueError(
                    f"loss.params.{key}: {why} of {self.name} (it takes: {', '.join(settable)})"
                )
            out[owners[key]][key] = value
        return out


def _keywords(fn: Callable[..., Any]) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }
