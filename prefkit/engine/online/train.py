"""Online learning from preferences: ``run_online`` runs any online method through the driver.

``prefkit.engine.train`` calls ``run_online`` for methods whose step is ``"online"``
(registered in ``prefkit.engine.online.methods``). It resolves the prompts, the policy, the
reference and the judge, builds the online step shape (``prefkit.engine.online.step``) and
hands it to the run session, which owns checkpoints, ``--resume``, metrics and the
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
from typing import Any

import numpy as np
import torch

from prefkit._atomic import atomic_write_json
from prefkit.config import ConfigError, RunConfig
from prefkit.data.records import PromptRecord, Text
from prefkit.engine.data import TrainData
from prefkit.engine.losses import ResolvedLoss, resolve_loss
from prefkit.engine.methods import Method, Recipe
from prefkit.engine.models import (
    build_policy,
    build_reference,
    lora_summary,
    prepare_for_training,
    save_policy_outputs,
    with_lora,
)
from prefkit.engine.online.judge import OnlineJudge, resolve_judge
from prefkit.engine.online.methods import resolve_recipe
from prefkit.engine.online.objectives import BuildContext, get_objective
from prefkit.engine.online.rollout import Sampler
from prefkit.engine.online.step import OnlineShape
from prefkit.engine.online.tokens import (
    ActorCritic,
    Critic,
    RolloutSetup,
    build_critic,
    check_token_recipe,
    kl_controller,
    resolve_token_loss,
)
from prefkit.engine.run import RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import Policy, save_critic
from prefkit.preference import PreferenceModel


def prompt_key(prompt: Text) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def load_prompts(cfg: RunConfig, data: TrainData | None, world: Any | None) -> list[Text]:
    """The prompts to sample from (see the module docstring for where they come from)."""
    if data is not None and data.prompts is not None:
        prompts = [p.prompt if isinstance(p, PromptRecord) else p for p in data.prompts]
        where = "the in-memory prompt set"
    elif cfg.data.path is not None:
        from prefkit.data import read_options, read_prompts, train_source

        records, _ = read_prompts(train_source(cfg.data), **read_options(cfg.data))
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
            from prefkit.data import read_options, read_pairs

            records, _ = read_pairs(cfg.online.answers, **read_options(cfg.data))
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


@dataclass
class OnlineSetup:
    """Everything one online run needs, resolved (``build_online_run``)."""

    recipe: Recipe
    policy: Policy
    reference: Policy
    judge: OnlineJudge
    sampler: Sampler
    world: Any | None
    shape: OnlineShape | None
    """The step shape; ``None`` for best-of-n (nothing to train)."""
    setup_s: float = 0.0
    loaded_from_model: bool = False
    """The policy was loaded from ``cfg.model`` (not given in memory)."""
    critic: Critic | None = None
    """PPO's value model, trained beside the policy."""
    module: torch.nn.Module | None = None
    """What the driver optimises: the policy's model, or policy and critic (``ActorCritic``)."""


def build_online_run(
    session: RunSession,
    method: Method,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    judge: PreferenceModel | None = None,
) -> OnlineSetup:
    """Resolve prompts, judge, policy and reference and build the online step shape."""
    cfg = session.cfg
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
    objective = get_objective(recipe.objective)
    if recipe.needs_reward:
        try:
            online_judge.uses_reward_model()  # fails early when no scalar reward is available
        except ConfigError as error:
            if not objective.token_level:
                raise
            raise ConfigError(f"{method.name}: {error} (with online.samples_per_prompt >= 2); or train "
                              "--method pairwise_ppo, PPO on P(y beats an anchor) from any preference model") from None
    if cfg.lora.enabled and objective.build is None:
        raise InputError(f"{method.name} trains nothing (it samples n and keeps the best), so LoRA adapters would "
                         "stay at zero: set lora.r=0", field="lora.r")
    answers = load_answers(cfg, data, world, prompts, online_judge) if recipe.needs_answers else None

    setup_start = time.perf_counter()
    loaded_from_model = policy is None
    if policy is None:
        vocabulary = world.vocabulary() if world is not None else []
        answer_texts = [a for a in (answers or {}).values() if isinstance(a, str)]
        texts = [p if isinstance(p, str) else " ".join(m["content"] for m in p) for p in prompts]
        policy = build_policy(cfg, [*texts, *vocabulary, *answer_texts], session.device, session.model_dtype)
    else:
        policy = with_lora(cfg, policy)
    prepare_for_training(cfg, policy.model)
    if reference is None:
        reference = build_reference(cfg, policy, session.device, session.model_dtype)
    max_prompt = cfg.train.max_length - cfg.online.max_new_tokens
    if max_prompt <= 0:
        raise ConfigError(f"train.max_length ({cfg.train.max_length}) must exceed online.max_new_tokens "
                          f"({cfg.online.max_new_tokens})")
    sampler = Sampler(policy, max_new_tokens=cfg.online.max_new_tokens, top_p=cfg.online.top_p,
                      max_prompt_length=max_prompt, backend=cfg.online.backend,
                      vllm_gpu_memory_utilization=cfg.online.vllm_gpu_memory_utilization,
                      rank=session.rank, world=session.world)
    shape, critic, module = None, None, policy.model
    if objective.build is not None:
        rollout = None
        if objective.token_level:
            rollout, critic = _rollout_setup(session, method, recipe, policy)
            if critic is not None:
                module = ActorCritic(policy.model, critic)
            loss = ResolvedLoss(rollout.loss.spec, rollout.loss.fn, beta=rollout.loss.strength)
        else:
            loss = resolve_loss(method, cfg.loss)
            assert loss is not None
            if loss.spec.kind == "token":
                raise ValueError(f"loss.name={loss.spec.name} is a token-level reinforcement-learning loss; "
                                 f"{method.name} trains a {loss.spec.kind} one (use --method {loss.spec.name})")
        ctx = BuildContext(
            recipe=recipe, sampler=sampler, policy=policy, reference=reference, judge=online_judge,
            temperature=cfg.online.temperature, mixture_coef=cfg.online.mixture_coef,
            sample_mixture=cfg.online.sample_mixture, opponents=cfg.online.opponents,
            keep_top=cfg.online.keep_top,
            answer_of=(lambda p: policy.render_response(answers[prompt_key(p)])) if answers is not None else None,
            rollout=rollout,
        )
        shape = OnlineShape(session, objective, loss, ctx, prompts, label=method.name)
    return OnlineSetup(recipe, policy, reference, online_judge, sampler, world, shape,
                       setup_s=time.perf_counter() - setup_start, loaded_from_model=loaded_from_model,
                       critic=critic, module=module)


