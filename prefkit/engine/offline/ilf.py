"""ILF (``prefkit train --method ilf``): rounds of refine -> select -> SFT on the run driver.

Imitation learning from Language Feedback (Scheurer et al. 2023, arXiv 2303.16755; algorithms.md
§11b). Each round, for every (prompt, answer, critique):

1. **refine**: ``ilf.refinements`` (N) refinements ``y1 ~ refiner(x, y0, f)``;
2. **select**: the refinement that best incorporates the feedback, scored by ``ilf.selector`` —
   an LLM asked ILF's question ("Does this new answer incorporate the feedback provided?",
   ``prefkit.llm.ilf.incorporation_scores``, five templates) or, on the simulated world, the
   ground truth ``prefkit.sim.critiques.incorporation`` (the fraction of the critique's issues
   gone);
3. **SFT** on (prompt, selected refinement): token-level NLL of the response, as ``--method sft``.

Round 1 refines the critiques of ``--data`` (``prompt``/``completion``/``critique``,
``prefkit.data.critiques``) or, without a file, the world critic's critiques of base responses;
every later round samples a fresh answer per prompt from the policy as it is at the round's
start and asks the world critic for feedback on it (several rounds need ``--world``).
``train.steps`` is split evenly over ``ilf.rounds``; the policy and the optimizer carry over
from round to round (one run, one learning-rate schedule).

Refiners and selectors: ``world`` (the world's imperfect rule-based refiner,
``prefkit.sim.critiques.refine`` with ``ilf.skill``/``ilf.slip``, and the ground-truth selector),
``policy`` (the policy being trained, through ``prefkit.llm.HFBackend``) or ``llm:SPEC`` (any
``prefkit.llm`` backend: ``llm:DIR``, ``llm:openai:MODEL``). The world refiner applies the
structured critiques the world writes (their ``issues`` column); a free-text critique needs an LLM.

Resume: a round's selected examples and its statistics are part of the step shape's state, so a
killed run continues (``--resume``) from its last checkpoint inside the round without redoing the
round's refinements; every round's refinements, scores and selection are written to
``ilf/round-K.jsonl`` (atomically) for inspection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prefkit._atomic import atomic_write_text
from prefkit.config import RunConfig
from prefkit.data import check_batch_size
from prefkit.data.critiques import CritiqueRecord
from prefkit.engine.data import TrainData, batch_indices, require_plain_file
from prefkit.engine.methods import Method
from prefkit.engine.models import (
    build_policy,
    initial_reference,
    lora_summary,
    prepare_for_training,
    save_policy_outputs,
    with_lora,
)
from prefkit.engine.offline.examples import SequenceExamples, tokenize_sequences
from prefkit.engine.offline.shapes import SFTShape, split
from prefkit.engine.run import MicroBatch, RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import Policy

# ----------------------------------------------------------------------------- refiners and selectors

@dataclass
class Round:
    """One round's feedback, refinements, scores and selection."""

    rows: list[CritiqueRecord]
    refinements: list[list[str]]
    scores: list[np.ndarray]
    selected: list[int]
    truth: list[np.ndarray] | None = None
    """The world's ground-truth incorporation of every refinement (when a world is known)."""

    def stats(self) -> dict[str, float]:
        chosen = [float(s[i]) for s, i in zip(self.scores, self.selected)]
        out = {"critiques": float(len(self.rows)), "refinements": float(sum(len(r) for r in self.refinements)),
               "selected_score": float(np.mean(chosen)), "mean_score": float(np.mean(np.concatenate(self.scores)))}
        if self.truth is not None:
            out["selected_incorporation"] = float(np.mean([t[i] for t, i in zip(self.truth, self.selected)]))
            out["mean_incorporation"] = float(np.mean(np.concatenate(self.truth)))
        return out


def world_critique(world: Any, row: CritiqueRecord) -> Any:
    """The structured :class:`prefkit.sim.critiques.Critique` behind a critique row the world wrote:
    the issues of its completion whose kinds the row lists; a row the world did not write (no
    ``issues`` column, or a text the issues do not reproduce) is an ``InputError`` naming it."""
    from prefkit.sim.critiques import NO_ISSUES, Critique, find_issues

    file, line = row.source if row.source else (None, None)
    if row.issues is None:
        raise InputError("ilf.refiner=world applies the structured critiques the world writes (an 'issues' "
                         "column); for free-text feedback use ilf.refiner=policy or llm:SPEC", file=file, line=line,
                         field="issues")
    kinds = set(row.issues)
    issues = tuple(i for i in find_issues(world, str(row.prompt), str(row.completion)) if i.kind in kinds)
    text = " ".join(i.sentence() for i in issues) if issues else NO_ISSUES
    if text != row.critique:
        raise InputError("the critique is not what this world's critic writes for this completion (another world "
                         "or seed?); the world refiner cannot apply it: use ilf.refiner=policy or llm:SPEC",
                         file=file, line=line, field="critique")
    return Critique(text, issues)


