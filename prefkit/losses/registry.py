"""The one name -> :class:`LossSpec` registry. The engine, config validation, CLI choices and
``docs/methods.md`` all read it; nothing else lists loss names."""

from __future__ import annotations

from prefkit.losses._spec import LossSpec
from prefkit.losses.listwise import adpo, adpo_targets_from_rewards, dpo_pl, irpo, lipo_lambda
from prefkit.losses.online import dno, gpo, grao, nash_md_pg, online_ipo, p3o, sppo, superhf
from prefkit.losses.ordinal import ordinal
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
from prefkit.losses.reward import bradley_terry, gpm
from prefkit.losses.rl import bnpo, dapo, dr_grpo, grpo, ppo, ppo_value, reinforce_pp, rloo
from prefkit.losses.rollout import (
    dr_grpo_advantages,
    grpo_advantages,
    pairwise_ppo_advantages,
    ppo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from prefkit.losses.unpaired import apo_zero_unpaired, bco_unpaired, kto
from prefkit.losses.variants import alphapo, cpo, fdpo, ld_dpo, tpo, tpo_l, wpo

TAIL_INPUTS = ("chosen_tail_logps", "rejected_tail_logps", "ref_chosen_tail_logps", "ref_rejected_tail_logps")

LOSSES: dict[str, LossSpec] = {
    # ------------------------------------------------------------------ pairwise (offline)
    "dpo": LossSpec(
        "dpo",
        dpo,
        "pairwise",
        "Rafailov et al. 2023, arXiv 2305.18290, eq. 7 (cDPO: Mitchell 2023, eq. 3)",
    ),
    "dpo_norm": LossSpec(
        "dpo_norm",
        dpo_norm,
        "pairwise",
        "Geng et al. 2025 (Delta learning), arXiv 2507.06187; Tülu 3, arXiv 2411.15124",
        needs_lengths=True,
    ),
    "robust": LossSpec(
        "robust", robust, "pairwise", "Chowdhury et al. 2024 (rDPO), arXiv 2403.00409"
    ),
    "ipo": LossSpec("ipo", ipo, "pairwise", "Azar et al. 2023, arXiv 2310.12036, eq. 17"),
    "ipo_norm": LossSpec(
        "ipo_norm",
        ipo_norm,
        "pairwise",
        "Azar et al. 2023, arXiv 2310.12036, eq. 17 (TRL's per-token form)",
        needs_lengths=True,
    ),
    "hinge": LossSpec("hinge", hinge, "pairwise", "Zhao et al. 2023 (SLiC-HF), arXiv 2305.10425"),
    "exo_pair": LossSpec(
        "exo_pair", exo_pair, "pairwise", "Ji et al. 2024 (EXO), arXiv 2402.00856, eq. 16"
    ),
    "nca_pair": LossSpec(
        "nca_pair", nca_pair, "pairwise", "Chen et al. 2024 (NCA), arXiv 2402.05369"
    ),
    "bco_pair": LossSpec(
        "bco_pair", bco_pair, "pairwise", "Jung et al. 2024 (BCO), arXiv 2404.04656"
    ),
    "sppo_hard": LossSpec(
        "sppo_hard",
        sppo_hard,
        "pairwise",
        "Wu et al. 2024 (SPPO), arXiv 2405.00675, eq. 4.7 (hard labels)",
    ),
    "aot": LossSpec("aot", aot, "pairwise", "Melnyk et al. 2024 (AOT), arXiv 2406.05882 (paired)"),
    "aot_unpaired": LossSpec(
        "aot_unpaired",
        aot_unpaired,
        "pairwise",
        "Melnyk et al. 2024 (AOT), arXiv 2406.05882 (unpaired)",
    ),
    "apo_zero": LossSpec(
        "apo_zero", apo_zero, "pairwise", "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266, eq. 7"
    ),
    "apo_down": LossSpec(
        "apo_down", apo_down, "pairwise", "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266, eq. 8"
    ),
    "discopop": LossSpec(
        "discopop", discopop, "pairwise", "Lu et al. 2024 (DiscoPOP), arXiv 2406.08414, eq. 5"
    ),
    "simpo": LossSpec(
        "simpo",
        simpo,
        "pairwise",
        "Meng, Xia & Chen 2024 (SimPO), arXiv 2405.14734, eq. 6",
        needs_reference=False,
        needs_lengths=True,
    ),
    "orpo": LossSpec(
        "orpo",
        orpo,
        "pairwise",
        "Hong, Lee & Thorne 2024 (ORPO), arXiv 2403.07691, §3",
        needs_reference=False,
        needs_lengths=True,
    ),
    "fdpo": LossSpec(
        "fdpo", fdpo, "pairwise",
        "Wang et al. 2023 (f-DPO), arXiv 2309.16240, eq. 10 (TRL f_divergence_type)",
    ),
    "ld_dpo": LossSpec(
        "ld_dpo", ld_dpo, "pairwise",
        "Liu et al. 2024 (LD-DPO), arXiv 2409.06411 (TRL ld_alpha)",
        inputs=TAIL_INPUTS,
    ),
    "wpo": LossSpec(
        "wpo", wpo, "pairwise",
        "Zhou et al. 2024 (WPO), arXiv 2406.11827, eq. 2 (TRL use_weighting)",
        inputs=("chosen_wpo_logps", "rejected_wpo_logps"),
    ),
    "cpo": LossSpec(
        "cpo", cpo, "pairwise",
        "Xu et al. 2024 (CPO), arXiv 2401.08417, eq. 3 + NLL",
        needs_reference=False,
        needs_lengths=True,
    ),
    "alphapo": LossSpec(
        "alphapo", alphapo, "pairwise",
        "Gupta et al. 2025 (AlphaPO), arXiv 2501.03884",
        needs_reference=False,
        needs_lengths=True,
    ),
    "tpo": LossSpec(
        "tpo", tpo, "pairwise",
        "Saeidi et al. 2024 (TPO), arXiv 2405.16681",
        needs_reference=False,
        inputs=("gold_logps", "gold_lengths"),
    ),
    "tpo_l": LossSpec(
        "tpo_l", tpo_l, "pairwise",
        "Saeidi et al. 2024 (TPO-L), arXiv 2405.16681",
        needs_reference=False,
        needs_lengths=True,
        inputs=("gold_logps", "gold_lengths"),
    ),
    # ------------------------------------------------------------------ unpaired (offline)
    "kto": LossSpec(
        "kto", kto, "unpaired",
        "Ethayarajh et al. 2024 (KTO), arXiv 2402.01306, eq. 7",
        inputs=("kl_logps", "ref_kl_logps"),
    ),
    "bco_unpaired": LossSpec(
        "bco_unpaired", bco_unpaired, "unpaired",
        "Jung et al. 2024 (BCO), arXiv 2404.04656, eq. 5",
    ),
    "apo_zero_unpaired": LossSpec(
        "apo_zero_unpaired", apo_zero_unpaired, "unpaired",
        "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266, eq. 7 (unpaired)",
    ),
    # ------------------------------------------------------------------ listwise (offline)
    "lipo_lambda": LossSpec(
        "lipo_lambda", lipo_lambda, "listwise", "Liu et al. 2024 (LiPO), arXiv 2402.01878, LiPO-λ"
    ),
    "dpo_pl": LossSpec(
        "dpo_pl",
        dpo_pl,
        "listwise",
        "Rafailov et al. 2023, arXiv 2305.18290, App. A.3 (Plackett-Luce)",
    ),
    "adpo": LossSpec(
        "adpo",
        adpo,
        "listwise",
        "Wang 2025 (ADPO), arXiv 2510.18913, anchored listwise objective",
        strength_arg="tau",
        targets_from_scores=adpo_targets_from_rewards,
    ),
    "irpo": LossSpec(
        "irpo", irpo, "listwise", "Wu, Surana et al. 2025 (IRPO), arXiv 2504.15477 (official code)"
    ),
    # ------------------------------------------------------------------ preference models
    "bradley_terry": LossSpec(
        "bradley_terry",
        bradley_terry,
        "reward",
        "Ouyang et al. 2022, arXiv 2203.02155, eq. 1; Wang et al. 2024 (Secrets II), arXiv 2401.06080",
        needs_reference=False,
        strength_arg=None,
    ),
    "gpm": LossSpec(
        "gpm",
        gpm,
        "reward",
        "Zhang et al. 2024 (GPM), arXiv 2410.02197, GPM loss",
        needs_reference=False,
        strength_arg="tau",
    ),
    "ordinal": LossSpec(
        "ordinal",
        ordinal,
        "reward",
        "McCullagh 1980 (cumulative logit, eq. 2.4); Zhang et al. 2025 (GNOLR), arXiv 2505.20900, nested objectives",
        needs_reference=False,
        strength_arg=None,
    ),
    # ------------------------------------------------------------------ online
    "online_ipo": LossSpec(
        "online_ipo",
        online_ipo,
        "online",
        "Zhou, Fazel & Du 2025 (EGPO), arXiv 2503.08942, online-IPO loss",
    ),
    "nash_md_pg": LossSpec(
        "nash_md_pg",
        nash_md_pg,
        "online",
        "Munos et al. 2023 (Nash-MD), arXiv 2312.00886, App. F eq. 13",
    ),
    "p3o": LossSpec(
        "p3o",
        p3o,
        "online",
        "Wu et al. 2023 (P3O), arXiv 2310.00212, §4.2",
    ),
    "dno": LossSpec(
        "dno",
        dno,
        "online",
        "Rosset et al. 2024 (DNO), arXiv 2404.03715, Algorithm 1",
    ),
    "sppo": LossSpec(
        "sppo",
        sppo,
        "online",
        "Wu et al. 2024 (SPPO), arXiv 2405.00675, eq. 4.7",
    ),
    "gpo": LossSpec(
        "gpo",
        gpo,
        "online",
        "Zhang et al. 2024 (GPM/GPO), arXiv 2410.02197, GPO",
    ),
    "grao": LossSpec(
        "grao",
        grao,
        "online",
        "Wang et al. 2025 (GRAO), arXiv 2508.07750, J_GRAO",
        needs_reference=False,
    ),
    "superhf": LossSpec(
        "superhf",
        superhf,
        "online",
        "Mukobi et al. 2023 (SuperHF), arXiv 2310.16763",
    ),
    # ------------------------------------------------------------------ token (RL baselines)
    "ppo": LossSpec(
        "ppo",
        ppo,
        "token",
        "Schulman et al. 2017 (PPO), arXiv 1707.06347, eq. 7 and 9; Ouyang et al. 2022, "
        "arXiv 2203.02155, eq. 2; GAE: Schulman et al. 2016, arXiv 1506.02438, eq. 16",
        strength_arg="kl_coef",
        advantage_fn=ppo_advantages,
        value_fn=ppo_value,
        reduction="tokens",
        engine_params=("entropies",),
    ),
    "pairwise_ppo": LossSpec(
        "pairwise_ppo",
        ppo,
        "token",
        "Xu et al. 2025 (Pairwise-RL), arXiv 2504.04950: PPO on the reward P(y beats anchor)",
        strength_arg="kl_coef",
        advantage_fn=pairwise_ppo_advantages,
        value_fn=ppo_value,
        reduction="tokens",
        engine_params=("entropies",),
    ),
    "rloo": LossSpec(
        "rloo",
        rloo,
        "token",
        "Ahmadian et al. 2024 (RLOO), arXiv 2402.14740, leave-one-out REINFORCE (TRL 1.16 form)",
        strength_arg="kl_coef",
        advantage_fn=rloo_advantages,
        reduction="sequences",
        min_samples_per_prompt=2,
    ),
    "grpo": LossSpec(
        "grpo",
        grpo,
        "token",
        "Shao et al. 2024 (GRPO), arXiv 2402.03300, eq. 3 (TRL 1.16 loss_type=grpo)",
        advantage_fn=grpo_advantages,
        reduction="sequences",
        min_samples_per_prompt=2,
    ),
    "bnpo": LossSpec(
        "bnpo",
        bnpo,
        "token",
        "Shao et al. 2024 (GRPO), arXiv 2402.03300, eq. 3 (TRL 1.16 loss_type=bnpo)",
        advantage_fn=grpo_advantages,
        reduction="micro_tokens",
        min_samples_per_prompt=2,
    ),
    "dr_grpo": LossSpec(
        "dr_grpo",
        dr_grpo,
        "token",
        "Liu et al. 2025 (Dr. GRPO), arXiv 2503.20783, GRPO without 1/|o| (TRL 1.16 dr_grpo)",
        advantage_fn=dr_grpo_advantages,
        reduction="sequences",
        min_samples_per_prompt=2,
        engine_params=("max_completion_length",),
    ),
    "dapo": LossSpec(
        "dapo",
        dapo,
        "token",
        "Yu et al. 2025 (DAPO), arXiv 2503.14476, token-level loss (TRL 1.16 loss_type=dapo)",
        advantage_fn=grpo_advantages,
        reduction="tokens",
        min_samples_per_prompt=2,
    ),
    "reinforce_pp": LossSpec(
        "reinforce_pp",
        reinforce_pp,
        "token",
        "Hu 2025 (REINFORCE++), arXiv 2501.03262, global advantage normalisation",
        strength_arg="kl_coef",
        advantage_fn=reinforce_pp_advantages,
        reduction="tokens",
    ),
}
