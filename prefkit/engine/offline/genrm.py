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

Think-RM's RL step (``genrm.rl``, ``--rl``: GRPO with reward = agreement with the label,
``prefkit.preference.generative.agreement_rewards``) needs the GRPO online method and is refused
until it is wired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from prefkit.config import RunConfig
from prefkit.data import check_batch_size
from prefkit.data.records import PairRecord
from prefkit.engine.data import TrainData
from prefkit.engine.methods import METHODS, Method
from prefkit.engine.models import (
    build_policy,
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


def refuse_rl(cfg: RunConfig) -> None:
    """``genrm.rl`` is refused with what is missing (tested; the lead wires it once GRPO exists)."""
    if not cfg.genrm.rl:
        return
    if "grpo" not in METHODS:
        raise InputError("--rl (genrm.rl=true) runs Think-RM's RL step, GRPO with reward = agreement with the label, "
                         "and GRPO is required: this prefkit has no grpo method yet. Train the judge without --rl "
                         "(the SFT step)", field="genrm.rl")
    raise InputError("--rl (genrm.rl=true): GRPO exists, but its wiring to the generative judge (prompts = judge "
                     "prompts, reward = prefkit.preference.generative.agreement_rewards) is not built yet; train "
                     "without --rl", field="genrm.rl")


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
    from prefkit.data import read_options, read_pairs
    from prefkit.llm.hf import HFBackend
    from prefkit.preference.generative import (
        GenerativeJudge,
        judge_examples,
        judge_report,
        write_judge_file,
    )
    from prefkit.preference.llm_judge import DEFAULT_TEMPLATE, parse_labels, read_template

    cfg = session.cfg
    refuse_rl(cfg)
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
        records, _ = read_pairs(cfg.data.path, **read_options(cfg.data))
    labels = parse_labels(cfg.genrm.labels)
    template = read_template(cfg.genrm.template) if cfg.genrm.template else DEFAULT_TEMPLATE
    examples, ties = judge_examples(records, template=template, labels=labels, swap=cfg.genrm.swap,
                                    rationale_world=world if cfg.genrm.rationale == "world" else None,
                                    rng=np.random.default_rng(cfg.seed))
    if not examples:
        raise InputError("no decided pairs to train the judge on (every pair is a tie)", field="data.path")
    if cfg.data.eval_path is not None:
        held_out, _ = read_pairs(cfg.data.eval_path, **read_options(cfg.data))
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

    def save() -> None:
        save_policy_outputs(cfg, session.out, policy, None, loaded_from_model=loaded_from_model, save_reference=False,
                            state_dict=session.state_dict)
        write_judge_file(session.out / "policy", template=template, labels=labels,
                         rationale=cfg.genrm.rationale != "none")

    session.on_main(save)
    summary = session.finish({
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
        **lora_summary(policy.model),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    })
    return TrainResult(policy=policy, metrics=summary, history=fit.history)
