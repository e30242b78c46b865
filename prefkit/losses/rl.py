"""Policy-gradient losses of the reinforcement-learning baselines: PPO, RLOO, GRPO and its
aggregation variants (BNPO, Dr. GRPO, DAPO), REINFORCE++ (the registry's ``token`` kind).

Calling convention (see :class:`prefkit.losses.LossSpec`): per-token tensors ``[B, T]`` with
a boolean response ``mask`` ``[B, T]``::

    per_sequence = fn(logps, old_logps, ref_logps, advantages, mask, **params)   # [B]
    loss = reduce_to_step(per_sequence, mask, spec.reduction, step)              # scalar

``logps`` carries gradients (the current policy), ``old_logps`` are the sampling-time
log-probs, ``ref_logps`` the reference's (``None`` where the loss has no KL term), and
``advantages`` are ``[B]`` (one per sequence) or ``[B, T]``. ``old_logps``, ``ref_logps`` and
``advantages`` are detached targets. Each function returns one value per sequence, already
aggregated over its tokens the way the method defines; :func:`reduce_to_step` then applies the
method's batch normaliser so that summing the micro-batch losses of an optimizer step (one
``backward`` each) gives the step's loss exactly, whatever the micro-batching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefkit.losses import _checks
from prefkit.losses._spec import Reduction
from prefkit.losses.advantages import (
    TOKENS,
    KLEstimator,
    check_token_inputs,
    kl_penalty,
    row_mask,
)

REDUCTIONS: tuple[str, ...] = ("sequences", "tokens", "micro_tokens")


# ---------------------------------------------------------------------------- reduction


@dataclass(frozen=True)
class StepSize:
    """The optimizer step a micro-batch belongs to: what the batch normalisers divide by.

    ``sequences`` and ``tokens`` (response tokens) count the whole step, over all its
    micro-batches (and processes); ``micro_batches`` is how many micro-batches it has.
    """

    sequences: int
    tokens: int
    micro_batches: int = 1

    def __post_init__(self) -> None:
        for name in ("sequences", "tokens", "micro_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StepSize.{name} must be a positive integer, got {value!r}")

    @classmethod
    def of(cls, *masks: torch.Tensor) -> StepSize:
        """The step made of these micro-batches' response masks."""
        if not masks:
            raise ValueError("StepSize.of needs at least one mask")
        return cls(
            sequences=sum(int(m.shape[0]) for m in masks),
            tokens=sum(int(m.sum()) for m in masks),
            micro_batches=len(masks),
        )


def reduce_to_step(
    per_sequence: torch.Tensor,
    mask: torch.Tensor,
    reduction: Reduction,
    step: StepSize | None = None,
) -> torch.Tensor:
    """This micro-batch's share of the optimizer step's loss (a scalar).

    - ``"sequences"``: ``Σ_i loss_i / step.sequences`` (a mean over sequences: GRPO,
      Dr. GRPO, RLOO);
    - ``"tokens"``: ``Σ_i loss_i / step.tokens``, the per-sequence losses being token sums (a
      mean over every response token of the step: DAPO, PPO, REINFORCE++);
    - ``"micro_tokens"``: ``Σ_i loss_i / (tokens of this micro-batch · step.micro_batches)``
      (a token mean per micro-batch, averaged over micro-batches: TRL's BNPO, which therefore
      depends on the micro-batch size).

    ``step=None`` means the micro-batch is the whole step. With one micro-batch per step each
    mode equals TRL 1.16's ``GRPOTrainer`` aggregation of the same name; with several
    equal-sized ones, the sum of the shares equals TRL's accumulated loss.
    """
    _checks.same_shape(1, per_sequence=per_sequence)
    row_mask(mask, per_sequence.shape[0], "per_sequence")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if step is None:
        step = StepSize.of(mask)
    total = per_sequence.sum()
    if reduction == "sequences":
        return total / step.sequences
    if reduction == "tokens":
        return total / step.tokens
    local = mask.sum().clamp(min=1).to(per_sequence.dtype)
    return total / (local * step.micro_batches)


