"""The online methods (sample -> judge -> update) and their recipes.

Each method is a registry ``Method`` whose step is ``"online"``; its ``recipe`` holds the
defaults that define it (objective, samples per prompt, pairing, rounds, reference). A field of
``OnlineConfig`` left at ``None`` takes the recipe's value; an explicit setting wins.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from prefkit.config import OnlineConfig
from prefkit.engine.methods import Method, Recipe, register_method
from prefkit.engine.online.objectives import get_objective
from prefkit.losses import LOSSES


def _recipe(objective: str, samples: int, **kwargs: Any) -> Recipe:
    get_objective(objective)
    return Recipe(objective=objective, samples_per_prompt=samples, **kwargs)


def _online(name: str, loss: str | None, summary: str, recipe: Recipe,
            loss_params: dict[str, Any] | None = None) -> Method:
    return Method(name, "online", loss, summary, loss_params=loss_params or {}, recipe=recipe)


ONLINE_METHODS: tuple[Method, ...] = (
    _online("online_dpo", "dpo",
            "Online DPO: 2 policy samples per prompt, judged, DPO against the SFT reference "
            "(Guo et al. 2024, OAIF, arXiv 2402.04792)",
            _recipe("pairwise", 2)),
    _online("online_dpo_ipo", "ipo",
            "Online DPO with the IPO loss (Guo et al. 2024, arXiv 2402.04792; Azar et al. 2023)",
            _recipe("pairwise", 2)),
    _online("iterative_dpo", "dpo",
            "Iterative DPO (RLHF Workflow, Dong et al. 2024, arXiv 2405.07863): 3 rounds, best vs "
            "worst of 4, reference = previous iterate",
            _recipe("pairwise", 4, pairing="best_worst", iterations=3, ref_update="previous")),
    _online("nash_md", "nash_md_pg",
            "Nash-MD-PG (Munos et al. 2023, arXiv 2312.00886, App. F): policy gradient on "
            "P(y beats y'), y' from the geometric mixture with the reference (coef 0.125)",
            _recipe("nash_md", 2, on_policy=True)),
    _online("egpo", "online_ipo",
            "EGPO (Zhou, Fazel & Du 2025, arXiv 2503.08942): extragradient through the online-IPO "
            "regression; the half step restores parameters and optimizer state",
            _recipe("online_ipo", 2, pairing="all", extragradient=True)),
    _online("online_ipo", "online_ipo",
            "Online IPO / online mirror descent (Calandriello et al. 2024; EGPO's OMD baseline, "
            "arXiv 2503.08942): the online-IPO regression against opponents from the policy",
            _recipe("online_ipo", 2, pairing="all")),
    _online("dno", "dno",
            "DNO (Rosset et al. 2024, arXiv 2404.03715, Alg. 1): batched on-policy regression onto "
            "sigmoid of win-rate gaps, reference = previous iterate, 3 rounds",
            _recipe("dno", 4, pairing="all", iterations=3, ref_update="previous")),
    _online("sppo", "sppo",
            "SPPO (Wu et al. 2024, arXiv 2405.00675): square loss on each sample's win-rate against "
            "K samples of the previous iterate, 3 rounds",
            _recipe("win_rate", 4, iterations=3, ref_update="previous")),
    _online("gpo", "gpo",
            "GPO (Zhang et al. 2024, arXiv 2410.02197): SPPO's square loss on skew-symmetric "
            "(GPM) preference scores, 3 rounds",
            _recipe("win_rate", 4, iterations=3, ref_update="previous", score="logit")),
    _online("p3o", "p3o",
            "P3O (Wu et al. 2023, arXiv 2310.00212): pairwise policy gradient on reward "
            "differences of two samples, V2 (joint) clipping by default",
            _recipe("p3o", 2, pairing="random", on_policy=True, needs_reward=True)),
    _online("superhf", "superhf",
            "SuperHF (Mukobi et al. 2023, arXiv 2310.16763): keep the top-1 of 4 samples by reward, "
            "NLL plus a KL prior to the initial policy",
            _recipe("filter", 4, needs_reward=True, exact_kl=True)),
    _online("grao", "grao",
            "GRAO (Wang et al. 2025, arXiv 2508.07750): group-normalised advantages of 4 samples "
            "with imitation of a reference answer",
            _recipe("grao", 4, on_policy=True, needs_reward=True, needs_answers=True)),
    _online("expert_iteration", "superhf",
            "Expert iteration (AlpacaFarm, Dubois et al. 2023, arXiv 2305.14387): SFT on the best of "
            "4 samples of the initial policy (one round)",
            _recipe("filter", 4, iterations=1, needs_reward=True),
            loss_params={"beta": 0.0}),
    _online("best_of_n", None,
            "Best-of-n at inference (AlpacaFarm, arXiv 2305.14387): n samples, the best by reward; "
            "no training",
            _recipe("best_of_n", 4, needs_reward=True)),
    _online("ppo", "ppo",
            "PPO (Schulman et al. 2017, arXiv 1707.06347; token-level InstructGPT/AlpacaFarm form, "
            "arXiv 2203.02155): per-token KL in the reward, GAE with a critic, clipped policy and value",
            _recipe("rollout", 1, on_policy=True, needs_reward=True, critic="separate")),
    _online("pairwise_ppo", "pairwise_ppo",
            "Pairwise PPO (Pairwise-RL, Xu et al. 2025, arXiv 2504.04950): PPO on the reward "
            "P(y beats anchor), the anchor a reference sample or a given answer",
            _recipe("anchored", 1, on_policy=True, critic="separate", anchor="reference")),
    _online("rloo", "rloo",
            "RLOO (Ahmadian et al. 2024, arXiv 2402.14740): REINFORCE with the leave-one-out baseline "
            "over 4 samples, KL in the reward (TRL 1.16 form)",
            _recipe("rollout", 4, on_policy=True, needs_reward=True)),
    _online("grpo", "grpo",
            "GRPO (Shao et al. 2024, arXiv 2402.03300): group-normalised advantages of 4 samples, "
            "clipped ratio, k3 KL to the reference in the loss (loss.name=bnpo|dapo: TRL's loss types)",
            _recipe("rollout", 4, on_policy=True, needs_reward=True)),
    _online("dr_grpo", "dr_grpo",
            "Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): GRPO without the std and the length "
            "normalisation",
            _recipe("rollout", 4, on_policy=True, needs_reward=True)),
    _online("reinforce_pp", "reinforce_pp",
            "REINFORCE++ (Hu 2025, arXiv 2501.03262): token-level KL in the reward, reward-to-go, "
            "advantages normalised over the batch, clipped ratio",
            _recipe("rollout", 1, on_policy=True, needs_reward=True)),
)

FEEDBACK_ONLINE_METHODS: tuple[Method, ...] = (
    _online("dragon", "dpo",
            "DRAGON (Bai et al. 2025, arXiv 2504.15217): 4 on-policy samples per prompt scored by an instance "
            "reward (online.judge=exemplars:FILE or a reward model), split at the step's median into positive "
            "and negative sets, DPO on their pairs",
            _recipe("dragon", 4, needs_reward=True)),
    _online("dragon_fd", "dpo",
            "DRAGON with a distribution reward (arXiv 2504.15217): each sample's leave-one-out contribution "
            "to the Frechet distance of the step's samples to an exemplar set, split and DPO as dragon",
            _recipe("dragon_fd", 4, needs_reward=True)),
)

for _method in (*ONLINE_METHODS, *FEEDBACK_ONLINE_METHODS):
    register_method(_method)


def feedback_per_prompt(recipe: Recipe, online: OnlineConfig, *, scalar_reward: bool = False) -> tuple[int, int]:
    """``(pairwise queries, reward evaluations)`` one prompt of a round costs at most (identical
    pairs are free). ``scalar_reward``: the judge is a reward model used as such."""
    return get_objective(recipe.objective).cost(recipe, online, scalar_reward and online.reward == "auto")


def feedback_per_step(recipe: Recipe, online: OnlineConfig, *, scalar_reward: bool = False) -> tuple[float, float]:
    """Average ``(queries, reward evaluations)`` per optimizer step: a round's prompts are shared by
    its ``online.epochs`` passes, so a batched-iterative step costs ``1/epochs`` of a per-step one."""
    queries, evals = feedback_per_prompt(recipe, online, scalar_reward=scalar_reward)
    share = online.prompts_per_step / (online.epochs if recipe.iterations else 1)
    return queries * share, evals * share


def resolve_recipe(method: Method, online: OnlineConfig) -> Recipe:
    """The method's recipe with every ``OnlineConfig`` override applied and checked."""
    if method.step != "online" or method.recipe is None:
        raise ValueError(f"method {method.name!r} is not an online method")
    recipe = method.recipe
    name = method.name
    if online.critic is not None and recipe.critic is None:
        raise ValueError(f"online.critic chooses PPO's value model; {name} has no critic (ppo, pairwise_ppo do)")
    if online.critic_model is not None and (recipe.critic is None or online.critic == "shared"):
        raise ValueError(f"online.critic_model starts a separate critic; {name} "
                         + ("has no critic" if recipe.critic is None else "has online.critic=shared"))
    if online.anchor is not None and recipe.anchor is None:
        raise ValueError(f"online.anchor is pairwise_ppo's comparison response; {name} has no anchor")
    if recipe.anchor is not None and online.reward != "auto":
        raise ValueError(f"online.reward={online.reward}: {name}'s reward is P(y beats anchor) from the judge; "
                         "online.reward does not apply (leave it at auto)")
    if online.preset is not None and recipe.critic is None:
        raise ValueError(f"online.preset holds AlpacaFarm's PPO settings; {name} is not PPO")
    objective = get_objective(recipe.objective)
    if online.kl_target is not None and not objective.token_level:
        raise ValueError(f"online.kl_target adapts the KL penalty in the reward of ppo, pairwise_ppo, rloo and "
                         f"reinforce_pp; {name} has none")
    overrides = {
        f.name: getattr(online, f.name)
        for f in fields(online)
        if f.name in ("samples_per_prompt", "pairing", "iterations", "ref_update", "critic", "anchor")
        and getattr(online, f.name) is not None
    }
    recipe = replace(recipe, **overrides)
    k = recipe.samples_per_prompt
    if k < objective.min_samples:
        raise ValueError(f"{name} compares or normalises over the samples of a prompt: online.samples_per_prompt "
                         f"must be >= {objective.min_samples}, got {k}")
    if objective.even_samples and k % 2:
        raise ValueError(f"{name} compares disjoint pairs of samples: online.samples_per_prompt must be even, "
                         f"got {k}")
    if recipe.on_policy and online.temperature != 1.0:
        raise ValueError(
            f"{name} is an on-policy gradient estimator: online.temperature must be 1 (got {online.temperature})"
        )
    if recipe.on_policy and online.sample_mixture:
        raise ValueError(f"{name} is an on-policy gradient estimator: online.sample_mixture must be 0")
    if objective.fixed_reference and recipe.ref_update == "previous":
        raise ValueError(f"{name} regularises toward the initial policy: online.ref_update must be 'fixed'")
    if recipe.extragradient and recipe.iterations is not None:
        raise ValueError("egpo takes its extragradient half step on fresh samples: it runs per-step online "
                         "(leave online.iterations unset)")
    if objective.per_step and recipe.iterations is not None:
        raise ValueError(f"{name} is an on-policy gradient: it runs per-step online (leave online.iterations unset)")
    if online.teacher and not objective.takes_teacher:
        raise ValueError(f"online.teacher applies to dno only, not {name}")
    if online.teacher:
        recipe = replace(recipe, needs_answers=True)
    if recipe.needs_reward and online.reward == "win_rate" and k < 2:
        raise ValueError(f"online.reward=win_rate scores each sample by its win-rate against the other samples of "
                         f"its prompt: {name} needs online.samples_per_prompt >= 2, got {k}")
    if objective.token_level and method.loss in LOSSES:
        least = LOSSES[method.loss].min_samples_per_prompt
        if k < least:
            raise ValueError(f"{name} normalises over the K samples of a prompt: online.samples_per_prompt must be "
                             f">= {least}, got {k}")
    if recipe.anchor == "answer":
        recipe = replace(recipe, needs_answers=True)
    return recipe
