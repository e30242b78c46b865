"""Generative pairwise judges (``prefkit train --method genrm``): SFT of a causal LM to answer which
of two responses is better (Think-RM, Pairwise-RL; ``prefkit.preference.generative``).

Each decided pair of ``--data`` becomes the judge prompt with the better response's label as the
target, in both orders (``genrm.swap``), optionally after a rationale (``genrm.rationale=world``:
the world critic names each response's issues; needs ``--world``). The prompt is rendered exactly
as the judge will read it (``HFBackend.render``), so training and judging see the same tokens. The
step is the SFT shape (the loss is the NLL of the target tokens). Held-out evaluation runs the
trained judge (``GenerativeJudge``) on ``data.eval_path`` pairs or, with ``--world``, on
``eval.prompts`` held-out world pairs labelled by the world's true preference:
``eval/judge_accuracy``, ``eval/position_consistency``, ``eval/first_rate``. The run writes
``policy/prefkit_judge.json``: ``online.judge=llm:OUT/policy`` (or ``rm eval --model llm:OUT``)
loads the judge as trained.

Think-RM's RL step (``genrm.rl``, ``--rl``; Hong et al. 2025, arXiv 2505.16265: rule-based RL after
the SFT warm-up) follows the SFT: GRPO (``--method grpo``, the online step shape, through its own
``RunSession``) on the judge itself. Its prompts are the SFT examples' judge prompts (every pair in
the orders ``genrm.swap`` taught, rendered as the judge reads them), its samples the judge's
completions (rationale and answer), its reward ``AgreementReward`` (``agreement_rewards``: 1 when
the completion names the better response's label, else 0), its KL reference the SFT judge. The
GRPO run is ``OUT/rl/`` (its ``config.yaml``, ``metrics.jsonl``, ``metrics.json``,
``checkpoints/`` and ``policy/``); ``OUT/policy`` is then the RL-improved judge (with its
``prefkit_judge.json``), and ``OUT/metrics.json`` reports the held-out judge metrics after the RL
step as ``eval/...`` (the SFT judge's as ``sft/eval/...``) and the RL run's as ``rl/...``.
Settings: ``genrm.rl_steps`` (default ``train.steps``), ``genrm.rl_lr`` (default ``train.lr``),
``online.samples_per_prompt`` (K, GRPO's 4 by default, at least 2), ``online.max_new_tokens``
(must hold the longest SFT target), ``online.prompts_per_step``, ``loss.beta``. ``--resume``
continues whichever phase was cut: the SFT from ``OUT/checkpoints``, then the RL step from
``OUT/rl/checkpoints``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.config import RunConfig
from prefkit.data import check_batch_size
from prefkit.data.records import PairRecord
from prefkit.engine.data import TrainData
from prefkit.engine.methods import METHODS, Method
from prefkit.engine.models import (
    build_policy,
    frozen_copy,
    lora_summary,
    prepare_for_training,
    save_policy_outputs,
    with_lora,
)
from prefkit.engine.offline.examples import tokenize_sequences
from prefkit.engine.offline.shapes import SFTShape
from prefkit.engine.run import RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import Policy

RL_DIR = "rl"
"""The RL step's run directory inside ``OUT``."""


def rl_config(cfg: RunConfig) -> RunConfig:
    """The GRPO run of the RL step (``OUT/rl/config.yaml``): ``cfg`` with ``method=grpo``,
    ``out=OUT/rl``, ``genrm.rl_steps``/``genrm.rl_lr`` as ``train.steps``/``train.lr``, and no new
    LoRA adapters (a LoRA judge goes on training the adapters of its SFT)."""
    from dataclasses import replace

    from prefkit.config import GenerativeJudgeConfig, LoraConfig

    g = cfg.genrm
    train = replace(cfg.train, steps=g.rl_steps if g.rl_steps is not None else cfg.train.steps,
                    lr=g.rl_lr if g.rl_lr is not None else cfg.train.lr)
    return replace(cfg, method="grpo", out=str(Path(cfg.out) / RL_DIR), train=train,
                   genrm=GenerativeJudgeConfig(), lora=LoraConfig())


