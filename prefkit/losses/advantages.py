"""Advantage estimators and reward shaping for the reinforcement-learning baselines (pure).

Layouts: per-token tensors are ``[B, T]`` with a boolean ``mask`` ``[B, T]`` that is true at the
response tokens (one contiguous run per row; prompt and padding false). Any alignment works as
long as every per-token tensor of a call shares it: ``prefkit.policy.token_logps`` gives
log-probs aligned with ``input_ids`` and ``EncodedBatch.response_mask``. Outside the mask every
output is 0. Group estimators take rewards ``[N, K]``: K samples for each of N prompts.

Everything here is a detached target: inputs are detached and no output carries gradients.
"""

from __future__ import annotations

from typing import Literal

import torch

from prefkit.losses import _checks

KLEstimator = Literal["k1", "k1_clamped", "k2", "k3"]
GroupScale = Literal["group", "batch", "none"]
PairwiseTransform = Literal["prob", "centered", "logit"]

KL_ESTIMATORS: tuple[str, ...] = ("k1", "k1_clamped", "k2", "k3")
TOKENS = "[B, T]"


def check_token_inputs(mask: torch.Tensor, **tensors: torch.Tensor | None) -> tuple[int, int]:
    """Per-token tensors share one ``[B, T]`` shape with a boolean ``mask`` of response tokens
    (every row non-empty and contiguous); no non-finite entry inside the mask."""
    shape = _checks.same_shape(2, dims=TOKENS, **tensors)
    _checks.mask_shape(mask, shape)
    _checks.rows_not_empty(mask)
    _checks.contiguous_rows(mask)
    _checks.finite_where(mask, **tensors)
    return shape[0], shape[1]


def row_mask(mask: object, rows: int, what: str) -> torch.Tensor:
    """``mask`` is a boolean ``[B, T]`` tensor with ``rows`` rows (one per entry of ``what``)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != rows:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape [B, T] with B = len({what}) = {rows}, got {got}")
    _checks.mask_shape(mask, tuple(mask.shape))
    return mask


def samples_per_prompt(rewards: torch.Tensor, method: str) -> int:
    """``rewards`` is ``[N, K]`` with K >= 2 (a group baseline needs another sample)."""
    _checks.same_shape(2, dims="[N, K] (N prompts, K samples each)", rewards=rewards)
    k = rewards.shape[1]
    if k < 2:
        raise ValueError(
            f"{method} needs at least 2 samples per prompt for its baseline "
            f"(set online.samples_per_prompt >= 2), got K={k}"
        )
    _checks.finite(rewards=rewards)
    return k


# ------------------------------------------------------------------------------------ KL


def kl_penalty(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    estimator: KLEstimator = "k1",
) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from the sampled token's log-probs, ``[B, T]``.

    Paper: Schulman 2020, "Approximating KL divergence" (k1, k2, k3); Shao et al. 2024 (GRPO),
    arXiv 2402.03300, eq. 4 uses k3. With ``d = ref_logps − logps``:

    - ``k1 = −d`` (unbiased, may be negative; InstructGPT's per-token penalty, TRL's RLOO),
    - ``k1_clamped = max(−d, 0)`` (AlpacaFarm's ``_shape_reward``),
    - ``k2 = d²/2``,
    - ``k3 = e^d − d − 1`` (unbiased, ≥ 0; GRPO's loss term).

    Differentiable in ``logps`` (the loss-term use); detach the inputs for reward shaping.
    Zero outside ``mask``.
    """
    check_token_inputs(mask, logps=logps, ref_logps=ref_logps)
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    # Padding may hold anything (even -inf); it is zeroed before any arithmetic can overflow.
    d = (ref_logps - logps).masked_fill(~mask, 0.0)
    if estimator == "k1":
        kl = -d
    elif estimator == "k1_clamped":
        kl = (-d).clamp(min=0.0)
    elif estimator == "k2":
        kl = 0.5 * d**2
    else:
        kl = torch.expm1(d) - d
    return kl.masked_fill(~mask, 0.0)


def last_token(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last response token, ``[B]`` (rows must be non-empty)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, -1).amax(dim=1)


