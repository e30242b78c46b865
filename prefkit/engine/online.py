"""Online learning from preferences: ``train_online`` runs any online method through ``optimize()``.

``prefkit.engine.loop.train`` calls ``train_online`` for methods whose step is ``"online"``
(registered in ``prefkit.engine.online_methods``). It resolves the prompts, the policy, the
reference and the judge, builds the online step (``prefkit.engine.online_step``) and hands it
to the one optimisation loop, which owns checkpoints, ``--resume``, metrics and the
non-finite stop. docs/online.md describes the methods, the budget accounting and the results.

Prompts: ``TrainData.prompts`` (in memory), else ``--data FILE`` (a prompt file, or the prompts
of a pairs/lists file), else with ``--world`` the world's train prompts.
Judge: ``online.judge`` (``world``: the world's annotator pool; ``world-truth``; a preference
model directory), or a ``PreferenceModel`` passed as ``judge=``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.config import ConfigError, RunConfig, save_yaml
from prefkit.data.records import PromptRecord, Text
from prefkit.engine.loop import (
    TrainData,
    TrainResult,
    _autocast_factory,
    frozen_copy,
    optimize,
    start_run,
)
from prefkit.engine.methods import Method
from prefkit.engine.online_judge import OnlineJudge, resolve_judge
from prefkit.engine.online_methods import Recipe, resolve_recipe
from prefkit.engine.online_objectives import BuildContext
from prefkit.engine.online_rollout import Sampler
from prefkit.engine.online_step import OnlineRun
from prefkit.engine.steps import resolve_loss
from prefkit.errors import InputError
from prefkit.policy import Policy, resolve_device
from prefkit.preference import PreferenceModel


def prompt_key(prompt: Text) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def load_prompts(cfg: RunConfig, data: TrainData | None, world: Any | None) -> list[Text]:
    """The prompts to sample from (see the module docstring for where they come from)."""
    if data is not None and data.prompts is not None:
        prompts = [p.prompt if isinstance(p, PromptRecord) else p for p in data.prompts]
        where = "the in-memory prompt set"
    elif cfg.data.path is not None:
        from prefkit.data import read_prompts, train_source

        records, _ = read_prompts(train_source(cfg.data), skip_invalid=cfg.data.skip_invalid)
        prompts, where = [r.prompt for r in records], cfg.data.path
    elif world is not None:
        prompts, where = world.prompts("train"), f"world {world.name!r}"
    else:
        raise InputError("online training needs prompts: --data FILE (prompts, or the prompts of a pairs or "
                         "lists file) or --world NAME (its train prompts)", field="data.path")
    if not prompts:
        raise InputError(f"{where}: the prompt set is empty; online training needs at least one prompt",
                         field="data.path")
    return prompts


def load_answers(cfg: RunConfig, data: TrainData | None, world: Any | None, prompts: Sequence[Text],
                 judge: OnlineJudge) -> dict[str, Text]:
    """A reference answer per prompt (GRAO's imitation target, DNO's teacher).

    From ``online.answers`` (a pairs file: the first ``chosen`` of each prompt), else from the
    in-memory pairs, else from the world: two base responses per prompt judged once by the
    judge (the query is counted), the preferred one kept.
    """
    answers: dict[str, Text] = {}
    if cfg.online.answers is not None or (data is not None and data.pairs):
        if cfg.online.answers is not None:
            from prefkit.data import read_pairs

            records, _ = read_pairs(cfg.online.answers, skip_invalid=cfg.data.skip_invalid)
        else:
            records = list(data.pairs)  # type: ignore[union-attr]
        for r in records:
            answers.setdefault(prompt_key(r.prompt), r.chosen)
        missing = [p for p in prompts if prompt_key(p) not in answers]
        if missing:
            raise InputError(f"no reference answer for {len(missing)} of {len(prompts)} prompts "
                             f"(first: {missing[0]!r})", file=cfg.online.answers, field="online.answers")
        return answers
    if world is None:
        raise InputError("this method needs a reference answer per prompt: give online.answers=PAIRS_FILE "
                         "(its chosen responses) or --world", field="online.answers")
    unique = list(dict.fromkeys(prompt_key(p) for p in prompts))
    drawn = world.base_responses(unique, 2, np.random.default_rng(cfg.seed + 5))
    labels = judge.compare(unique, [d[0] for d in drawn], [d[1] for d in drawn])
    return {p: d[0] if label >= 0.5 else d[1] for p, d, label in zip(unique, drawn, labels.tolist())}


def build_online_policy(cfg: RunConfig, prompts: Sequence[Text], extra_texts: Sequence[str],
                        device: torch.device) -> Policy:
    if cfg.model == "tiny":
        texts = [p if isinstance(p, str) else " ".join(m["content"] for m in p) for p in prompts]
        return Policy.tiny([*texts, *extra_texts], cfg.tiny, seed=cfg.seed, device=device)
    dtype = "bf16" if cfg.train.precision == "bf16" and device.type == "cuda" else None
    return Policy.load(cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code)


@dataclass
class OnlineSetup:
    """Everything one online run needs, resolved (``build_online_run``)."""

    recipe: Recipe
    policy: Policy
    reference: Policy
    judge: OnlineJudge
    sampler: Sampler
    world: Any | None
    run: OnlineRun | None
    """The step function's owner; ``None`` for best-of-n (nothing to train)."""
    setup_s: float = 0.0


