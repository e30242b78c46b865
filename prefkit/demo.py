"""The main job: align a tiny policy on a simulated world by many methods and measure them honestly.

``run_demo`` builds a world, fits a tiny Llama reference by SFT on the world's base generator,
collects labelled pairs and ranked lists from the world's annotator pool, trains every method
from the reference through the one engine, and evaluates each under the world's true preference
P* (win-rate against the reference with a standard error, KL to the reference, and on cyclic
worlds the exploitability against a pool of candidate policies). It writes
``leaderboard.json``, ``leaderboard.md`` and ``leaderboard.png`` into the output directory.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from prefkit._atomic import atomic_write_text
from prefkit.config import (
    EvalConfig,
    RunConfig,
    TinyConfig,
    TrainConfig,
    from_dict,
    load_yaml,
    save_yaml,
    to_dict,
)
from prefkit.engine import TrainData, train
from prefkit.engine.evaluation import evaluate_on_world, sample_texts
from prefkit.engine.models import frozen_copy
from prefkit.policy import Policy


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a method, its data, and the settings that differ from the defaults."""

    label: str
    method: str
    data: str = "pairs"
    """``pairs``, ``lists`` or ``online``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    fast: bool = True
    """Part of ``--fast``."""


OFFLINE: tuple[Entry, ...] = (
    Entry("DPO", "dpo", overrides={"loss": {"beta": 0.1}}),
    Entry("IPO", "ipo", overrides={"loss": {"beta": 0.02}}),
    Entry("cDPO (eps 0.1)", "cdpo", overrides={"loss": {"beta": 0.1}}),
    Entry("robust DPO (eps 0.1)", "robust", overrides={"loss": {"beta": 0.1}}),
    Entry("SimPO", "simpo", overrides={"loss": {"beta": 1.0}}),
    Entry("LiPO-lambda (K=4)", "lipo_lambda", data="lists",
          overrides={"loss": {"beta": 0.1}, "train": {"steps": 100, "batch_size": 16}}),
    Entry("ADPO (K=4)", "adpo", data="lists", overrides={"loss": {"params": {"tau": 5.0}}, "train": {"steps": 100}}),
    Entry("RPO (DPO + NLL)", "rpo", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("DPO, length-normalised", "dpo_norm", overrides={"loss": {"beta": 2.0}}, fast=False),
    Entry("SLiC hinge", "hinge", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("ORPO", "orpo", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("EXO", "exo_pair", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("NCA", "nca_pair", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("APO-zero", "apo_zero", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("DiscoPOP", "discopop", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("DPO-PL (K=4)", "dpo_pl", data="lists",
          overrides={"loss": {"beta": 0.1}, "train": {"steps": 100, "batch_size": 16}}, fast=False),
)
"""The offline methods of the demo (settings per method; every other setting is shared)."""

_WIN_RATE = {"reward": "win_rate"}

ONLINE: tuple[Entry, ...] = (
    Entry("online DPO", "online_dpo", data="online", overrides={"loss": {"beta": 0.1}}),
    Entry("online DPO (IPO loss)", "online_dpo_ipo", data="online", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("iterative DPO (3 rounds)", "iterative_dpo", data="online",
          overrides={"loss": {"beta": 0.5}, "online": {"epochs": 2}}, fast=False),
    Entry("Nash-MD-PG (mixture 0.125)", "nash_md", data="online", overrides={"loss": {"beta": 0.005}}),
    Entry("EGPO", "egpo", data="online", overrides={"loss": {"beta": 0.02}}),
    Entry("online IPO (OMD)", "online_ipo", data="online", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("DNO (3 rounds)", "dno", data="online", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("SPPO (3 rounds)", "sppo", data="online", overrides={"loss": {"beta": 0.1}}, fast=False),
    Entry("GPO (GPM judge)", "gpo", data="online", overrides={"loss": {"beta": 1.0}, "online": {"judge": "gpm"}},
          fast=False),
    Entry("P3O (BT reward)", "p3o", data="online", overrides={"loss": {"beta": 0.1}, "online": {"judge": "bt"}}),
    Entry("P3O (annotator win-rate)", "p3o", data="online", overrides={"loss": {"beta": 0.02}, "online": _WIN_RATE},
          fast=False),
    Entry("SuperHF (BT reward)", "superhf", data="online", overrides={"loss": {"beta": 0.1}, "online": {"judge": "bt"}},
          fast=False),
    Entry("GRAO (BT reward)", "grao", data="online", overrides={"train": {"lr": 3e-4}, "online": {"judge": "bt"}},
          fast=False),
    Entry("expert iteration (BT reward)", "expert_iteration", data="online",
          overrides={"train": {"lr": 3e-3}, "online": {"judge": "bt"}},
          fast=False),
    Entry("best-of-4 (BT reward)", "best_of_n", data="online", overrides={"online": {"judge": "bt"}}),
    Entry("best-of-4 (annotator win-rate)", "best_of_n", data="online", overrides={"online": _WIN_RATE}, fast=False),
    Entry("PPO (BT reward)", "ppo", data="online",
          overrides={"train": {"lr": 3e-4}, "online": {"judge": "bt", "preset": "alpacafarm_sim"}}, fast=False),
    Entry("pairwise PPO (annotators vs reference)", "pairwise_ppo", data="online", overrides={"train": {"lr": 3e-4}},
          fast=False),
    Entry("RLOO (BT reward)", "rloo", data="online", overrides={"online": {"judge": "bt"}}),
    Entry("GRPO (BT reward)", "grpo", data="online", overrides={"loss": {"beta": 0.2}, "online": {"judge": "bt"}},
          fast=False),
    Entry("Dr. GRPO (BT reward)", "dr_grpo", data="online", overrides={"train": {"lr": 3e-4}, "online": {"judge": "bt"}},
          fast=False),
    Entry("REINFORCE++ (BT reward)", "reinforce_pp", data="online",
          overrides={"train": {"lr": 1e-4}, "online": {"judge": "bt"}}, fast=False),
)
"""The online methods (sample -> judge -> update; docs/online.md). The judge is the world's
annotator pool (the one that labelled the offline pairs), or a preference model trained on those
``pairs`` (``online.judge`` ``bt``: a Bradley-Terry reward model; ``gpm``: a general preference
model). Each method gets the same budget (``DemoSettings.online_queries``, by default ``pairs``)
of annotator queries or, with a trained judge, of judge calls and reward evaluations, so its
number of steps is the budget over its cost per step; a trained judge's own cost is the
``pairs`` annotator labels it was fitted on. ``world-truth`` (the true preference) would be an
oracle and is never used here.
Learning rate (``DemoSettings.online_lr`` unless set here) and beta: the best of a grid (lr 1e-4,
3e-4, 1e-3, 3e-3; two betas) on the transitive world, seed 0, at the --fast budget
(benchmarks/RESULTS.md, "Online methods"; the reinforcement-learning baselines: a smaller grid,
"RL baselines"). PPO uses AlpacaFarm's settings (``online.preset=alpacafarm_sim``: KL coefficient
0.0067) and a separate critic; pairwise PPO judges each sample against a reference sample with the
annotator pool (0/1 labels: the reward is the label)."""


@dataclass(frozen=True)
class DemoSettings:
    """Everything shared by the demo's methods (per-method settings live in the entries).

    Equal label budgets: ``pairs`` pairwise labels for the pairwise methods and ``lists`` ranked
    lists of ``list_size`` (each costs ``K(K-1)/2`` pairwise labels) for the listwise ones.
    """

    world: str = "transitive"
    seed: int = 0
    fast: bool = False
    annotators: str | None = None
    """Annotator pool that labels the feedback (``prefkit.sim.annotators.POOLS``); ``None``: the
    world's own (``alpacafarm`` on transitive, ``clean`` on cyclic, ``length_biased`` on noisy)."""
    tiny: TinyConfig = field(default_factory=lambda: TinyConfig(hidden_size=64, layers=2, heads=4))
    sft_sequences_per_prompt: int = 8
    sft_steps: int = 600
    sft_lr: float = 3e-3
    pairs: int = 3000
    lists: int = 500
    list_size: int = 4
    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(prompts=120, samples=8, max_new_tokens=16))
    online_queries: int | None = None
    """Preference queries each online method may spend (``None``: ``pairs``, the offline budget)."""
    online_prompts_per_step: int = 32
    online_lr: float = 1e-3
    online_max_steps: int = 200
    """Cap on an online method's optimizer steps (its budget may allow more)."""

    @classmethod
    def preset(cls, world: str, fast: bool, seed: int = 0, annotators: str | None = None) -> DemoSettings:
        if fast:
            return cls(world=world, seed=seed, fast=True, annotators=annotators,
                       eval=EvalConfig(prompts=120, samples=4, max_new_tokens=16))
        return cls(world=world, seed=seed, annotators=annotators)


