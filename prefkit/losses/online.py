"""Online objectives as pure functions: their inputs come from the sample -> judge -> update step.

Conventions: sequence log-probs are sums over response tokens, shape ``[B]``. Arguments named
``*_target``, ``preference*``, ``rewards`` or ``advantages`` are **detached targets** (treated
as constants; the functions detach them again to be safe). Gradients flow only through the
current policy's log-probs (``logps``, ``chosen_logps``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefkit.losses import _checks


def online_ipo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    preference_gap: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """Online IPO regression (the OMD / EGPO loss), per example.

    Paper: Zhou, Fazel & Du 2025, "Extragradient Preference Optimization (EGPO)",
    arXiv 2503.08942, the online-IPO loss (algorithms.md §3.3-3.4; the official
    ``zhourunlong/EGPO`` code, ``online_ipo_1_sample``); Calandriello et al. 2024 for online IPO.

    ``loss = ((h_c - h_r) - preference_gap / beta)^2`` with ``h = logps - ref_logps``.

    Args:
        chosen_logps, rejected_logps: ``[B]`` log π_θ(y|x), log π_θ(y'|x) (carry gradients).
            "chosen"/"rejected" are only slot names here: y and y' are two samples, not a
            judged pair.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` reference log-probs (constants).
        preference_gap: ``[B]`` detached target ``P(y ≻ y'') − P(y' ≻ y'')`` with ``y'' ~ q``
            (q = π_t for OMD / online IPO, q = π_{t+1/2} for EGPO's second step). Values lie
            in ``[-1, 1]``.
        beta: KL strength β > 0.

    Returns:
        ``[B]`` unreduced loss. Averaged over all N² pairs of a tabular softmax policy with
        exact targets ``P q``, one SGD step of learning rate ``lr`` equals the mirror-descent
        step ``log π' = (1 − ηβ) log π + ηβ log π_ref + η P q`` with ``η = 4·lr/(N·β)``.
    """
    _checks.same_shape(
        1,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        preference_gap=preference_gap,
    )
    _checks.positive("beta", beta)
    _checks.finite(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        preference_gap=preference_gap,
    )
    _checks.values_in("preference_gap", preference_gap, -1.0, 1.0)
    log_ratio_gap = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return (log_ratio_gap - preference_gap.detach() / beta) ** 2


def nash_md_pg(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """Nash-MD-PG surrogate: policy gradient on the preference against the mixture opponent.

    Paper: Munos et al. 2023/2024, "Nash Learning from Human Feedback", arXiv 2312.00886,
    App. F eq. 13 (algorithms.md §2.3); TRL's ``NashMDTrainer`` loss.

    Per sample ``y ~ π_θ`` with opponent ``y' ~ π'`` (geometric mixture of π_θ and π_ref):
    ``loss = −(P(y ≻ y') − ½ − β·sg(log π_θ(y) − log π_ref(y))) · log π_θ(y)``,
    whose gradient is ``−∇ log π_θ(y) · (P − ½ − β log(π_θ/π_ref)(y))``; ½ = P(y ≻ y) is the
    control variate. ``β`` is the paper's τ (TRL's ``beta``).

    Deviation: sequence-level credit (every token gets the whole-sequence KL estimate), not the
    paper's per-token "KL from position n onward" credit; both are unbiased, the paper's has
    lower variance. The loss value is a surrogate (only its gradient is meaningful).

    Args:
        logps: ``[B]`` log π_θ(y|x) of the sampled response (carries gradients).
        ref_logps: ``[B]`` log π_ref(y|x) (constant).
        preference: ``[B]`` detached P(y ≻ y'|x) ∈ [0, 1] from the judge/preference model.
        beta: KL strength β > 0.
    """
    _checks.same_shape(1, logps=logps, ref_logps=ref_logps, preference=preference)
    _checks.positive("beta", beta)
    _checks.finite(logps=logps, ref_logps=ref_logps, preference=preference)
    _checks.values_in("preference", preference, 0.0, 1.0)
    advantage = preference.detach() - 0.5 - beta * (logps.detach() - ref_logps.detach())
    return -advantage * logps


def p3o(
    logps_1: torch.Tensor,
    logps_2: torch.Tensor,
    old_logps_1: torch.Tensor,
    old_logps_2: torch.Tensor,
    ref_logps_1: torch.Tensor | None,
    ref_logps_2: torch.Tensor | None,
    rewards_1: torch.Tensor,
    rewards_2: torch.Tensor,
    *,
    beta: float = 0.1,
    clip_eps: float = 0.2,
    variant: str = "joint",
) -> torch.Tensor:
    """P3O clipped pairwise policy-gradient surrogate (V1 separate or V2 joint clipping).

    Paper: Wu et al. 2023, "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback
    for LLM Alignment", arXiv 2310.00212, §4.2 (algorithms.md §1; the clipped forms are a
    reconstruction whose gradient at θ = θ_old equals the pairwise policy gradient, Thm 1).

    KL-shaped rewards ``R_i = r_i − β (old_logps_i − ref_logps_i)`` (a per-sample KL estimate
    under the sampling policy, detached), ``Δ = R_1 − R_2``, ``ρ_i = exp(logps_i − old_logps_i)``:

    - ``variant="separate"`` (V1): ``loss = −[min(ρ_1 Δ/2, clip(ρ_1) Δ/2)
      + min(−ρ_2 Δ/2, −clip(ρ_2) Δ/2)]``;
    - ``variant="joint"`` (V2): ``ρ = ρ_1/ρ_2``, ``loss = −min(ρ Δ/2, clip(ρ) Δ/2)``,

    with ``clip(ρ) = clamp(ρ, 1 − ε, 1 + ε)``. Only ``Δ`` enters, so a per-prompt reward
    shift ``r + δ(x)`` leaves the loss and update unchanged (PPO's is not).

    Args:
        logps_1, logps_2: ``[B]`` current log π_θ of the two responses (with gradients).
        old_logps_1, old_logps_2: ``[B]`` log π_old (the sampling policy), constants.
        ref_logps_1, ref_logps_2: ``[B]`` log π_ref for the KL shaping; may be ``None`` only
            when ``beta == 0``.
        rewards_1, rewards_2: ``[B]`` reward-model scores, detached.
        beta: KL shaping strength β >= 0. clip_eps: ε > 0.
    """
    _checks.same_shape(
        1,
        logps_1=logps_1,
        logps_2=logps_2,
        old_logps_1=old_logps_1,
        old_logps_2=old_logps_2,
        ref_logps_1=ref_logps_1,
        ref_logps_2=ref_logps_2,
        rewards_1=rewards_1,
        rewards_2=rewards_2,
    )
    _checks.non_negative("beta", beta)
    _checks.positive("clip_eps", clip_eps)
    if variant not in ("separate", "joint"):
        raise ValueError(f"variant must be 'separate' (V1) or 'joint' (V2), got {variant!r}")
    if beta > 0 and (ref_logps_1 is None or ref_logps_2 is None):
        raise ValueError("ref_logps_1 and ref_logps_2 are required when beta > 0 (KL shaping)")
    _checks.finite(
        logps_1=logps_1,
        logps_2=logps_2,
        old_logps_1=old_logps_1,
        old_logps_2=old_logps_2,
        ref_logps_1=ref_logps_1,
        ref_logps_2=ref_logps_2,
        rewards_1=rewards_1,
        rewards_2=rewards_2,
    )
    shaped_1, shaped_2 = rewards_1.detach(), rewards_2.detach()
    if beta > 0:
        assert ref_logps_1 is not None and ref_logps_2 is not None
        shaped_1 = shaped_1 - beta * (old_logps_1 - ref_logps_1).detach()
        shaped_2 = shaped_2 - beta * (old_logps_2 - ref_logps_2).detach()
    half_gap = (shaped_1 - shaped_2) / 2
    old_1, old_2 = old_logps_1.detach(), old_logps_2.detach()
    low, high = 1 - clip_eps, 1 + clip_eps
    if variant == "joint":
        ratio = torch.exp((logps_1 - old_1) - (logps_2 - old_2))
        return -torch.minimum(ratio * half_gap, ratio.clamp(low, high) * half_gap)
    ratio_1, ratio_2 = torch.exp(logps_1 - old_1), torch.exp(logps_2 - old_2)
    term_1 = torch.minimum(ratio_1 * half_gap, ratio_1.clamp(low, high) * half_gap)
    term_2 = torch.minimum(-ratio_2 * half_gap, -ratio_2.clamp(low, high) * half_gap)
    return -(term_1 + term_2)


def dno(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_win_rate: torch.Tensor,
    rejected_win_rate: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """DNO regression: binary cross-entropy of the internal reward gap onto σ(r_t gap).

    Paper: Rosset et al. 2024, "Direct Nash Optimization", arXiv 2404.03715, Algorithm 1,
    line 4 (algorithms.md §4.1).

    With ``z = (log π_θ − log π_t)(y_1) − (log π_θ − log π_t)(y_2)`` (π_t = the previous iterate,
    passed as the reference) and soft target ``p = σ(r_t(y_1) − r_t(y_2))``,
    ``r_t(y) = E_{y'~π_t} P(y ≻ y')``:
    ``loss = −p log σ(β z) − (1 − p) log σ(−β z)`` (β is the paper's η).
    DNO-Prct (Algorithm 2) is :func:`prefkit.losses.dpo` with the previous iterate as reference.

    Args:
        chosen_logps, rejected_logps: ``[B]`` log π_θ of the two samples y_1, y_2 ("chosen" and
            "rejected" are slot names only).
        ref_chosen_logps, ref_rejected_logps: ``[B]`` log π_t of the same samples.
        chosen_win_rate, rejected_win_rate: ``[B]`` detached r_t(y_1), r_t(y_2) ∈ [0, 1].
    """
    _checks.same_shape(
        1,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_win_rate=chosen_win_rate,
        rejected_win_rate=rejected_win_rate,
    )
    _checks.positive("beta", beta)
    _checks.finite(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_win_rate=chosen_win_rate,
        rejected_win_rate=rejected_win_rate,
    )
    _checks.values_in("chosen_win_rate", chosen_win_rate, 0.0, 1.0)
    _checks.values_in("rejected_win_rate", rejected_win_rate, 0.0, 1.0)
    target = torch.sigmoid(chosen_win_rate.detach() - rejected_win_rate.detach())
    logits = beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps))
    return -target * F.logsigmoid(logits) - (1 - target) * F.logsigmoid(-logits)


def _square_regression(
    logps: torch.Tensor, ref_logps: torch.Tensor, target: torch.Tensor, name: str, beta: float
) -> torch.Tensor:
    _checks.same_shape(1, logps=logps, ref_logps=ref_logps, **{name: target})
    _checks.positive("beta", beta)
    _checks.finite(logps=logps, ref_logps=ref_logps, **{name: target})
    return ((logps - ref_logps) - target.detach() / beta) ** 2


def sppo(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    win_rate: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """SPPO square loss on the estimated win-rate against the previous iterate.

    Paper: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment",
    arXiv 2405.00675, eq. 4.7 / Algorithm 1 (algorithms.md §5.3).

    ``loss = (log π_θ(y) − log π_t(y) − (P̂(y ≻ π_t) − ½) / β)²`` (η = 1/β), with π_t the previous
    iterate passed as the reference and ``P̂(y ≻ π_t) = mean_j P(y ≻ y_j)`` over K samples
    ``y_j ~ π_t``. With ``win_rate`` 1 for the chosen and 0 for the rejected response the two
    terms sum to :func:`prefkit.losses.sppo_hard`.

    Args:
        logps: ``[B]`` log π_θ(y|x) (with gradients); ref_logps: ``[B]`` log π_t(y|x).
        win_rate: ``[B]`` detached P̂(y ≻ π_t) ∈ [0, 1].
    """
    _checks.values_in("win_rate", win_rate, 0.0, 1.0)
    return _square_regression(logps, ref_logps, win_rate - 0.5, "win_rate", beta)


def gpo(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    score: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """GPO: SPPO-style square loss on a skew-symmetric GPM preference score.

    Paper: Zhang et al. 2024, arXiv 2410.02197, General Preference Optimization (algorithms.md
    §5.3; the repo's SPPO trainer with ``loss_type=sppo_score``).

    ``loss = (log π_θ(y) − log π_t(y) − ŝ(y ≻ π_t) / β)²`` with
    ``ŝ(y ≻ π_t) = mean_j s(y ≻ y_j)`` from :func:`prefkit.losses.gpm_score`; no ``−½``
    because s is skew-symmetric (s(y ≻ y) = 0). The exact constant/normalisation in the paper
    is unverified [U]; this is the form stated in algorithms.md.

    Args:
        logps: ``[B]`` log π_θ(y|x); ref_logps: ``[B]`` log π_t(y|x).
        score: ``[B]`` detached mean skew-symmetric score ŝ.
    """
    return _square_regression(logps, ref_logps, score, "score", beta)


def grao(
    logps: torch.Tensor,
    lengths: torch.Tensor,
    answer_logps: torch.Tensor,
    answer_lengths: torch.Tensor,
    advantages: torch.Tensor,
    answer_advantages: torch.Tensor,
    *,
    beta: float = 0.5,
    lam: float = 0.6,
) -> torch.Tensor:
    """GRAO: group direct alignment with exploration, imitation and alignment regularisation.

    Paper: Wang et al. 2025, "Learning to Align, Aligning to Learn: A Unified Approach for
    Self-Optimized Alignment" (GRAO), arXiv 2508.07750, the J_GRAO objective (algorithms.md §9).

    Per sampled output ``o_i`` (one row) with its prompt's reference answer ``y``:
    ``J_exp = logps/lengths``, ``J_imit = answer_logps/answer_lengths`` (per-token means) and
    ``loss = −[Â_o J_exp + β Â_y J_imit + λ Â_o (J_exp − J_imit)]``.
    Averaging the rows of one group gives the paper's ``(1/G) Σ_i``. Defaults β = 0.5,
    λ = 0.6 (paper). Advantages come from :func:`grao_advantages`.

    Args:
        logps, lengths: ``[B]`` log π_θ(o_i|q) (with gradients) and token counts of o_i.
        answer_logps, answer_lengths: ``[B]`` log π_θ(y|q) (with gradients) and token counts,
            repeated for each sample of the group.
        advantages, answer_advantages: ``[B]`` detached Â_{o_i} and Â_y.
        beta: imitation weight β >= 0; lam: alignment-regulariser weight λ >= 0.
    """
    shape = _checks.same_shape(
        1,
        logps=logps,
        answer_logps=answer_logps,
        advantages=advantages,
        answer_advantages=answer_advantages,
    )
    _checks.lengths("lengths", lengths, shape)
    _checks.lengths("answer_lengths", answer_lengths, shape)
    _checks.non_negative("beta", beta)
    _checks.non_negative("lam", lam)
    _checks.finite(
        logps=logps,
        answer_logps=answer_logps,
        advantages=advantages,
        answer_advantages=answer_advantages,
    )
    explore = logps / lengths.to(logps.dtype)
    imitate = answer_logps / answer_lengths.to(answer_logps.dtype)
    adv, adv_answer = advantages.detach(), answer_advantages.detach()
    return -(adv * explore + beta * adv_answer * imitate + lam * adv * (explore - imitate))


def grao_advantages(
    sample_rewards: torch.Tensor, answer_rewards: torch.Tensor, *, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRAO group-normalised advantages ``Â = (R − μ_r)/σ_r``.

    Paper: Wang et al. 2025, arXiv 2508.07750 (algorithms.md §9). μ_r, σ_r (population std)
    are taken over the G sampled outputs of each group; the reference answer's advantage uses
    the same statistics (our reading of "Â_y computed in one group (o_i, y)").

    Args:
        sample_rewards: ``[N, G]`` rewards of G samples for N prompts.
        answer_rewards: ``[N]`` reward of each prompt's reference answer.

    Returns:
        ``(advantages [N, G], answer_advantages [N, G])`` detached; flatten both to ``[N·G]``
        rows for :func:`grao`.
    """
    shape = _checks.same_shape(2, sample_rewards=sample_rewards)
    _checks.same_shape(1, answer_rewards=answer_rewards)
    if answer_rewards.shape[0] != shape[0]:
        raise ValueError(
            f"answer_rewards must have shape ({shape[0]},), got {tuple(answer_rewards.shape)}"
        )
    _checks.finite(sample_rewards=sample_rewards, answer_rewards=answer_rewards)
    rewards = sample_rewards.detach()
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, unbiased=False, keepdim=True)
    advantages = (rewards - mean) / (std + eps)
    answer = (answer_rewards.detach()[:, None] - mean) / (std + eps)
    return advantages, answer.expand_as(advantages)


def superhf(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    lengths: torch.Tensor,
    *,
    beta: float = 0.35,
    token_kl: torch.Tensor | None = None,
) -> torch.Tensor:
    """SuperHF: supervised NLL on reward-filtered samples plus a KL prior to the base model.

    Paper: Mukobi et al. 2023, "SuperHF: Supervised Iterative Learning from Human Feedback",
    arXiv 2310.16763, the SuperHF loss (algorithms.md §10; official ``superhf/training.py``).

    ``loss = −logps/|y| + β · max(KL, 0)`` per kept completion, with the per-token NLL and
    ``KL`` the mean per-token KL(π_θ ‖ π_0). Default β = 0.35 (the repo's ``default.yaml``).

    Deviation: the official code computes the full-vocabulary KL per token. Pass it as
    ``token_kl`` (``[B]``, with gradients) to match; without it the single-sample estimate
    ``(logps − ref_logps)/|y|`` is used (biased here because kept samples are reward-filtered).

    Args:
        logps: ``[B]`` log π_θ of the kept completions (with gradients).
        ref_logps: ``[B]`` log π_0 (the base/reference model), constants.
        lengths: ``[B]`` completion token counts.
        token_kl: optional ``[B]`` mean per-token KL(π_θ ‖ π_0) computed by the caller.
    """
    shape = _checks.same_shape(1, logps=logps, ref_logps=ref_logps, token_kl=token_kl)
    _checks.lengths("lengths", lengths, shape)
    _checks.non_negative("beta", beta)
    _checks.finite(logps=logps, ref_logps=ref_logps, token_kl=token_kl)
    n_tokens = lengths.to(logps.dtype)
    kl = (logps - ref_logps.detach()) / n_tokens if token_kl is None else token_kl
    return -logps / n_tokens + beta * kl.clamp(min=0.0)