# ----------------------------------------------------------------------- shared pieces


def clipped_surrogate(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
) -> torch.Tensor:
    """PPO's clipped surrogate as a loss, elementwise: ``−min(ρ A, clip(ρ, 1−ε_l, 1+ε_h) A)``.

    Paper: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv 1707.06347,
    eq. 7 (``ρ = exp(log_ratio)``; asymmetric ε_l, ε_h as in DAPO's clip-higher, Yu et al.
    2025, arXiv 2503.14476). Broadcasts ``advantages`` against ``log_ratio``.
    """
    _checks.positive("clip_low", clip_low)
    _checks.positive("clip_high", clip_high)
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def _token_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` or ``[B, T]`` advantages as a ``[B, 1]`` or ``[B, T]`` detached tensor."""
    _checks.tensor("advantages", advantages)
    rows = mask.shape[0]
    if advantages.dim() == 1 and advantages.shape[0] == rows:
        _checks.finite(advantages=advantages)
        return advantages.detach()[:, None]
    if tuple(advantages.shape) == tuple(mask.shape):
        _checks.finite_where(mask, advantages=advantages)
        return advantages.detach().masked_fill(~mask, 0.0)
    raise ValueError(
        f"advantages must have shape [B] = ({rows},) or [B, T] = {tuple(mask.shape)}, "
        f"got {tuple(advantages.shape)}"
    )


def _policy_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
    kl_coef: float,
    kl_name: str,
    kl_estimator: KLEstimator = "k3",
) -> torch.Tensor:
    """Per-token clipped surrogate plus ``kl_coef · KL`` (zero outside ``mask``), ``[B, T]``."""
    check_token_inputs(mask, logps=logps, old_logps=old_logps, ref_logps=ref_logps)
    _checks.non_negative(kl_name, kl_coef)
    if kl_coef > 0 and ref_logps is None:
        raise ValueError(f"ref_logps is required when {kl_name} > 0 (the KL term of the loss)")
    adv = _token_advantages(advantages, mask)
    log_ratio = (logps - old_logps.detach()).masked_fill(~mask, 0.0)
    per_token = clipped_surrogate(log_ratio, adv, clip_low=clip_low, clip_high=clip_high)
    if kl_coef > 0:
        assert ref_logps is not None
        per_token = per_token + kl_coef * kl_penalty(
            logps, ref_logps.detach(), mask, estimator=kl_estimator
        )
    return per_token.masked_fill(~mask, 0.0)


def _response_lengths(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return mask.sum(dim=-1).clamp(min=1).to(dtype)


# ------------------------------------------------------------------------------- PPO


def ppo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange: float = 0.2,
    kl_loss_coef: float = 0.0,
    kl_loss_estimator: KLEstimator = "k3",
    entropies: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    """PPO's clipped policy loss on per-token ratios, summed over each response's tokens.

    Paper: Schulman et al. 2017 (PPO), arXiv 1707.06347, eq. 7; the token-level RLHF form of
    Ouyang et al. 2022 (InstructGPT), arXiv 2203.02155, and Dubois et al. 2023 (AlpacaFarm),
    arXiv 2305.14387. Per response token t of sequence i:
    ``ℓ_it = −min(ρ_it Â_it, clip(ρ_it, 1 ± ε) Â_it) + c_KL · k3_it − c_H · H_it`` with
    ``ρ = exp(logps − old_logps)`` and Â from :func:`prefkit.losses.ppo_advantages` (GAE on
    KL-shaped rewards). Returns ``Σ_t ℓ_it``; the spec's reduction ``"tokens"`` makes the step
    loss a mean over all response tokens (TRL's ``masked_mean``).

    The KL penalty usually lives in the reward (``kl_coef`` of the advantages);
    ``kl_loss_coef > 0`` adds it as a loss term instead or as well, with ``kl_loss_estimator``
    (``k3`` as GRPO, or ``k1``/``k2``; :func:`prefkit.losses.kl_penalty`) on the current
    log-probs. The value loss is :func:`ppo_value`.

    Args:
        logps, old_logps, ref_logps, advantages, mask: the ``token`` convention (module doc);
            ``ref_logps`` is read only when ``kl_loss_coef > 0``.
        cliprange: ε > 0.
        kl_loss_coef: weight of the KL term in the loss (>= 0).
        kl_loss_estimator: ``"k3"`` (default), ``"k1"``, ``"k1_clamped"`` or ``"k2"``.
        entropies: ``[B, T]`` per-token entropy of the current policy (with gradients),
            required when ``entropy_coef > 0``.
        entropy_coef: entropy bonus weight c_H >= 0.
    """
    per_token = _policy_token_loss(
        logps, old_logps, ref_logps, advantages, mask,
        clip_low=cliprange, clip_high=cliprange, kl_coef=kl_loss_coef, kl_name="kl_loss_coef",
        kl_estimator=kl_loss_estimator,
    )  # fmt: skip
    _checks.non_negative("entropy_coef", entropy_coef)
    if entropy_coef > 0:
        if entropies is None:
            raise ValueError("entropies ([B, T]) are required when entropy_coef > 0")
        check_token_inputs(mask, logps=logps, entropies=entropies)
        per_token = per_token - entropy_coef * entropies.masked_fill(~mask, 0.0)
    return per_token.sum(dim=-1)


def ppo_value(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange_value: float = 0.2,
    vf_coef: float = 0.1,
) -> torch.Tensor:
    """PPO's clipped value loss, weighted by ``vf_coef`` and summed over each response's tokens.

    Paper: Schulman et al. 2017 (PPO), arXiv 1707.06347, eq. 9 (the value term ``c_1 L^VF``),
    with the value clipping of OpenAI's baselines / InstructGPT / AlpacaFarm:
    ``½ · max((V − R)², (clip(V, V_old ± ε_v) − R)²)`` per response token, ``R`` the GAE
    returns. Returns ``vf_coef · Σ_t`` of that, ``[B]``; the reduction is ``"tokens"`` as for
    :func:`ppo`, so ``ppo + ppo_value`` is the step's total loss.

    Args:
        values: ``[B, T]`` current critic values (with gradients).
        old_values: ``[B, T]`` the sampling-time values (constants).
        returns: ``[B, T]`` value targets from :func:`prefkit.losses.ppo_advantages`.
        mask: ``[B, T]`` response tokens.
        cliprange_value: ε_v > 0. vf_coef: weight c_1 >= 0.
    """
    check_token_inputs(mask, values=values, old_values=old_values, returns=returns)
    _checks.positive("cliprange_value", cliprange_value)
    _checks.non_negative("vf_coef", vf_coef)
    old, target = old_values.detach(), returns.detach()
    clipped = torch.maximum(torch.minimum(values, old + cliprange_value), old - cliprange_value)
    per_token = 0.5 * torch.maximum((values - target) ** 2, (clipped - target) ** 2)
    return vf_coef * per_token.masked_fill(~mask, 0.0).sum(dim=-1)


# ------------------------------------------------------------------------------ RLOO


def rloo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> torch.Tensor:
    """RLOO's loss: REINFORCE with the leave-one-out baseline, on a clipped sequence ratio.

    Paper: Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740 (RLOO), as TRL 1.16's
    ``RLOOTrainer._compute_loss`` computes it: with sequence log-probs ``s = Σ_t logps`` and
    ``ρ = exp(s − s_old)``, ``loss_i = −min(ρ_i A_i, clip(ρ_i, 1 − ε, 1 + ε_h) A_i)``. At the
    sampling policy (ρ = 1) its gradient is the paper's ``−A_i ∇ log π(y_i|x)``.

    Args:
        logps, old_logps, advantages, mask: the ``token`` convention; advantages ``[B]`` from
            :func:`prefkit.losses.rloo_advantages` (the KL is in the reward there).
        ref_logps: not read (RLOO's KL penalty is part of the reward); may be ``None``.
        epsilon: ε > 0; epsilon_high: ε_h (``None``: ε).

    Returns:
        ``[B]`` per-sequence losses; reduction ``"sequences"`` (TRL: ``.mean()``).
    """
    check_token_inputs(mask, logps=logps, old_logps=old_logps)
    _checks.same_shape(1, advantages=advantages)
    if advantages.shape[0] != mask.shape[0]:
        raise ValueError(
            f"advantages must have shape [B] = ({mask.shape[0]},), got {tuple(advantages.shape)}"
        )
    _checks.finite(advantages=advantages)
    high = epsilon if epsilon_high is None else epsilon_high
    seq_logps = logps.masked_fill(~mask, 0.0).sum(dim=-1)
    seq_old = old_logps.detach().masked_fill(~mask, 0.0).sum(dim=-1)
    return clipped_surrogate(
        seq_logps - seq_old, advantages.detach(), clip_low=epsilon, clip_high=high
    )


# ------------------------------------------------------------------- GRPO and variants


def grpo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.04,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> torch.Tensor:
    """GRPO's clipped objective with a k3 KL term, each response's tokens averaged.

    Paper: Shao et al. 2024 (DeepSeekMath), arXiv 2402.03300, eq. 3 (k3 KL: eq. 4), as TRL
    1.16's ``GRPOTrainer`` with ``loss_type="grpo"``: per token
    ``ℓ_it = −min(ρ_it Â_i, clip(ρ_it, 1 − ε, 1 + ε_h) Â_i) + β k3_it``,
    ``k3 = e^{ref − logp} − (ref − logp) − 1``; returns ``(1/|o_i|) Σ_t ℓ_it`` and the reduction
    ``"sequences"`` averages over the G·N sequences. β = 0.04, ε = 0.2 are the paper's values
    (TRL's default β is 0). Advantages: :func:`prefkit.losses.grpo_advantages`.

    Args:
        logps, old_logps, ref_logps, advantages, mask: the ``token`` convention; ``ref_logps``
            is required when ``beta > 0``.
        beta: KL weight β >= 0. epsilon: ε > 0. epsilon_high: ε_h (``None``: ε).
    """
    per_token = _grpo_token_loss(logps, old_logps, ref_logps, advantages, mask,
                                 beta, epsilon, epsilon_high)  # fmt: skip
    return per_token.sum(dim=-1) / _response_lengths(mask, per_token.dtype)


def bnpo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.04,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> torch.Tensor:
    """GRPO's per-token objective normalised by the micro-batch's token count (TRL's BNPO).

    Paper: Shao et al. 2024 (GRPO), arXiv 2402.03300, eq. 3, with TRL 1.16's
    ``loss_type="bnpo"`` aggregation: ``Σ_{i,t} ℓ_it / Σ_{i,t} 1`` over the *local* batch.
    Returns the token sums ``Σ_t ℓ_it``; the reduction ``"micro_tokens"`` divides by the
    micro-batch's tokens and averages micro-batches, so results depend on the micro-batch
    size (as TRL warns); :func:`dapo` is the micro-batch-independent token mean.
    """
    per_token = _grpo_token_loss(logps, old_logps, ref_logps, advantages, mask,
                                 beta, epsilon, epsilon_high)  # fmt: skip
    return per_token.sum(dim=-1)


def dr_grpo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """Dr. GRPO: GRPO without the per-response length normalisation (a constant instead).

    Paper: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
    arXiv 2503.20783 (GRPO's eq. 3 without 1/|o_i|), as TRL 1.16's ``loss_type="dr_grpo"``:
    ``Σ_{i,t} ℓ_it / (G·N · L_max)`` with ``L_max`` the generation budget. Returns
    ``Σ_t ℓ_it / L_max`` per sequence; reduction ``"sequences"``. Its advantages drop the std
    as well (:func:`prefkit.losses.dr_grpo_advantages`). Default β = 0 (TRL's default; the
    paper's minimal recipe trains without the KL term [U]).

    Args:
        max_completion_length: ``L_max``, the most tokens a response may have
            (``online.max_new_tokens``); required, and no response may be longer.
        beta, epsilon, epsilon_high: as :func:`grpo`.
    """
    if max_completion_length is None:
        raise ValueError(
            "dr_grpo needs max_completion_length (the generation budget, online.max_new_tokens)"
        )
    if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int):
        raise ValueError(f"max_completion_length must be an integer, got {max_completion_length!r}")
    _checks.positive("max_completion_length", max_completion_length)
    per_token = _grpo_token_loss(logps, old_logps, ref_logps, advantages, mask,
                                 beta, epsilon, epsilon_high)  # fmt: skip
    if _checks.value_checks_enabled(mask):
        longest = int(mask.sum(dim=-1).max())
        if longest > max_completion_length:
            raise ValueError(
                f"a response has {longest} tokens, more than max_completion_length="
                f"{max_completion_length} (online.max_new_tokens)"
            )
    return per_token.sum(dim=-1) / max_completion_length


def dapo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = 0.28,
) -> torch.Tensor:
    """DAPO's token-level policy loss: one token mean over the whole step, clip-higher.

    Paper: Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
    arXiv 2503.14476: the token-level loss ``Σ_{i,t} ℓ_it / Σ_i |o_i|`` and the decoupled clip
    (clip-higher: ε_low = 0.2, ε_high = 0.28; no KL term, β = 0), as TRL 1.16's
    ``loss_type="dapo"`` (normalised by the active tokens of the accumulated batch). Returns the
    token sums; reduction ``"tokens"``. Dynamic sampling and the overlong penalty of DAPO are
    rollout-side and not part of this loss.
    """
    per_token = _grpo_token_loss(logps, old_logps, ref_logps, advantages, mask,
                                 beta, epsilon, epsilon_high)  # fmt: skip
    return per_token.sum(dim=-1)


def _grpo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    epsilon: float,
    epsilon_high: float | None,
) -> torch.Tensor:
    return _policy_token_loss(
        logps, old_logps, ref_logps, advantages, mask,
        clip_low=epsilon, clip_high=epsilon if epsilon_high is None else epsilon_high,
        kl_coef=beta, kl_name="beta",
    )  # fmt: skip


# ------------------------------------------------------------------------ REINFORCE++


def reinforce_pp(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange: float = 0.2,
) -> torch.Tensor:
    """REINFORCE++: PPO's clipped token loss with critic-free, globally normalised advantages.

    Paper: Hu 2025, "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt
    and Reward Models", arXiv 2501.03262: the clipped surrogate with critic-free advantages
    (:func:`prefkit.losses.reinforce_pp_advantages`: token-level KL in the reward,
    reward-to-go, normalised over the global batch). Returns ``Σ_t ℓ_it``; reduction
    ``"tokens"`` (OpenRLHF's token-level loss).

    Args:
        logps, old_logps, advantages, mask: the ``token`` convention, advantages ``[B, T]``.
        ref_logps: not read (the KL is in the reward); may be ``None``.
        cliprange: ε > 0.
    """
    if advantages.dim() != 2:
        raise ValueError(
            f"reinforce_pp needs per-token advantages {TOKENS}, got shape {tuple(advantages.shape)}"
        )
    per_token = _policy_token_loss(
        logps, old_logps, None, advantages, mask,
        clip_low=cliprange, clip_high=cliprange, kl_coef=0.0, kl_name="kl_coef",
    )  # fmt: skip
    return per_token.sum(dim=-1)