class Refiners:
    """The refiner and selector a run asks (see the module docstring)."""

    def __init__(self, cfg: RunConfig, policy: Policy, world: Any | None) -> None:
        self.cfg, self.policy, self.world = cfg, policy, world
        self._backends: dict[str, Any] = {}
        ilf = cfg.ilf
        for role in ("refiner", "selector"):
            if getattr(ilf, role) == "world" and world is None:
                raise InputError(f"ilf.{role}=world asks the simulated world: name it with --world, or use "
                                 f"ilf.{role}=policy or llm:SPEC", field=f"ilf.{role}")

    def backend(self, spec: str) -> Any:
        if spec not in self._backends:
            if spec == "policy":
                from prefkit.llm.hf import HFBackend

                self._backends[spec] = HFBackend(self.policy, name="the trained policy")
            else:
                from prefkit.llm.config import LLMConfig, make_backend

                self._backends[spec] = make_backend(spec[len("llm:"):], LLMConfig.from_env(device=self.cfg.train.device),
                                                    trust_remote_code=self.cfg.trust_remote_code)
        return self._backends[spec]

    def refine(self, rows: Sequence[CritiqueRecord], seed: int) -> list[list[str]]:
        ilf = self.cfg.ilf
        if ilf.refiner == "world":
            from prefkit.sim.critiques import refine

            out = []
            for k, row in enumerate(rows):
                critique = world_critique(self.world, row)
                rng = np.random.default_rng([seed, k])
                out.append([refine(self.world, str(row.prompt), str(row.completion), critique, rng, skill=ilf.skill,
                                   slip=ilf.slip) for _ in range(ilf.refinements)])
            return out
        from prefkit.llm.ilf import refine

        return refine(self.backend(ilf.refiner), rows, n=ilf.refinements, temperature=ilf.temperature,
                      max_tokens=ilf.max_new_tokens, seed=seed)

    def truth(self, rows: Sequence[CritiqueRecord], refinements: Sequence[Sequence[str]]) -> list[np.ndarray] | None:
        """The world's ground-truth incorporation scores (``None`` without a world)."""
        if self.world is None:
            return None
        from prefkit.sim.critiques import incorporation

        out = []
        for row, candidates in zip(rows, refinements):
            critique = world_critique(self.world, row)
            out.append(np.array([incorporation(self.world, str(row.prompt), y, critique) for y in candidates]))
        return out

    def select(self, rows: Sequence[CritiqueRecord], refinements: Sequence[Sequence[str]],
               truth: list[np.ndarray] | None) -> tuple[list[np.ndarray], list[int]]:
        from prefkit.llm.ilf import incorporation_scores, select

        if self.cfg.ilf.selector == "world":
            assert truth is not None
            scores = truth
        else:
            scores = incorporation_scores(self.backend(self.cfg.ilf.selector), rows, refinements)
        picks = select(refinements, scores)
        return scores, [i for i, _ in picks]


# ----------------------------------------------------------------------------- the step shape