def _rollout_setup(session: RunSession, method: Method, recipe: Recipe,
                   policy: Policy) -> tuple[RolloutSetup, Critic | None]:
    """The token loss, the critic and the training encoding of a reinforcement-learning method."""
    cfg = session.cfg
    token = resolve_token_loss(method, cfg.loss, cfg.online)
    check_token_recipe(method.name, token, recipe, cfg.online)
    critic = build_critic(recipe.critic, policy, cfg.online, session.device) if recipe.critic is not None else None
    train = cfg.train

    def encode(prompt_ids, response_ids):
        return policy.encode_token_ids([list(p) for p in prompt_ids], [list(y) for y in response_ids],
                                       max_length=train.max_length, max_prompt_length=train.max_prompt_length,
                                       truncation=train.truncation)

    setup = RolloutSetup(token, encode, session.device, critic=critic, controller=kl_controller(token, cfg.online),
                         gather=session.gather_objects, rank=session.rank)
    return setup, critic


def run_online(
    session: RunSession,
    method: Method,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None = None,
    progress: bool | None = None,
    judge: PreferenceModel | None = None,
) -> TrainResult:
    """Run the online method ``method`` for ``cfg.train.steps`` optimizer steps into ``cfg.out``.

    Writes what offline runs write (``config.yaml``, ``metrics.jsonl``, ``metrics.json``,
    ``checkpoints/``, ``policy/``); ``metrics.json`` adds the budget: ``queries`` (pairwise
    comparisons), ``reward_evals``, ``gen_tokens``, ``gen_s``, ``gen_share`` and ``compute_s``
    (summed over processes). ``judge`` overrides ``online.judge`` with an in-memory preference model.
    """
    setup = build_online_run(session, method, data=data, policy=policy, reference=reference, judge=judge)
    if setup.shape is None:
        return _best_of_n(session, method, setup)
    shape, policy, reference = setup.shape, setup.policy, setup.reference
    world_eval = (lambda step: evaluate(policy, reference, step)) if evaluate is not None else None
    fit = session.fit(shape, setup.module or policy.model, label=method.name, evaluate=world_eval,
                      progress=progress)
    gathered = session.state_dict if setup.module is None or setup.module is policy.model else None
    session.on_main(lambda: save_policy_outputs(session.cfg, session.out, policy, reference,
                                                loaded_from_model=setup.loaded_from_model, save_reference=False,
                                                state_dict=gathered))
    if setup.critic is not None:
        session.on_main(lambda: save_critic(setup.critic, session.out / "critic"))
    counters = fit.last_metrics
    summary = session.finish({
        **fit.summary(method.name),
        "setup_s": setup.setup_s,
        "judge": setup.judge.name,
        "processes": session.world,
        **lora_summary(policy.model),
        "queries": int(counters.get("queries", 0)),
        "reward_evals": int(counters.get("reward_evals", 0)),
        "gen_tokens": int(counters.get("gen_tokens", 0)),
        "samples": int(counters.get("samples", 0)),
        "gen_s": counters.get("gen_s", 0.0),
        "judge_s": counters.get("judge_s", 0.0),
        "compute_s": counters.get("compute_s", 0.0),
        "gen_share": counters.get("gen_share", 0.0),
        "rounds": shape.rounds,
        "rows": sum(session.gather_objects(shape.rows_seen)),
        "skipped": {k[len("skipped/"):]: int(v) for k, v in counters.items() if k.startswith("skipped/")},
        "empty_steps": int(counters.get("empty_steps", 0)),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    })
    return TrainResult(policy=policy, metrics=summary, history=fit.history)


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


def _best_of_n(session: RunSession, method: Method, setup: OnlineSetup) -> TrainResult:
    """Best-of-n trains nothing: save the policy and the selection rule; evaluate on the world
    (main process)."""
    cfg = session.cfg
    policy, reference, sampler, judge, world = setup.policy, setup.reference, setup.sampler, setup.judge, setup.world
    recipe: Recipe = setup.recipe
    n = recipe.samples_per_prompt
    summary: dict[str, Any] = {"method": method.name, "steps": 0, "final_loss": None, "tokens": 0, "wall_s": 0.0,
                               "tokens_per_s": None, "judge": judge.name, "n": n, "kl_bound": best_of_n_kl(n)}

    def run() -> None:
        from prefkit.config import save_yaml

        save_yaml(cfg, session.out / "config.yaml")
        policy.save(session.out / "policy", state_dict=session.state_dict)
        rule = {"method": method.name, "n": n, "judge": judge.name,
                "reward": "reward model" if judge.uses_reward_model() else "win-rate within the n samples",
                "kl_bound": best_of_n_kl(n)}
        atomic_write_json(session.out / "best_of_n.json", rule)
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

    session.on_main(run)
    return TrainResult(policy=policy, metrics=session.finish(session.broadcast(summary)), history=[])