def check_rl(cfg: RunConfig) -> RunConfig | None:
    """The RL step's GRPO configuration (``None`` without ``genrm.rl``), or a clear refusal of a
    setting it cannot honour; checked before the SFT starts."""
    if not cfg.genrm.rl:
        return None
    import prefkit.engine.online.methods  # noqa: F401  (registers grpo)
    from prefkit.config import OnlineConfig
    from prefkit.engine.online.methods import resolve_recipe
    from prefkit.engine.online.tokens import check_token_recipe, resolve_token_loss

    def refuse(reason: str, key: str) -> None:
        raise InputError(f"--rl (genrm.rl=true): {reason}", field=key)

    if cfg.online.judge != OnlineConfig().judge:
        refuse("the RL step's reward is agreement with the training pairs' labels, so online.judge is not read: "
               "remove it", "online.judge")
    if cfg.online.reward != "auto":
        refuse("the RL step's reward is agreement with the training pairs' labels, so online.reward is not read: "
               "remove it", "online.reward")
    if cfg.ref_model:
        refuse("the RL step's KL reference is the SFT judge, so ref_model is not read: remove it", "ref_model")
    if not cfg.train.final_checkpoint:
        refuse("--resume of the RL step starts from the SFT's final checkpoint: leave train.final_checkpoint=true",
               "train.final_checkpoint")
    if cfg.train.max_length <= cfg.online.max_new_tokens:
        refuse(f"train.max_length ({cfg.train.max_length}) must exceed online.max_new_tokens "
               f"({cfg.online.max_new_tokens}), the length of the judge's sampled completions", "train.max_length")
    rl = rl_config(cfg)
    grpo = METHODS["grpo"]
    try:
        recipe = resolve_recipe(grpo, rl.online)
        check_token_recipe(grpo.name, resolve_token_loss(grpo, rl.loss, rl.online), recipe, rl.online)
    except ValueError as error:
        key = "online.samples_per_prompt" if "samples_per_prompt" in str(error) else "genrm.rl"
        refuse(f"its GRPO run cannot start: {error}", key)
    return rl


