"""Pure preference losses: tensors in, unreduced per-example tensor out; one registry.

``LOSSES`` maps each name to a :class:`LossSpec` (the function and what it needs). Pairwise
losses take ``chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps`` positionally
(sequence log-prob sums ``[B]``) and ``beta`` by keyword; listwise losses take ``[B, K]``
tensors and ``mask``; ``token`` losses (the reinforcement-learning baselines PPO, RLOO, GRPO,
...) take per-token ``[B, T]`` tensors, with advantages from a ``Rollout`` (``prefkit.losses.rl``).
Unpaired losses (the KTO family) take ``logps, ref_logps, labels`` ``[B]``. See
``docs/methods.md`` for the paper, equation and config of each.

Input checks: shapes and hyper-parameters are always checked; value checks (non-finite
entries, empty rows, target sums) follow :func:`set_validation` (default ``"auto"``: on for CPU
tensors, off on accelerators to avoid device syncs).
"""

from __future__ import annotations

from prefkit.losses._checks import get_validation, set_validation, validation
from prefkit.losses._spec import INPUTS, LossSpec
from prefkit.losses.advantages import (
    discounted_returns,
    gae,
    group_relative,
    kl_penalty,
    leave_one_out_baseline,
    pairwise_reward,
    shaped_rewards,
    whiten,
)
from prefkit.losses.combine import combine, combined_spec
from prefkit.losses.kl_control import AdaptiveKLController, FixedKLController
from prefkit.losses.listwise import (
    adpo,
    adpo_pairwise_target,
    adpo_targets_from_rewards,
    dpo_pl,
    irpo,
    lipo_lambda,
)
from prefkit.losses.online import (
    dno,
    gpo,
    grao,
    grao_advantages,
    nash_md_pg,
    online_ipo,
    p3o,
    sppo,
    superhf,
)
from prefkit.losses.ordinal import ordinal, ordinal_probabilities
from prefkit.losses.pairwise import (
    aot,
    aot_unpaired,
    apo_down,
    apo_zero,
    bco_pair,
    discopop,
    dpo,
    dpo_norm,
    exo_pair,
    hinge,
    ipo,
    ipo_norm,
    nca_pair,
    orpo,
    robust,
    simpo,
    sppo_hard,
)
from prefkit.losses.registry import LOSSES
from prefkit.losses.reward import bradley_terry, gpm, gpm_score, preference_strength
from prefkit.losses.rl import (
    StepSize,
    bnpo,
    clipped_surrogate,
    dapo,
    dr_grpo,
    grpo,
    ppo,
    ppo_value,
    reduce_to_step,
    reinforce_pp,
    rloo,
)
from prefkit.losses.rollout import (
    PPO_PRESETS,
    Advantages,
    Rollout,
    dr_grpo_advantages,
    grpo_advantages,
    pairwise_ppo_advantages,
    ppo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    sequence_kl,
)
from prefkit.losses.unpaired import apo_zero_unpaired, bco_unpaired, kto, kto_kl
from prefkit.losses.variants import alphapo, cpo, f_divergence_scores, fdpo, ld_dpo, tpo, tpo_l, wpo

__all__ = [
    "INPUTS",
    "LOSSES",
    "PPO_PRESETS",
    "AdaptiveKLController",
    "Advantages",
    "FixedKLController",
    "LossSpec",
    "Rollout",
    "StepSize",
    "adpo",
    "adpo_pairwise_target",
    "adpo_targets_from_rewards",
    "alphapo",
    "aot",
    "aot_unpaired",
    "apo_down",
    "apo_zero",
    "apo_zero_unpaired",
    "bco_pair",
    "bco_unpaired",
    "bnpo",
    "bradley_terry",
    "clipped_surrogate",
    "combine",
    "combined_spec",
    "cpo",
    "dapo",
    "discopop",
    "discounted_returns",
    "dno",
    "dpo",
    "dpo_norm",
    "dpo_pl",
    "dr_grpo",
    "dr_grpo_advantages",
    "exo_pair",
    "f_divergence_scores",
    "fdpo",
    "gae",
    "get_validation",
    "gpm",
    "gpm_score",
    "gpo",
    "grao",
    "grao_advantages",
    "group_relative",
    "grpo",
    "grpo_advantages",
    "hinge",
    "ipo",
    "ipo_norm",
    "irpo",
    "kl_penalty",
    "kto",
    "kto_kl",
    "ld_dpo",
    "leave_one_out_baseline",
    "lipo_lambda",
    "nash_md_pg",
    "nca_pair",
    "online_ipo",
    "ordinal",
    "ordinal_probabilities",
    "orpo",
    "p3o",
    "pairwise_ppo_advantages",
    "pairwise_reward",
    "ppo",
    "ppo_advantages",
    "ppo_value",
    "preference_strength",
    "reduce_to_step",
    "reinforce_pp",
    "reinforce_pp_advantages",
    "rloo",
    "rloo_advantages",
    "robust",
    "sequence_kl",
    "set_validation",
    "shaped_rewards",
    "simpo",
    "sppo",
    "sppo_hard",
    "superhf",
    "tpo",
    "tpo_l",
    "validation",
    "whiten",
    "wpo",
]