def build_online_run(
    cfg: RunConfig,
    method: Method,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    judge: PreferenceModel | None = None,
) -> OnlineSetup:
    """Resolve prompts, judge, policy and reference and build the online step for ``method``
    (``train_online`` hands ``setup.run.step_fn`` to ``optimize()``)."""
    device = resolve_device(cfg.train.device)
    recipe = resolve_recipe(method, cfg.online)
    world = None
    if cfg.eval.world:
        from prefkit.sim import make_world

        world = make_world(cfg.eval.world, seed=cfg.seed)
    prompts = load_prompts(cfg, data, world)
    if judge is not None:
        online_judge = OnlineJudge(judge, reward=cfg.online.reward)
    else:
        model, name = resolve_judge(cfg, world)
        online_judge = OnlineJudge(model, name=name, reward=cfg.online.reward)
    if recipe.score == "logit" and online_judge.hard_labels:
        raise ConfigError(f"{method.name} regresses on preference log-odds (GPM scores) and the judge "
                          f"{online_judge.name!r} answers 0/1 labels: use a GPM or other preference model, "
                          "or online.judge=world-truth")
    if recipe.needs_reward:
        online_judge.uses_reward_model()  # fails early when no scalar reward is available
    answers = load_answers(cfg, data, world, prompts, online_judge) if recipe.needs_answers else None

    setup_start = time.perf_counter()
    if policy is None:
        vocabulary = world.vocabulary() if world is not None else []
        answer_texts = [a for a in (answers or {}).values() if isinstance(a, str)]
        policy = build_online_policy(cfg, prompts, [*vocabulary, *answer_texts], device)
    policy.model.train()
    if reference is None:
        reference = (Policy.load(cfg.ref_model, device=device, trust_remote_code=cfg.trust_remote_code)
                     if cfg.ref_model else frozen_copy(policy))
    max_prompt = cfg.train.max_length - cfg.online.max_new_tokens
    if max_prompt <= 0:
        raise ConfigError(f"train.max_length ({cfg.train.max_length}) must exceed online.max_new_tokens "
                          f"({cfg.online.max_new_tokens})")
    sampler = Sampler(policy, max_new_tokens=cfg.online.max_new_tokens, top_p=cfg.online.top_p,
                      max_prompt_length=max_prompt, backend=cfg.online.backend,
                      vllm_gpu_memory_utilization=cfg.online.vllm_gpu_memory_utilization)
    run = None
    if recipe.objective != "best_of_n":
        loss = resolve_loss(method, cfg.loss)
        assert loss is not None
        ctx = BuildContext(
            recipe=recipe, sampler=sampler, policy=policy, reference=reference, judge=online_judge,
            temperature=cfg.online.temperature, mixture_coef=cfg.online.mixture_coef,
            sample_mixture=cfg.online.sample_mixture, opponents=cfg.online.opponents,
            keep_top=cfg.online.keep_top,
            answer_of=(lambda p: policy.render_response(answers[prompt_key(p)])) if answers is not None else None,
        )
        run = OnlineRun(cfg, recipe.objective, loss, ctx, prompts,
                        autocast=_autocast_factory(cfg.train.precision, device), device=device)
    return OnlineSetup(recipe, policy, reference, online_judge, sampler, world, run,
                       setup_s=time.perf_counter() - setup_start)