class ILFShape(SFTShape):
    """SFT on each round's selected refinements; a round is built at its first step from the
    policy as it is then (see the module docstring)."""

    def __init__(self, session: RunSession, policy: Policy, rows: list[CritiqueRecord], refiners: Refiners, *,
                 label: str) -> None:
        cfg = session.cfg
        self.rounds = cfg.ilf.rounds
        if self.rounds > cfg.train.steps:
            raise InputError(f"ilf.rounds ({self.rounds}) cannot exceed train.steps ({cfg.train.steps}): every round "
                             "trains at least one step", field="ilf.rounds")
        empty = SequenceExamples([], [], 0)
        super().__init__(session, policy, empty, label=label)
        self.first_rows, self.refiners = rows, refiners
        self.steps = cfg.train.steps
        self.round_index: int | None = None
        self.round_stats: list[dict[str, float]] = []
        self.truncated = 0

    def round_start(self, r: int) -> int:
        return -(-r * self.steps // self.rounds)

    def round_of(self, step: int) -> int:
        return step * self.rounds // self.steps

    def feedback(self, r: int) -> list[CritiqueRecord]:
        """Round ``r``'s critiques: the data's for the first round, else the world critic's of the
        policy's own answers (one per prompt) sampled now."""
        if r == 0:
            return self.first_rows
        world = self.refiners.world
        if world is None:
            raise InputError("ILF rounds after the first critique the policy's own answers with the world's critic: "
                             "give --world, or set ilf.rounds=1", field="ilf.rounds")
        from prefkit.sim.critiques import critique

        cfg = self.session.cfg
        prompts = [row.prompt for row in self.first_rows]
        generator = torch.Generator(device=self.policy.device).manual_seed(cfg.seed * 1_000_003 + r)
        with torch.no_grad():
            samples = self.policy.sample(prompts, 1, max_new_tokens=cfg.ilf.max_new_tokens, temperature=1.0,
                                         generator=generator)
        rng = np.random.default_rng([cfg.seed, 17, r])
        out = []
        for k, (prompt, (answer,)) in enumerate(zip(prompts, samples.texts)):
            c = critique(world, str(prompt), answer, rng, recall=cfg.ilf.recall)
            out.append(CritiqueRecord(prompt, answer, c.text, c.kinds, "world critic", source=(f"round-{r + 1}", k + 1)))
        return out

    def start_round(self, r: int) -> None:
        cfg = self.session.cfg
        began = time.perf_counter()
        rows = self.feedback(r)
        refinements = self.refiners.refine(rows, cfg.seed * 7_919 + r)
        truth = self.refiners.truth(rows, refinements)
        scores, selected = self.refiners.select(rows, refinements, truth)
        done = Round(rows, refinements, scores, selected, truth)
        picked = [refinements[k][i] for k, i in enumerate(selected)]
        keep = [k for k, y in enumerate(picked) if y.strip()]
        if not keep:
            raise InputError(f"ILF round {r + 1}: every selected refinement is empty; nothing to fine-tune on "
                             "(check the refiner: ilf.refiner, ilf.max_new_tokens)", field="ilf.refiner")
        self.examples = tokenize_sequences(self.policy, [rows[k].prompt for k in keep], [picked[k] for k in keep],
                                           cfg.train, [rows[k].source for k in keep])
        check_batch_size(cfg.train.batch_size, len(self.examples), what=f"selected refinements of round {r + 1}",
                         file=cfg.data.path)
        self.truncated += self.examples.truncated
        stats = {"round": float(r + 1), **done.stats(), "empty_selected": float(len(picked) - len(keep)),
                 "seconds": time.perf_counter() - began}
        self.round_stats = [s for s in self.round_stats if s["round"] != r + 1] + [stats]
        self.round_index = r
        self.session.on_main(lambda: write_round(self.session.out, r, done))

    def micro_batches(self, step: int) -> list[MicroBatch]:
        r = self.round_of(step)
        if self.round_index != r:
            self.start_round(r)
        index = batch_indices(len(self.examples), self.train.batch_size, step - self.round_start(r),
                              self.seed * 1_000_003 + 7_919 * r, self.train.shuffle)
        out = []
        for rows in split(self.session.shard(index), self.train.grad_accum):
            batch = self.examples.batch(rows, self.train, self.pad_id, self.keep_bos)
            out.append(MicroBatch(float(batch.response_mask[:, 1:].sum()), batch))
        return out

    def counters(self) -> dict[str, float]:
        """The current round's statistics (``ilf/...``; one process, so nothing is summed)."""
        if not self.round_stats:
            return {}
        last = self.round_stats[-1]
        return {f"ilf/{k}": v for k, v in last.items() if k != "seconds"}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"stats": self.round_stats, "truncated": self.truncated}
        if self.round_index is not None:
            state["round"] = {"index": self.round_index, "prompt_ids": self.examples.prompt_ids,
                              "response_ids": self.examples.response_ids, "truncated": self.examples.truncated}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round_stats = [{k: float(v) for k, v in s.items()} for s in state["stats"]]
        self.truncated = int(state["truncated"])
        if "round" in state:
            saved = state["round"]
            self.round_index = int(saved["index"])
            self.examples = SequenceExamples([list(x) for x in saved["prompt_ids"]],
                                             [list(x) for x in saved["response_ids"]], int(saved["truncated"]))


def write_round(out: Any, r: int, done: Round) -> None:
    lines = []
    for k, row in enumerate(done.rows):
        entry: dict[str, Any] = {**row.to_json(), "refinements": done.refinements[k],
                                 "scores": [float(x) for x in done.scores[k]], "selected": int(done.selected[k])}
        if done.truth is not None:
            entry["incorporation"] = [float(x) for x in done.truth[k]]
        lines.append(json.dumps(entry, ensure_ascii=False))
    (out / "ilf").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ilf" / f"round-{r + 1}.jsonl", "".join(x + "\n" for x in lines))