def shaped_rewards(
    scores: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """Token-level rewards: the sequence score on the last response token minus a KL penalty.

    Paper: Ziegler et al. 2019, arXiv 1909.08593, eq. 2; Ouyang et al. 2022 (InstructGPT),
    arXiv 2203.02155, eq. 2; Hu 2025 (REINFORCE++), arXiv 2501.03262 (token-level KL penalty):
    ``r_t = 1[t = last] · score − kl_coef · KL_t``.

    Args:
        scores: ``[B]`` one scalar per sequence (the judge's reward).
        mask: ``[B, T]`` response tokens.
        kl: ``[B, T]`` per-token KL estimate (:func:`kl_penalty` of the sampling-time log-probs);
            required when ``kl_coef > 0``.
        kl_coef: β >= 0 (AlpacaFarm's simulated-annotator setting: 0.0067).

    Returns:
        ``[B, T]`` detached rewards, 0 outside ``mask``.
    """
    _checks.same_shape(1, scores=scores)
    row_mask(mask, scores.shape[0], "scores")
    if kl is not None:
        check_token_inputs(mask, kl=kl)
    else:
        _checks.rows_not_empty(mask)
        _checks.contiguous_rows(mask)
    _checks.non_negative("kl_coef", kl_coef)
    if kl_coef > 0 and kl is None:
        raise ValueError("kl is required when kl_coef > 0 (the per-token KL penalty)")
    _checks.finite(scores=scores)
    dtype = scores.dtype if kl is None else torch.promote_types(scores.dtype, kl.dtype)
    rewards = torch.zeros(mask.shape, dtype=dtype, device=scores.device)
    if kl is not None and kl_coef > 0:
        rewards = rewards - kl_coef * kl.detach().to(dtype).masked_fill(~mask, 0.0)
    rows_index = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows_index, last_token(mask)] += scores.detach().to(dtype)
    return rewards


# ------------------------------------------------------------------------- normalisation


def whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Masked whitening ``(x − μ)/√(σ² + eps)`` over every masked entry of the batch.

    Reward and advantage whitening as in InstructGPT/AlpacaFarm/TRL PPO (TRL's
    ``masked_whiten``: Bessel-corrected variance, ``eps`` inside the root) and REINFORCE++'s
    global batch normalisation (Hu 2025, arXiv 2501.03262; OpenRLHF uses the population
    variance: ``unbiased=False``). With ``shift_mean=False`` the mean is added back (whitening
    rewards only rescales them, as TRL/AlpacaFarm do before GAE).

    Args:
        values: ``[B, T]`` (or ``[B]`` with a ``[B]`` mask).
        mask: boolean, same shape; statistics use the true entries only (at least two).

    Returns:
        Detached, same shape, 0 outside ``mask``.
    """
    _checks.tensor("values", values)
    _checks.mask_shape(mask, tuple(values.shape))
    _checks.positive("eps", eps)
    _checks.finite_where(mask, values=values)
    count = mask.sum()
    if _checks.value_checks_enabled(mask) and int(count) < 2:
        raise ValueError(f"whitening needs at least 2 masked entries, got {int(count)}")
    x = values.detach().masked_fill(~mask, 0.0)
    n = count.to(x.dtype)
    mean = x.sum() / n
    var = ((x - mean).masked_fill(~mask, 0.0) ** 2).sum() / n
    if unbiased:
        var = var * n / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out.masked_fill(~mask, 0.0)


# ------------------------------------------------------------------------- GAE, returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over each row's response tokens.

    Paper: Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
    Advantage Estimation", arXiv 1506.02438, eq. 16:
    ``δ_t = r_t + γ V_{t+1} − V_t``, ``Â_t = Σ_l (γλ)^l δ_{t+l}``, computed backwards as
    ``Â_t = δ_t + γλ Â_{t+1}``; the step after the last response token is terminal
    (``V = 0``, ``Â = 0``). Returns (the value targets) are ``Â_t + V_t``.

    Args:
        rewards: ``[B, T]`` token rewards (:func:`shaped_rewards`).
        values: ``[B, T]`` V(s_t) of the sampling-time critic at each response token.
        mask: ``[B, T]`` response tokens.
        gamma: discount γ ∈ [0, 1]; lam: λ ∈ [0, 1].

    Returns:
        ``(advantages, returns)``, both ``[B, T]``, detached, 0 outside ``mask``.
    """
    check_token_inputs(mask, rewards=rewards, values=values)
    _checks.in_range("gamma", gamma, 0.0, 1.0)
    _checks.in_range("lam", lam, 0.0, 1.0)
    r = rewards.detach().masked_fill(~mask, 0.0)
    v = values.detach().masked_fill(~mask, 0.0)
    advantages = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    next_value = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        inside = mask[:, t]
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = torch.where(inside, delta + gamma * lam * running, 0.0)
        next_value = torch.where(inside, v[:, t], 0.0)
        advantages[:, t] = running
    returns = (advantages + v).masked_fill(~mask, 0.0)
    return advantages, returns