def check_completion_length(cfg: RunConfig, policy: Policy, targets: Sequence[str]) -> None:
    """``online.max_new_tokens`` holds the longest SFT target and its end of sequence, so a sampled
    judgement can reach its answer (a cut one is rewarded 0, and nothing would be learnt)."""
    longest = max(len(policy.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets) + 1
    if cfg.online.max_new_tokens < longest:
        raise InputError(f"--rl (genrm.rl=true): the judge's SFT targets are up to {longest} tokens (with the end "
                         f"of sequence), and online.max_new_tokens={cfg.online.max_new_tokens} would cut its "
                         f"judgements before their answer: set online.max_new_tokens={longest} or more",
                         field="online.max_new_tokens")


def check_rl_resume(session: RunSession, rl_cfg: RunConfig) -> None:
    """A resumed run whose RL step has started may not train its SFT further (``train.steps``
    raised on ``--resume``): the RL checkpoint was trained from the shorter SFT's judge."""
    from prefkit.engine.rundir import CHECKPOINTS, latest_checkpoint

    if session.checkpoint is None or latest_checkpoint(Path(rl_cfg.out) / CHECKPOINTS) is None:
        return
    done, wanted = session.checkpoint.state.step, session.cfg.train.steps
    if done < wanted:
        raise InputError(f"--resume: the RL step in {rl_cfg.out} started from the judge of {done} SFT steps, and "
                         f"train.steps={wanted} would train the SFT further under it; resume with train.steps={done}, "
                         f"or remove {rl_cfg.out} to run the RL step again from the longer SFT", field="train.steps")


def run_rl(session: RunSession, rl_cfg: RunConfig, policy: Policy, reward: Any,
           evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None,
           progress: bool | None) -> tuple[TrainResult, dict[str, Any] | None]:
    """Think-RM's RL step: GRPO on ``policy`` (the SFT judge, also its frozen KL reference) with
    ``reward`` (an ``AgreementReward``) in its own session on ``OUT/rl``, resumed when the outer
    run is (and ``OUT/rl`` has a checkpoint). Returns the GRPO run's result and, under FSDP or
    DeepSpeed, its gathered weights."""
    from prefkit.engine.online.train import run_online
    from prefkit.engine.rundir import CHECKPOINTS, latest_checkpoint

    resume = session.checkpoint is not None and latest_checkpoint(Path(rl_cfg.out) / CHECKPOINTS) is not None
    allowed = sorted({change["key"] for change in session.config_changes})
    rl_session = RunSession.start(rl_cfg, resume=resume, allow_config_change=allowed)
    try:
        result = run_online(rl_session, METHODS["grpo"], data=TrainData(prompts=reward.prompts), policy=policy,
                            reference=frozen_copy(policy), evaluate=evaluate, progress=progress, judge=reward)
    finally:
        rl_session.close()
    return result, rl_session.state_dict


RL_SUMMARY_KEYS = ("steps", "final_loss", "wall_s", "samples", "gen_tokens", "reward_evals", "gen_s", "rows")
"""What ``OUT/metrics.json`` repeats of the RL run's ``metrics.json`` (as ``rl/KEY``)."""


def world_eval_pairs(world: Any, n: int, seed: int) -> list[PairRecord]:
    """``n`` held-out pairs of base responses on the world's eval prompts, labelled by its true
    preference (1 when P*(chosen beats rejected) > 1/2, else 0; exact ties 1/2)."""
    from dataclasses import replace

    pairs = world.pairs(n, np.random.default_rng([seed, 13]), split="eval")
    truth = world.true_preference([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])
    return [replace(p, label=1.0 if t > 0.5 else 0.0 if t < 0.5 else 0.5) for p, t in zip(pairs, truth)]


def run_genrm(session: RunSession, method: Method, *, data: TrainData | None, policy: Policy | None,
              reference: Policy | None, evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None,
              progress: bool | None) -> TrainResult:
    """Train a generative pairwise judge (see the module docstring) and write the run's outputs."""
    from prefkit.data import eval_source, read_options, read_pairs, train_source
    from prefkit.llm.hf import HFBackend
    from prefkit.preference.generative import (
        AgreementReward,
        GenerativeJudge,
        judge_examples,
        judge_report,
        write_judge_file,
    )
    from prefkit.preference.llm_judge import DEFAULT_TEMPLATE, parse_labels, read_template

    cfg = session.cfg
    rl_cfg = check_rl(cfg)
    if rl_cfg is not None:
        check_rl_resume(session, rl_cfg)
    if evaluate is not None:
        raise ValueError("a generative judge is evaluated on held-out pairs (data.eval_path, or the world's), not "
                         "by sampling the world: pass no evaluate= callback")
    world = None
    if cfg.eval.world:
        from prefkit.sim import make_world

        world = make_world(cfg.eval.world, seed=cfg.seed)
    if cfg.genrm.rationale == "world" and world is None:
        raise InputError("genrm.rationale=world writes the world critic's rationale: name the world with --world",
                         field="genrm.rationale")
    if data is not None and data.pairs is not None:
        records: Sequence[PairRecord] = list(data.pairs)
    else:
        if cfg.data.path is None:
            raise InputError("no training data: pass --data FILE (pairs)", field="data.path")
        records, _ = read_pairs(train_source(cfg.data), **read_options(cfg.data))
    labels = parse_labels(cfg.genrm.labels)
    template = read_template(cfg.genrm.template) if cfg.genrm.template else DEFAULT_TEMPLATE
    examples, ties = judge_examples(records, template=template, labels=labels, swap=cfg.genrm.swap,
                                    rationale_world=world if cfg.genrm.rationale == "world" else None,
                                    rng=np.random.default_rng(cfg.seed))
    if not examples:
        raise InputError("no decided pairs to train the judge on (every pair is a tie)", field="data.path")
    held_out_source = eval_source(cfg.data)
    if held_out_source is not None:
        held_out, _ = read_pairs(held_out_source, **read_options(cfg.data))
    else:
        held_out = world_eval_pairs(world, cfg.eval.prompts, cfg.seed) if world is not None else []
    setup_start = time.perf_counter()
    loaded_from_model = policy is None
    if policy is None:
        texts = [t for e in examples for t in (e.messages[0]["content"], e.target)] + [*labels, "user assistant"]
        policy = build_policy(cfg, texts, session.device, session.model_dtype)
    else:
        policy = with_lora(cfg, policy)
    prepare_for_training(cfg, policy.model)
    if rl_cfg is not None:
        check_completion_length(cfg, policy, [e.target for e in examples])
    backend = HFBackend(policy, name="the judge being trained")
    judge = GenerativeJudge(backend, template=template, labels=labels, rationale=cfg.genrm.rationale != "none")
    prompts = [backend.render(e.messages) for e in examples]
    tokenized = tokenize_sequences(policy, prompts, [e.target for e in examples], cfg.train,
                                   [e.source for e in examples])
    check_batch_size(cfg.train.batch_size, len(tokenized), what="judge examples", file=cfg.data.path)
    setup_s = time.perf_counter() - setup_start
    shape = SFTShape(session, policy, tokenized, label=method.name)
    judge_eval = (lambda step: judge_report(judge, held_out)) if held_out else None
    fit = session.fit(shape, policy.model, label=method.name, evaluate=judge_eval, progress=progress)

    rationale = cfg.genrm.rationale != "none"

    def save(state_dict: dict[str, Any] | None) -> None:
        save_policy_outputs(cfg, session.out, policy, None, loaded_from_model=loaded_from_model, save_reference=False,
                            state_dict=state_dict)
        write_judge_file(session.out / "policy", template=template, labels=labels, rationale=rationale)

    session.on_main(lambda: save(session.state_dict))  # the SFT judge: what a run cut in its RL step leaves
    summary: dict[str, Any] = {
        **fit.summary(method.name),
        "setup_s": setup_s,
        "examples": len(tokenized),
        "pairs": len(records),
        "ties_skipped": ties,
        "labels": list(labels),
        "rationale": cfg.genrm.rationale,
        "swap": cfg.genrm.swap,
        "held_out_pairs": len(held_out),
        "truncated_rows": tokenized.truncated,
        "processes": session.world,
        "rl": rl_cfg is not None,
        **lora_summary(policy.model),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    }
    if rl_cfg is not None:
        reward = AgreementReward.from_prompts(prompts, [e.first_is_better for e in examples], labels=labels,
                                              rationale=rationale)
        rl_eval = (lambda _policy, _reference, step: judge_report(judge, held_out)) if held_out else None
        rl, gathered = run_rl(session, rl_cfg, policy, reward, rl_eval, progress)
        session.on_main(lambda: save(gathered))  # the RL-improved judge
        session.on_main(lambda: write_judge_file(Path(rl_cfg.out) / "policy", template=template, labels=labels,
                                                 rationale=rationale))
        summary = {k: v for k, v in summary.items() if not k.startswith("eval/")}
        summary.update({f"sft/{k}": v for k, v in fit.last_metrics.items() if k.startswith("eval/")})
        summary.update({k: v for k, v in rl.metrics.items() if k.startswith("eval/")})
        summary.update({f"rl/{k}": rl.metrics.get(k) for k in RL_SUMMARY_KEYS})
        summary["rl/prompts"] = len(reward.prompts)
        summary["rl/samples_per_prompt"] = rl_cfg.online.samples_per_prompt or METHODS["grpo"].recipe.samples_per_prompt
        summary["rl/dir"] = str(Path(rl_cfg.out))
    summary = session.finish(summary)
    return TrainResult(policy=policy, metrics=summary, history=fit.history)