def train_online(
    cfg: RunConfig,
    method: Method,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    resume: bool = False,
    progress: bool | None = None,
    evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None = None,
    judge: PreferenceModel | None = None,
) -> TrainResult:
    """Run the online method ``method`` for ``cfg.train.steps`` optimizer steps into ``cfg.out``.

    Writes what ``train`` writes (``config.yaml``, ``metrics.jsonl``, ``metrics.json``,
    ``checkpoints/``, ``policy/``); ``metrics.json`` adds the budget: ``queries`` (pairwise
    comparisons), ``reward_evals``, ``gen_tokens``, ``gen_s``, ``gen_share`` and ``compute_s``.
    ``judge`` overrides ``online.judge`` with an in-memory preference model.
    """
    if cfg.train.epochs is not None:
        raise InputError("train.epochs counts passes over a fixed data set; online methods sample new data "
                         "each round: set train.steps (and online.epochs for passes over a round)",
                         field="train.epochs")
    out, latest = start_run(cfg, resume)
    setup = build_online_run(cfg, method, data=data, policy=policy, reference=reference, judge=judge)
    if setup.run is None:
        return _best_of_n(cfg, method, setup, out)
    run, policy, reference = setup.run, setup.policy, setup.reference
    result = optimize(
        cfg, model=policy.model, step_fn=run.step_fn, label=method.name, resume_from=latest, progress=progress,
        evaluate=(lambda step: evaluate(policy, reference, step)) if evaluate is not None else None,
        extra_state=run.state_dict, restore_extra=run.load_state_dict,
    )
    policy.save(out / "policy")
    counters = run.counters()
    summary = {
        "method": method.name,
        "steps": result.state.step,
        "final_loss": result.last_metrics.get("loss"),
        "tokens": result.state.tokens,
        "wall_s": result.state.wall_s,
        "tokens_per_s": result.state.tokens / result.state.wall_s if result.state.wall_s > 0 else None,
        "setup_s": setup.setup_s,
        "judge": setup.judge.name,
        "queries": int(counters["queries"]),
        "reward_evals": int(counters["reward_evals"]),
        "gen_tokens": int(counters["gen_tokens"]),
        "gen_s": counters["gen_s"],
        "judge_s": counters["judge_s"],
        "compute_s": counters["compute_s"],
        "gen_share": counters["gen_share"],
        "rounds": run.rounds,
        "rows": run.rows_seen,
        "skipped": {k[len("skipped/"):]: int(v) for k, v in counters.items() if k.startswith("skipped/")},
        "empty_steps": run.empty_steps,
        **{k: v for k, v in result.last_metrics.items() if k.startswith("eval/")},
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return TrainResult(policy=policy, metrics=summary, history=result.history)


# ----------------------------------------------------------------------------- best-of-n

def best_of_n_texts(sampler: Sampler, judge: OnlineJudge, prompts: Sequence[Text], keep: int, n: int,
                    *, seed: int, temperature: float = 1.0) -> list[list[str]]:
    """``keep`` responses per prompt, each the best of ``n`` fresh samples by the judge's reward
    (or win-rate within its n): best-of-n sampling at inference (Stiennon et al. 2020;
    AlpacaFarm's best-of-n baseline)."""
    if n < 1 or keep < 1:
        raise ValueError(f"best-of-n needs n >= 1 and keep >= 1, got n={n}, keep={keep}")
    samples = sampler.sample(prompts, keep * n, seed=seed, temperature=temperature)
    groups = [row[j * n:(j + 1) * n] for row in samples.texts for j in range(keep)]
    group_prompts = [p for p in prompts for _ in range(keep)]
    scores = judge.rewards(group_prompts, groups) if n > 1 else [torch.zeros(1) for _ in groups]
    picks = [group[int(torch.argmax(s))] for group, s in zip(groups, scores)]
    return [picks[i * keep:(i + 1) * keep] for i in range(len(prompts))]


def best_of_n_kl(n: int) -> float:
    """``log n - (n - 1)/n``: the KL of best-of-n to its base policy for distinct samples
    (Stiennon et al. 2020; an upper bound in general, Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


def _best_of_n(cfg: RunConfig, method: Method, setup: OnlineSetup, out: Path) -> TrainResult:
    """Best-of-n trains nothing: save the policy and the selection rule; evaluate on the world."""
    policy, reference, sampler, judge, world = setup.policy, setup.reference, setup.sampler, setup.judge, setup.world
    recipe = setup.recipe
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    policy.save(out / "policy")
    n = recipe.samples_per_prompt
    rule = {"method": method.name, "n": n, "judge": judge.name,
            "reward": "reward model" if judge.uses_reward_model() else "win-rate within the n samples",
            "kl_bound": best_of_n_kl(n)}
    (out / "best_of_n.json").write_text(json.dumps(rule, indent=2), encoding="utf-8")
    summary: dict[str, Any] = {"method": method.name, "steps": 0, "final_loss": None, "tokens": 0, "wall_s": 0.0,
                               "tokens_per_s": None, "judge": judge.name, "n": n, "kl_bound": best_of_n_kl(n)}
    if world is not None:
        from prefkit.engine.evaluation import sample_texts
        from prefkit.sim.evaluation import evaluate

        began = time.perf_counter()
        prompts = world.prompts("eval", cfg.eval.prompts)
        picks = best_of_n_texts(sampler, judge, prompts, cfg.eval.samples, n, seed=cfg.seed + 2,
                                temperature=cfg.eval.temperature)
        ref = sample_texts(reference, prompts, cfg.eval, cfg.seed + 1)
        result = evaluate(world, prompts, picks, ref.texts)
        summary.update({"eval/win_rate": result.win_rate, "eval/win_rate_se": result.win_rate_se,
                        "eval/kl_bound": best_of_n_kl(n), "wall_s": time.perf_counter() - began})
    summary.update(queries=judge.queries, reward_evals=judge.reward_evals, gen_tokens=sampler.stats.tokens,
                   gen_s=sampler.stats.seconds)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return TrainResult(policy=policy, metrics=summary, history=[])