# ----------------------------------------------------------------------------- the run

def first_round_rows(cfg: RunConfig, data: TrainData | None, world: Any | None) -> list[CritiqueRecord]:
    """Round 1's critiques: in memory (``TrainData.sources`` holding ``CritiqueRecord`` rows is not
    used; pass ``critiques=``), the ``--data`` file, or the world critic's on ``ilf.prompts`` base
    responses."""
    from prefkit.data import read_options
    from prefkit.data.critiques import read_critiques

    require_plain_file(cfg, "--method ilf (a critiques file)")
    if cfg.data.path is not None:
        rows, _ = read_critiques(cfg.data.path, **read_options(cfg.data))
        return rows
    if world is None:
        raise InputError("ILF needs critiques: --data FILE (prompt/completion/critique) or --world NAME (the world "
                         "critic's critiques of base responses)", field="data.path")
    from prefkit.sim.critiques import critique_rows

    rng = np.random.default_rng([cfg.seed, 29])
    made = critique_rows(world, cfg.ilf.prompts, rng, recall=cfg.ilf.recall)
    return [CritiqueRecord(r["prompt"], r["completion"], r["critique"], list(r["issues"]), r["annotator"],
                           source=(f"world {world.name}", k + 1)) for k, r in enumerate(made)]


def run_ilf(session: RunSession, method: Method, *, data: TrainData | None, policy: Policy | None,
            reference: Policy | None, evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None,
            progress: bool | None, critiques: Sequence[CritiqueRecord] | None = None) -> TrainResult:
    """Train ILF (see the module docstring) and write the run's outputs (``policy/``, ``ilf/``,
    ``metrics.json`` with every round's statistics). ``critiques`` gives round 1's rows in memory."""
    cfg = session.cfg
    if session.world > 1:
        raise InputError("ILF builds each round's refinements in one process; run it without torchrun/accelerate "
                         "launch (one process)", field="train.device")
    world = None
    if cfg.eval.world:
        from prefkit.sim import make_world

        world = make_world(cfg.eval.world, seed=cfg.seed)
    rows = list(critiques) if critiques is not None else first_round_rows(cfg, data, world)
    if not rows:
        raise InputError("no critiques to refine", field="data.path")
    setup_start = time.perf_counter()
    reference_given = reference is not None
    loaded_from_model = policy is None
    if policy is None:
        texts = [t for r in rows for t in (str(r.prompt), str(r.completion), r.critique)]
        if world is not None:
            texts += world.vocabulary()
        if "policy" in (cfg.ilf.refiner, cfg.ilf.selector):
            from prefkit.llm.ilf import REFINE_PROMPT, SELECT_TEMPLATES

            texts += [REFINE_PROMPT, *SELECT_TEMPLATES, "Yes No"]
        policy = build_policy(cfg, texts, session.device, session.model_dtype)
    else:
        policy = with_lora(cfg, policy)
    prepare_for_training(cfg, policy.model)
    save_reference = not cfg.ref_model and (cfg.model == "tiny" or reference_given)
    if reference is None and (evaluate is not None or save_reference):
        reference = initial_reference(policy)
    refiners = Refiners(cfg, policy, world)
    shape = ILFShape(session, policy, rows, refiners, label=method.name)
    setup_s = time.perf_counter() - setup_start
    world_eval = (lambda step: evaluate(policy, reference, step)) if evaluate is not None else None
    fit = session.fit(shape, policy.model, label=method.name, evaluate=world_eval, progress=progress)
    session.on_main(lambda: save_policy_outputs(cfg, session.out, policy, reference,
                                                loaded_from_model=loaded_from_model, save_reference=save_reference,
                                                state_dict=session.state_dict))
    summary = session.finish({
        **fit.summary(method.name),
        "setup_s": setup_s,
        "rounds": [{k: (int(v) if k in ("round", "critiques", "refinements", "empty_selected") else v)
                    for k, v in s.items()} for s in shape.round_stats],
        "critiques": int(sum(s["critiques"] for s in shape.round_stats)),
        "refiner": cfg.ilf.refiner,
        "selector": cfg.ilf.selector,
        "truncated_rows": shape.truncated,
        "processes": session.world,
        **lora_summary(policy.model),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    })
    return TrainResult(policy=policy, metrics=summary, history=fit.history)

