"""From a scored rollout batch to advantages, per method (the ``advantage_fn`` of a ``token`` spec).

The online engine collects one :class:`Rollout` per rollout batch (sample → score, all detached)
and calls ``spec.advantage_fn(rollout, **params)`` once; the returned :class:`Advantages` are then
sliced into minibatches / micro-batches for the ``spec.fn`` updates (several epochs for PPO).

Row layout: ``B = N·K`` rows, prompt-major (row ``n·K + k`` is sample k of prompt n), ``K`` =
``group_size`` samples per prompt (``online.samples_per_prompt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from prefkit.losses import _checks
from prefkit.losses.advantages import (
    KLEstimator,
    PairwiseTransform,
    discounted_returns,
    gae,
    group_relative,
    kl_penalty,
    leave_one_out_baseline,
    pairwise_reward,
    shaped_rewards,
    whiten,
)


@dataclass(frozen=True)
class Rollout:
    """One rollout batch: what the engine measured at sampling time (all detached).

    - ``rewards``: ``[B]`` one scalar per sequence from the judge (for pairwise PPO:
      ``P(y ≻ anchor)``).
    - ``mask``: ``[B, T]`` bool, true at response tokens (``EncodedBatch.response_mask``).
    - ``old_logps``: ``[B, T]`` per-token log-probs of the policy that sampled (no grad).
    - ``ref_logps``: ``[B, T]`` per-token log-probs of the reference (``None`` if no KL).
    - ``values``: ``[B, T]`` the critic's values at sampling time (PPO only).
    - ``group_size``: K samples per prompt; ``B`` must be a multiple of it.
    """

    rewards: torch.Tensor
    mask: torch.Tensor
    old_logps: torch.Tensor
    ref_logps: torch.Tensor | None = None
    values: torch.Tensor | None = None
    group_size: int = 1

    def __post_init__(self) -> None:
        _checks.same_shape(1, rewards=self.rewards)
        shape = _checks.same_shape(
            2, dims="[B, T]", old_logps=self.old_logps, ref_logps=self.ref_logps,
            values=self.values,
        )  # fmt: skip
        _checks.mask_shape(self.mask, shape)
        if shape[0] != self.rewards.shape[0]:
            raise ValueError(
                f"rewards has {self.rewards.shape[0]} rows but the per-token tensors {shape[0]}"
            )
        k = self.group_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"group_size must be a positive integer, got {k!r}")
        if shape[0] % k:
            raise ValueError(
                f"{shape[0]} rows are not a whole number of groups of online.samples_per_prompt={k}"
            )

    @property
    def prompts(self) -> int:
        return self.rewards.shape[0] // self.group_size

    def grouped(self, values: torch.Tensor) -> torch.Tensor:
        """``[B]`` → ``[N, K]``."""
        return values.reshape(self.prompts, self.group_size)


@dataclass(frozen=True)
class Advantages:
    """What ``advantage_fn`` returns: ``advantages`` (``[B]`` or ``[B, T]``) for ``spec.fn``,
    ``returns`` (``[B, T]``) for the value loss (PPO), and the rewards the advantages were built
    from (``[B]`` sequence rewards after any KL shaping, or ``[B, T]`` token rewards), for logs."""

    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    rewards: torch.Tensor | None = None


def _needs(rollout: Rollout, field: str, why: str) -> torch.Tensor:
    value = getattr(rollout, field)
    if value is None:
        raise ValueError(f"rollout.{field} is required {why}")
    return value


def _token_kl(rollout: Rollout, kl_coef: float, estimator: KLEstimator) -> torch.Tensor | None:
    _checks.non_negative("kl_coef", kl_coef)
    if kl_coef == 0:
        return None
    ref = _needs(rollout, "ref_logps", "when kl_coef > 0 (the KL penalty in the reward)")
    return kl_penalty(rollout.old_logps.detach(), ref.detach(), rollout.mask, estimator=estimator)


# ------------------------------------------------------------------------------- PPO


def ppo_advantages(
    rollout: Rollout,
    *,
    kl_coef: float = 0.05,
    kl_estimator: KLEstimator = "k1",
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_rewards: bool = False,
    whiten_advantages: bool = True,
) -> Advantages:
    """PPO's advantages: GAE on token rewards with a per-token KL penalty to the reference.

    Paper: Ouyang et al. 2022 (InstructGPT), arXiv 2203.02155, eq. 2 (the KL-shaped reward);
    Schulman et al. 2016 (GAE), arXiv 1506.02438, eq. 16. Steps:
    ``r_t = 1[t = last] · reward − kl_coef · KL_t`` (:func:`prefkit.losses.shaped_rewards`,
    ``KL_t`` by ``kl_estimator`` on the sampling-time log-probs), optional reward whitening
    (scale only), ``(Â, R) = GAE(r, V; γ, λ)``, optional advantage whitening over the batch.

    Defaults are TRL's PPO defaults (kl_coef 0.05, γ = 1, λ = 0.95, whitened advantages).
    AlpacaFarm's settings are :data:`PPO_PRESETS` ``"alpacafarm_sim"``/``"alpacafarm_human"``.

    Needs ``rollout.values`` (and ``rollout.ref_logps`` when ``kl_coef > 0``).
    Returns ``Advantages(advantages [B, T], returns [B, T], rewards = token rewards [B, T])``.
    """
    values = _needs(rollout, "values", "for PPO (the critic's values at sampling time)")
    kl = _token_kl(rollout, kl_coef, kl_estimator)
    rewards = shaped_rewards(rollout.rewards, rollout.mask, kl=kl, kl_coef=kl_coef)
    if whiten_rewards:
        rewards = whiten(rewards, rollout.mask, shift_mean=False)
    advantages, returns = gae(rewards, values, rollout.mask, gamma=gamma, lam=lam)
    if whiten_advantages:
        advantages = whiten(advantages, rollout.mask)
    return Advantages(advantages, returns, rewards)


def pairwise_ppo_advantages(
    rollout: Rollout,
    *,
    reward_transform: PairwiseTransform = "prob",
    kl_coef: float = 0.05,
    kl_estimator: KLEstimator = "k1",
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_rewards: bool = False,
    whiten_advantages: bool = True,
) -> Advantages:
    """Pairwise PPO: PPO's advantages on the reward ``P(y ≻ anchor | x)``.

    Paper: Xu et al. 2025 (Pairwise-RL), arXiv 2504.04950. ``rollout.rewards`` holds the
    preference model's ``P(y ≻ anchor)`` (the anchor: the reference policy's sample or a given
    answer); :func:`prefkit.losses.pairwise_reward` turns it into a reward (``transform``), then
    :func:`ppo_advantages` (same settings) runs unchanged.
    """
    reward = pairwise_reward(rollout.rewards, transform=reward_transform)
    scored = Rollout(reward, rollout.mask, rollout.old_logps, rollout.ref_logps, rollout.values,
                     rollout.group_size)  # fmt: skip
    return ppo_advantages(
        scored, kl_coef=kl_coef, kl_estimator=kl_estimator, gamma=gamma, lam=lam,
        whiten_rewards=whiten_rewards, whiten_advantages=whiten_advantages,
    )  # fmt: skip


# ------------------------------------------------------------------------------ RLOO


def sequence_kl(rollout: Rollout) -> torch.Tensor:
    """``Σ_t (old_logps − ref_logps)`` over each response, ``[B]`` (the k1 sequence KL)."""
    ref = _needs(rollout, "ref_logps", "for the KL penalty")
    return kl_penalty(rollout.old_logps.detach(), ref.detach(), rollout.mask).sum(dim=-1)


def rloo_advantages(
    rollout: Rollout,
    *,
    kl_coef: float = 0.05,
    normalize: bool = False,
) -> Advantages:
    """RLOO's advantages: KL-penalised sequence reward minus the leave-one-out baseline.

    Paper: Ahmadian et al. 2024 ("Back to Basics"), arXiv 2402.14740 (the RLOO estimator), as
    TRL 1.16's ``RLOOTrainer``: ``R_i = reward_i − kl_coef · Σ_t (old − ref)_it`` (the k1
    sequence KL of the sampling policy), ``A_i = R_i − (Σ_{j≠i} R_j)/(K − 1)`` within each
    prompt's group (:func:`prefkit.losses.leave_one_out_baseline`); with ``normalize``,
    ``A ← (A − mean)/(std + 1e-4)`` over the batch (Bessel-corrected std). Defaults are TRL's
    (``beta`` 0.05 is ``kl_coef`` here).

    Needs K = ``rollout.group_size`` >= 2. Returns ``Advantages(advantages [B], rewards = R [B])``.
    """
    _checks.non_negative("kl_coef", kl_coef)
    rewards = rollout.rewards.detach()
    if kl_coef > 0:
        rewards = rewards - kl_coef * sequence_kl(rollout)
    grouped = rollout.grouped(rewards)
    advantages = (grouped - leave_one_out_baseline(grouped)).flatten()
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return Advantages(advantages, None, rewards)


# ------------------------------------------------------------------------------ GRPO


def grpo_advantages(
    rollout: Rollout, *, scale: Literal["group", "batch", "none"] = "group"
) -> Advantages:
    """GRPO's group-normalised advantages, one per sequence.

    Paper: Shao et al. 2024 (GRPO), arXiv 2402.03300, §4.1.2 (outcome supervision):
    ``Â_i = (R_i − mean_group)/(std_group + 1e-4)`` as TRL 1.16 (``scale_rewards``: ``"group"``,
    ``"batch"`` or ``"none"``; see :func:`prefkit.losses.group_relative`). No KL here: GRPO's KL
    is a loss term (``beta`` of :func:`prefkit.losses.grpo`).

    Needs K = ``rollout.group_size`` >= 2. Returns ``Advantages(advantages [B])``.
    """
    rewards = rollout.rewards.detach()
    advantages = group_relative(rollout.grouped(rewards), scale=scale).flatten()
    return Advantages(advantages, None, rewards)


def dr_grpo_advantages(
    rollout: Rollout, *, scale: Literal["group", "batch", "none"] = "none"
) -> Advantages:
    """Dr. GRPO's advantages: the group mean subtracted, no std scaling.

    Paper: Liu et al. 2025 (Dr. GRPO), arXiv 2503.20783: ``Â_i = R_i − mean_group``
    (:func:`grpo_advantages` with ``scale="none"``, TRL's ``scale_rewards="none"``).
    """
    return grpo_advantages(rollout, scale=scale)


# ------------------------------------------------------------------------ REINFORCE++


def reinforce_pp_advantages(
    rollout: Rollout,
    *,
    kl_coef: float = 0.01,
    kl_estimator: KLEstimator = "k1",
    gamma: float = 1.0,
    baseline: Literal["none", "group_mean"] = "none",
) -> Advantages:
    """REINFORCE++'s advantages: token-level KL in the reward, reward-to-go, global whitening.

    Paper: Hu 2025 (REINFORCE++), arXiv 2501.03262 (token-level KL penalty, advantage,
    global advantage normalisation): ``r_t = 1[t = last] · reward − β KL_t`` with
    ``KL_t = log π_old/π_ref`` (k1), ``A_t = Σ_{s ≥ t} γ^{s−t} r_s`` (with γ = 1:
    ``reward − β Σ_{s ≥ t} KL_s``), then ``(A − mean)/std`` over every response token of the
    batch (population std, as OpenRLHF). ``baseline="group_mean"`` is REINFORCE++-baseline:
    each reward minus its prompt group's mean first (needs K >= 2). Default β 0.01 is
    OpenRLHF's ``init_kl_coef``.

    Returns ``Advantages(advantages [B, T], rewards = token rewards [B, T])``.
    """
    scores = rollout.rewards.detach()
    if baseline == "group_mean":
        scores = group_relative(rollout.grouped(scores), scale="none").flatten()
    elif baseline != "none":
        raise ValueError(f"baseline must be 'none' or 'group_mean', got {baseline!r}")
    kl = _token_kl(rollout, kl_coef, kl_estimator)
    rewards = shaped_rewards(scores, rollout.mask, kl=kl, kl_coef=kl_coef)
    returns = discounted_returns(rewards, rollout.mask, gamma=gamma)
    return Advantages(whiten(returns, rollout.mask, unbiased=False), None, rewards)


# ------------------------------------------------------------------------------ presets


PPO_PRESETS: dict[str, dict[str, Any]] = {
    "alpacafarm_sim": {
        "kl_coef": 0.0067,
        "kl_estimator": "k1_clamped",
        "gamma": 1.0,
        "lam": 1.0,
        "whiten_rewards": True,
        "whiten_advantages": True,
        "cliprange": 0.2,
        "cliprange_value": 0.2,
        "vf_coef": 0.1,
    },
    "alpacafarm_human": {
        "kl_coef": 0.02,
        "kl_estimator": "k1_clamped",
        "gamma": 1.0,
        "lam": 1.0,
        "whiten_rewards": True,
        "whiten_advantages": True,
        "cliprange": 0.2,
        "cliprange_value": 0.2,
        "vf_coef": 0.1,
    },
}
"""``loss.params`` for ``ppo`` reproducing AlpacaFarm's PPO (Dubois et al. 2023, arXiv
2305.14387; repo ``tatsu-lab/alpaca_farm``: ``rl/trainer_ppo.py`` and
``examples/scripts/rlhf_ppo.sh``): KL coefficient 0.0067 for the simulated annotators (the paper),
0.02 for human preferences (the repo's script), the clamped k1 KL, γ = λ = 1, whitened rewards and
advantages, clip ranges 0.2, value weight 0.1. Their rollout settings, which belong to the online
loop and not to the loss: 4 PPO epochs per rollout batch of 512 (steps of 256), temperature 1.0,
value model initialised from the reward model."""