def _base_config(settings: DemoSettings, out: Path, method: str, steps: int, lr: float) -> RunConfig:
    return RunConfig(
        method=method,
        seed=settings.seed,
        out=str(out),
        tiny=settings.tiny,
        train=TrainConfig(steps=steps, batch_size=settings.batch_size, lr=lr, max_length=64,
                          log_every=10, warmup_steps=min(10, steps // 10)),
        eval=replace(settings.eval, world=settings.world),
    )


def _with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    if not overrides:
        return cfg
    data = to_dict(cfg)
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return from_dict(RunConfig, data)


@dataclass
class DemoContext:
    """Everything the methods share: the world, the reference and its samples, the data."""

    settings: DemoSettings
    out: Path
    world: Any
    reference: Policy
    ref_samples: Any
    pairs: list
    lists: list
    pool: dict[str, list[list[str]]] | None
    log: Callable[[str], None]
    preference_models: dict[str, Any] = field(default_factory=dict)
    """Preference models trained on ``pairs`` for the online entries that judge with one (by kind)."""


def prepare(settings: DemoSettings, out: Path, log: Callable[[str], None], progress: bool | None) -> DemoContext:
    """World, SFT reference, offline feedback, reference samples and (cyclic) candidate pool."""
    from prefkit.sim import make_world
    from prefkit.sim.evaluation import candidate_pool

    overrides = {"annotators": settings.annotators} if settings.annotators else {}
    world = make_world(settings.world, seed=settings.seed, **overrides)
    rng = np.random.default_rng(settings.seed)
    train_prompts = world.prompts("train")
    responses = world.base_responses(train_prompts, settings.sft_sequences_per_prompt, rng)
    sequences = [(p, y) for p, row in zip(train_prompts, responses) for y in row]
    texts = [*world.vocabulary(), *world.prompts("train"), *world.prompts("eval")]
    policy = Policy.tiny([" ".join(texts)], settings.tiny, seed=settings.seed)

    t0 = time.perf_counter()
    sft_dir = out / "sft"
    if (sft_dir / "metrics.json").is_file() and (sft_dir / "policy" / "config.json").is_file():
        policy = Policy.load(sft_dir / "policy", device="cpu")
        log(f"reference: the SFT model finished earlier in {sft_dir} (reused)")
    else:
        cfg = _base_config(settings, fresh_run_dir(sft_dir), "sft", settings.sft_steps, settings.sft_lr)
        cfg = replace(cfg, train=replace(cfg.train, schedule="cosine"))
        train(cfg, data=TrainData(sequences=sequences), policy=policy, progress=progress)
        log(f"reference: tiny Llama ({policy.num_parameters():,} parameters) fitted by SFT on "
            f"{len(sequences)} base responses in {time.perf_counter() - t0:.1f}s")
    reference = frozen_copy(policy)

    pairs = world.pairs(settings.pairs, rng)
    lists = world.lists(settings.lists, settings.list_size, rng)
    log(f"feedback: {len(pairs)} labelled pairs and {len(lists)} ranked lists of {settings.list_size} "
        f"from the '{world.name}' world's annotator pool")
    prompts = world.prompts("eval", settings.eval.prompts)
    ref_samples = sample_texts(reference, prompts, settings.eval, settings.seed + 1)
    pool = None
    if getattr(world.config, "cyclic_strength", 0.0) > 0:
        pool = candidate_pool(world, prompts, settings.eval.samples, np.random.default_rng(settings.seed + 7))
    return DemoContext(settings, out, world, reference, ref_samples, pairs, lists, pool, log)


def run_entry(ctx: DemoContext, entry: Entry, progress: bool | None) -> dict[str, Any]:
    """Train one method from the reference and evaluate it; one leaderboard row."""
    if entry.data == "online":
        return run_online_entry(ctx, entry, progress)
    s = ctx.settings
    cfg = _with_overrides(_base_config(s, fresh_run_dir(ctx.out / "runs" / entry.method), entry.method, s.steps,
                                       s.lr), entry.overrides)
    policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
    t0 = time.perf_counter()
    if entry.data == "lists":
        data, queries = TrainData(lists=ctx.lists), sum(len(r.responses) * (len(r.responses) - 1) // 2 for r in ctx.lists)
    else:
        data, queries = TrainData(pairs=ctx.pairs), len(ctx.pairs)
    result = train(cfg, data=data, policy=policy, reference=ctx.reference, progress=progress)
    seconds = time.perf_counter() - t0
    evaluation, _ = evaluate_on_world(result.policy, ctx.reference, ctx.world, cfg.eval, seed=s.seed + 2,
                                      ref_samples=ctx.ref_samples, pool=ctx.pool)
    row = {
        "method": entry.label,
        "name": entry.method,
        "win_rate": evaluation.win_rate,
        "win_rate_se": evaluation.win_rate_se,
        "kl": evaluation.kl,
        "kl_se": evaluation.kl_se,
        "seconds": seconds,
        "queries": queries,
        "mean_utility": evaluation.mean_utility,
    }
    if evaluation.exploitability is not None:
        row.update(exploitability=evaluation.exploitability, exploitability_se=evaluation.exploitability_se)
    return row


def online_config(settings: DemoSettings, entry: Entry, out: Path) -> tuple[RunConfig, Any]:
    """An online entry's run configuration, its steps set by the query budget, and its recipe."""
    from prefkit.engine.methods import get_method
    from prefkit.engine.online.methods import feedback_per_step, resolve_recipe

    s = settings
    shared = {"online": {"prompts_per_step": s.online_prompts_per_step, "max_new_tokens": s.eval.max_new_tokens}}
    overrides = {**entry.overrides, "online": {**shared["online"], **entry.overrides.get("online", {})}}
    probe = _with_overrides(_base_config(s, out, entry.method, 1, s.online_lr), overrides)
    recipe = resolve_recipe(get_method(entry.method), probe.online)
    queries, evals = feedback_per_step(recipe, probe.online, scalar_reward=probe.online.judge == "bt")
    budget = s.online_queries if s.online_queries is not None else s.pairs
    steps = min(s.online_max_steps, max(1, round(budget / max(queries + evals, 1e-9))))
    steps = max(steps, recipe.iterations or 1)
    return _with_overrides(_base_config(s, out, entry.method, steps, s.online_lr), overrides), recipe


def run_online_entry(ctx: DemoContext, entry: Entry, progress: bool | None) -> dict[str, Any]:
    """Train one online method from the reference against the world's annotator pool (or, where an
    entry says so, its true preference) and evaluate it like the offline rows."""
    from prefkit.engine import train
    from prefkit.engine.online.judge import OnlineJudge
    from prefkit.engine.online.rollout import Sampler
    from prefkit.engine.online.train import best_of_n_kl, best_of_n_texts
    from prefkit.preference import WorldJudge
    from prefkit.sim.evaluation import evaluate

    s = ctx.settings
    run_name = entry.method + ("" if cfg_judge(entry) in ("world", "world-truth") else f"_{cfg_judge(entry)}")
    cfg, recipe = online_config(s, entry, fresh_run_dir(ctx.out / "runs" / run_name))
    t0 = time.perf_counter()
    if cfg.online.judge in ("world", "world-truth"):
        kind = "truth" if cfg.online.judge == "world-truth" else "annotators"
        judge: Any = WorldJudge(ctx.world, kind=kind, seed=s.seed + 11)
        labels = None
    else:
        judge, labels = demo_preference_model(ctx, cfg.online.judge, progress), len(ctx.pairs)
    if recipe.objective == "best_of_n":
        counted = OnlineJudge(judge, reward=cfg.online.reward)
        sampler = Sampler(ctx.reference, max_new_tokens=cfg.online.max_new_tokens)
        prompts = ctx.world.prompts("eval", s.eval.prompts)
        picks = best_of_n_texts(sampler, counted, prompts, s.eval.samples, recipe.samples_per_prompt,
                                seed=s.seed + 2, temperature=s.eval.temperature)
        evaluation = evaluate(ctx.world, prompts, picks, ctx.ref_samples.texts, pool=ctx.pool)
        kl, kl_se, steps = best_of_n_kl(recipe.samples_per_prompt), 0.0, 0
        queries, reward_evals = counted.queries, counted.reward_evals
        samples = sampler.stats.responses
    else:
        policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
        result = train(cfg, data=TrainData(prompts=ctx.world.prompts("train")),
                              policy=policy, reference=ctx.reference, progress=progress, judge=judge)
        evaluation, _ = evaluate_on_world(result.policy, ctx.reference, ctx.world, cfg.eval, seed=s.seed + 2,
                                          ref_samples=ctx.ref_samples, pool=ctx.pool)
        kl, kl_se, steps = evaluation.kl, evaluation.kl_se, result.metrics["steps"]
        queries, reward_evals = result.metrics["queries"], result.metrics["reward_evals"]
        samples = result.metrics["samples"]
    judge_calls = 0
    if labels is not None:  # a trained judge: the budget it consumed is the labels it was fitted on
        judge_calls, queries = queries, labels
    row = {
        "method": entry.label,
        "name": entry.method,
        "win_rate": evaluation.win_rate,
        "win_rate_se": evaluation.win_rate_se,
        "kl": kl,
        "kl_se": kl_se,
        "seconds": time.perf_counter() - t0,
        "queries": queries,
        "mean_utility": evaluation.mean_utility,
        "online": True,
        "steps": steps,
        "samples": samples,
        "judge": getattr(judge, "name", None) or f"{cfg.online.judge} trained on {labels} annotator pairs",
    }
    if reward_evals:
        row["reward_evals"] = reward_evals
    if judge_calls:
        row["judge_calls"] = judge_calls
    if recipe.objective == "best_of_n":
        row["kl_is_bound"] = True
    if evaluation.exploitability is not None:
        row.update(exploitability=evaluation.exploitability, exploitability_se=evaluation.exploitability_se)
    return row


def cfg_judge(entry: Entry) -> str:
    return entry.overrides.get("online", {}).get("judge", "world")


def demo_preference_model(ctx: DemoContext, kind: str, progress: bool | None = None) -> Any:
    """A ``bt`` or ``gpm`` preference model fitted on the demo's annotator pairs (once per demo).

    The recipe of benchmarks/preference_noise.py's text runs: a tiny Llama backbone (hidden 32, one
    layer), 300 steps of 32 pairs; lr 3e-3 for BT, 1e-3 for GPM (``dim=4``, ``tau=0.1``), which
    collapses at higher rates on text (benchmarks/RESULTS.md, preference models).
    """
    if kind not in ("bt", "gpm"):
        raise ValueError(f"demo online judges are world, world-truth, bt or gpm; got {kind!r}")
    if kind not in ctx.preference_models:
        from prefkit.config import RewardModelConfig
        from prefkit.engine.preference.train import train_preference_model

        s = ctx.settings
        cfg = RunConfig(method="dpo", model="tiny", seed=s.seed, out=str(fresh_run_dir(ctx.out / "preference" / kind)),
                        tiny=TinyConfig(hidden_size=32, layers=1, heads=2),
                        train=TrainConfig(steps=300, batch_size=32, lr=3e-3 if kind == "bt" else 1e-3,
                                          max_length=64, log_every=50),
                        rm=RewardModelConfig(kind=kind, dim=4))
        t0 = time.perf_counter()
        trained = train_preference_model(cfg, records=ctx.pairs, progress=progress, save=False)
        ctx.preference_models[kind] = trained.model
        ctx.log(f"judge: a {kind.upper()} preference model fitted on the {len(ctx.pairs)} annotator pairs "
                f"(train accuracy {trained.metrics.get('train_accuracy') or float('nan'):.3f}) in "
                f"{time.perf_counter() - t0:.1f}s")
    return ctx.preference_models[kind]


def reference_row(ctx: DemoContext) -> dict[str, Any]:
    """The reference itself: win-rate 1/2 and KL 0 by definition; its exploitability on cyclic worlds."""
    row = {"method": "reference (SFT)", "name": "reference", "win_rate": 0.5, "win_rate_se": 0.0,
           "kl": 0.0, "kl_se": 0.0, "seconds": 0.0, "queries": 0}
    if ctx.pool:
        from prefkit.sim.evaluation import evaluate

        prompts = ctx.world.prompts("eval", ctx.settings.eval.prompts)
        ev = evaluate(ctx.world, prompts, ctx.ref_samples.texts, ctx.ref_samples.texts, pool=ctx.pool)
        row.update(exploitability=ev.exploitability, exploitability_se=ev.exploitability_se)
    return row


def entries(fast: bool, extra: Sequence[Entry] = ()) -> list[Entry]:
    return [e for e in (*OFFLINE, *extra) if e.fast or not fast]


def run_demo(
    world: str = "transitive",
    *,
    out: str | Path = "runs/demo",
    fast: bool = False,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    settings: DemoSettings | None = None,
    overwrite: bool = False,
    annotators: str | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Run the demo and write the leaderboard files; returns the leaderboard rows.

    ``settings`` replaces the preset chosen by ``world``/``fast``/``seed``/``annotators`` (tests use
    a small one).
    An ``out`` that already holds files is refused unless ``overwrite``; then only a directory that
    holds an earlier demo (its ``demo.yaml``) is cleared, never an arbitrary one. ``resume``
    continues an interrupted demo with the same settings: finished stages (the SFT reference, each
    method's evaluated row in ``rows/``) are reused and unfinished ones are run again from scratch.
    """
    out = Path(out)
    settings = settings or DemoSettings.preset(world, fast, seed, annotators)
    if resume:
        check_resumable(out, settings)
    else:
        prepare_out_dir(out, overwrite)
        save_yaml(settings, out / "demo.yaml")
    start = time.perf_counter()
    ctx = prepare(settings, out, log, progress)
    rows = [reference_row(ctx)]
    todo = [e for e in entries(settings.fast, ONLINE) if methods is None or e.method in methods or e.label in methods]
    for entry in todo:
        saved = row_path(out, entry)
        if saved.is_file():
            row = json.loads(saved.read_text(encoding="utf-8"))
            log(f"{row['method']:>20s}: finished earlier (reused from {saved})")
        else:
            row = run_entry(ctx, entry, progress)
            atomic_write_text(saved, json.dumps(row))
            log(f"{row['method']:>20s}: win-rate {row['win_rate']:.3f} ± {row['win_rate_se']:.3f}, "
                f"KL {row['kl']:.2f}, {row['seconds']:.1f}s")
        rows.append(row)
    label = settings.world + (f", annotators {settings.annotators}" if settings.annotators else "")
    write_leaderboard(rows, out, world=label, total_s=time.perf_counter() - start)
    return rows


def row_path(out: Path, entry: Entry) -> Path:
    """Where a method's evaluated leaderboard row is kept (its presence marks the entry finished)."""
    slug = "".join(c if c.isalnum() else "_" for c in entry.label).strip("_")
    return out / "rows" / f"{entry.method}__{slug}.json"


def check_resumable(out: Path, settings: DemoSettings) -> None:
    saved = out / "demo.yaml"
    if not saved.is_file():
        raise ValueError(f"[out]: {out} holds no demo to resume (no demo.yaml); run without --resume")
    if from_dict(DemoSettings, load_yaml(saved)) != settings:
        raise ValueError(f"[out]: the demo in {out} was started with other settings ({saved}); resume it with "
                         "the same --world/--fast/--seed/--annotators, or pass --overwrite to start over")


def fresh_run_dir(path: Path) -> Path:
    """A stage left by an interrupted demo is run again from scratch."""
    if path.exists():
        shutil.rmtree(path)
    return path


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"[out]: {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"[out]: {out} is not empty; pass --overwrite to replace an earlier demo there, "
                             "or choose another --out")
        if not (out / "demo.yaml").is_file():
            raise ValueError(f"[out]: {out} holds files but no demo.yaml; refusing to clear a directory "
                             "that is not an earlier demo's")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_leaderboard(rows: list[dict[str, Any]], out: Path, *, world: str, total_s: float) -> None:
    ranked = sorted(rows, key=lambda r: -r["win_rate"])
    (out / "leaderboard.json").write_text(json.dumps(ranked, indent=2), encoding="utf-8")
    cyclic = any("exploitability" in r for r in rows)
    header = "| rank | method | win-rate vs reference (± SE) | KL(π‖ref) | " + (
        "exploitability | " if cyclic else "") + "preference queries | samples | seconds |"
    lines = [f"# prefkit demo: world '{world}' ({total_s:.0f}s in all)", "", header,
             "|" + "---|" * (header.count("|") - 1)]
    for i, r in enumerate(ranked, 1):
        expl = f"{r['exploitability']:.3f} | " if "exploitability" in r else ("– | " if cyclic else "")
        lines.append(f"| {i} | {r['method']} | {r['win_rate']:.3f} ± {r['win_rate_se']:.3f} | {r['kl']:.2f} | "
                     f"{expl}{r['queries']} | {r.get('samples', '–')} | {r['seconds']:.1f} |")
    lines += ["", "Win-rate and exploitability are expectations under the world's true preference P* "
              "over sampled responses (not noisy labels); KL is the Monte-Carlo estimate "
              "E_y~π[log π(y|x) − log π_ref(y|x)] on the same samples. Preference queries: annotator "
              "labels (a trained judge's are the pairs it was fitted on); samples: responses an online "
              "method drew while training (best-of-n: at evaluation)."]
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_leaderboard(ranked, out / "leaderboard.png", world=world)


def plot_leaderboard(rows: list[dict[str, Any]], path: Path, *, world: str) -> None:
    """Win-rate against KL, one marker per method (shape by family), each numbered by its rank
    (rows come ranked); the legend beside the axes lists every method with its win-rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    online = {e.label for e in ONLINE}
    lists = {e.label for e in OFFLINE if e.data == "lists"}
    colors = plt.get_cmap("tab20").colors
    fig, ax = plt.subplots(figsize=(12, max(5.0, 0.2 * len(rows) + 1.0)))
    for rank, r in enumerate(rows, 1):
        marker = "*" if r["name"] == "reference" else "^" if r["method"] in online else "s" if r["method"] in lists else "o"
        ax.errorbar(r["kl"], r["win_rate"], yerr=r["win_rate_se"], xerr=r.get("kl_se") or 0, fmt=marker,
                    color=colors[rank % len(colors)], capsize=3, markersize=9 if marker == "*" else 6,
                    label=f"{rank}. {r['method']} ({r['win_rate']:.2f})")
        ax.annotate(str(rank), (r["kl"], r["win_rate"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("KL(policy ‖ reference) [nats]")
    ax.set_ylabel("win-rate against the reference under P*")
    ax.set_title(f"prefkit demo on the '{world}' world (○ pairs, □ lists, △ online; numbers = rank)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