def discounted_returns(
    rewards: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0
) -> torch.Tensor:
    """Reward-to-go ``G_t = Σ_{s ≥ t} γ^{s−t} r_s`` over each row's response tokens.

    Paper: Williams 1992 (REINFORCE); Hu 2025 (REINFORCE++), arXiv 2501.03262 (with
    γ = 1 the advantage is ``score − β Σ_{i ≥ t} KL_i``). Equals :func:`gae` with ``V = 0`` and
    ``λ = 1``. Returns ``[B, T]``, detached, 0 outside ``mask``.
    """
    advantages, _ = gae(rewards, torch.zeros_like(rewards), mask, gamma=gamma, lam=1.0)
    return advantages


# ---------------------------------------------------------------------- group baselines


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO's baseline: each sample's reward is compared with the mean of its K − 1 siblings.

    Paper: Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs", arXiv 2402.14740, the RLOO estimator (Kool et al.
    2019):
    ``b_i = (1/(K−1)) Σ_{j≠i} R_j = (Σ_j R_j − R_i)/(K − 1)``.

    Args:
        rewards: ``[N, K]``, K >= 2 samples per prompt.

    Returns:
        ``[N, K]`` detached baselines; the advantage is ``rewards − baseline``.
    """
    k = samples_per_prompt(rewards, "RLOO")
    r = rewards.detach()
    return (r.sum(dim=1, keepdim=True) - r) / (k - 1)


def group_relative(
    rewards: torch.Tensor,
    *,
    scale: GroupScale = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """GRPO's group-relative advantages (outcome supervision), with or without std scaling.

    Paper: Shao et al. 2024 (DeepSeekMath, GRPO), arXiv 2402.03300, §4.1.2:
    ``Â_i = (R_i − mean(R))/std(R)`` over the K samples of a prompt. Liu et al. 2025
    (Dr. GRPO), arXiv 2503.20783, drop the std: ``Â_i = R_i − mean(R)``.

    ``scale``: ``"group"`` divides by the group's std, ``"batch"`` by the std of all N·K
    rewards (the mean stays per group), ``"none"`` does not divide (Dr. GRPO). As TRL 1.16's
    ``GRPOTrainer``: Bessel-corrected std and ``Â = (R − mean)/(std + eps)`` with eps 1e-4.

    Args:
        rewards: ``[N, K]``, K >= 2.

    Returns:
        ``[N, K]`` detached advantages (exactly 0 for a group whose rewards are all equal).
    """
    samples_per_prompt(rewards, "GRPO")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    _checks.non_negative("eps", eps)
    r = rewards.detach()
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "none":
        return centred
    std = r.std(dim=1, keepdim=True) if scale == "group" else r.std().expand(r.shape[0], 1)
    scaled = centred / (std + eps)
    return torch.where(std > 0, scaled, torch.zeros_like(scaled))


# ------------------------------------------------------------------------- pairwise


def pairwise_reward(
    p_beats_anchor: torch.Tensor,
    *,
    transform: PairwiseTransform = "prob",
    eps: float = 1e-6,
) -> torch.Tensor:
    """A scalar reward from a pairwise judgement against an anchor response (pairwise PPO).

    Paper: Xu et al. 2025 (Pairwise-RL), arXiv 2504.04950: PPO on the pairwise reward
    ``P(y ≻ anchor | x)`` from a preference model, the anchor being the reference policy's
    sample or a given answer (algorithms.md §19; the paper's exact transform is unverified).

    ``transform``: ``"prob"`` → ``P`` (the paper's reward), ``"centered"`` → ``P − ½`` (0 when
    tied with the anchor), ``"logit"`` → ``log(P/(1−P))`` (for a Bradley-Terry judge this is
    exactly ``r(y) − r(anchor)``; P is clamped to ``[eps, 1 − eps]``). All three are monotone
    in P, so they rank samples identically; they differ in scale, which PPO is not invariant to.

    Args:
        p_beats_anchor: ``[B]`` probabilities in ``[0, 1]``.

    Returns:
        ``[B]`` detached rewards.
    """
    _checks.same_shape(1, p_beats_anchor=p_beats_anchor)
    _checks.finite(p_beats_anchor=p_beats_anchor)
    _checks.values_in("p_beats_anchor", p_beats_anchor, 0.0, 1.0)
    _checks.positive("eps", eps)
    p = p_beats_anchor.detach()
    if transform == "prob":
        return p.clone()
    if transform == "centered":
        return p - 0.5
    if transform == "logit":
        return torch.logit(p, eps=eps)
    raise ValueError(f"transform must be 'prob', 'centered' or 'logit', got {transform!r}")
