"""The online step shape: rounds of sample -> judge, then updates (the driver,
``prefkit.engine.run``, owns the optimisation).

A *round* samples and judges its prompts from the policy as it is at the round's start, then
trains ``epochs`` passes over the rows it built. With ``online.iterations`` unset every
optimizer step is its own round (per-step online); with ``iterations=T`` the run has T rounds
(batched-iterative: iterative DPO, DNO, SPPO, expert iteration), and ``ref_update=previous``
makes the loss's reference the policy at each round's start. Which prompts a step or round
sees and every sampling seed are pure functions of ``(seed, step)``; a round's rows, the judge's
state and the budget counters travel in the checkpoint, so ``--resume`` continues mid-round.

The reinforcement-learning baselines (PPO, RLOO, GRPO, REINFORCE++, pairwise PPO) use the same
rounds: a round is a rollout batch, ``epochs`` passes of minibatch steps over it are PPO's epochs;
their rows carry per-token arrays, the objective's ``finish`` computes the advantages once per
round and the micro-batches declare the units of the token loss's reduction
(``prefkit.engine.online.tokens``).

EGPO's extragradient step (Zhou, Fazel & Du 2025; the official ``extragradient_trainer``):
gradient of the online-IPO loss at theta_t with opponents from pi_t, an optimizer step to
theta_{t+1/2}, fresh opponents from pi_{t+1/2}, then parameters *and optimizer state* are
restored to theta_t and the gradient with the new targets is applied (the driver does the
half step; this shape's ``refresh`` recomputes the targets).

Several processes: ``online.prompts_per_step`` is the global number of prompts per step; each
rank samples and judges its contiguous share with its own seeds (``seed_of`` shifted by the
rank, reproducible), and the driver normalises the loss by the rows of all ranks.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from prefkit.config import RunConfig
from prefkit.data.records import Text
from prefkit.engine.data import batch_indices
from prefkit.engine.losses import ResolvedLoss
from prefkit.engine.metrics import MetricSums
from prefkit.engine.online.objectives import BuildContext, Forward, OnlineObjective, Rows
from prefkit.engine.online.tokens import token_empty_loss, token_loss, token_units
from prefkit.engine.run import LossOutput, MicroBatch, RunSession, StepShape
from prefkit.policy import sequence_logps


class NoPreferenceSignalError(ValueError):
    """No prompt of the run's rounds so far gave a preference signal (identical samples, ties)."""


def seed_of(seed: int, batch: int, salt: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + batch * 7_919 + salt * 104_729 + rank * 1_000_000_007) % (2**62)


class OnlineShape(StepShape):
    """State and micro-batches of one online run (see the module docstring)."""

    def __init__(self, session: RunSession, objective: OnlineObjective, loss: ResolvedLoss, ctx: BuildContext,
                 prompts: Sequence[Text], *, label: str) -> None:
        if not prompts:
            raise ValueError("online training needs at least one prompt; the prompt set is empty")
        cfg: RunConfig = session.cfg
        self.session, self.cfg, self.objective, self.loss_fn, self.ctx = session, cfg, objective, loss, ctx
        self.label = label
        self.prompts = list(prompts)
        self.per_batch = session.require_batch(cfg.online.prompts_per_step, "online.prompts_per_step")
        self.extragradient = ctx.recipe.extragradient
        self.fixed_micro_batches = False
        self.steps = cfg.train.steps
        self.rounds = ctx.recipe.iterations or self.steps
        if self.rounds > self.steps:
            raise ValueError(f"online.iterations ({self.rounds}) cannot exceed train.steps ({self.steps})")
        self.epochs = cfg.online.epochs if ctx.recipe.iterations else 1
        self.per_step = self.rounds == self.steps
        self.round_index: int | None = None
        self.round_rows: Rows | None = None
        self.compute_s = 0.0
        self.empty_steps = 0
        self.rows_seen = 0
        self.rows_built = 0
        self.warned_empty = False
        self.clock: float | None = None
        self.step_rows: Rows | None = None
        self.step_row_count = 0
        self.exact_kl = ctx.recipe.exact_kl and float(loss.kwargs.get("beta", loss.spec.defaults.get("beta", 0))) > 0

    # -- round geometry -------------------------------------------------------------------------

    def round_start(self, r: int) -> int:
        return -(-r * self.steps // self.rounds)

    def round_of(self, step: int) -> int:
        return step * self.rounds // self.steps

    def batches_in(self, r: int) -> int:
        return -(-(self.round_start(r + 1) - self.round_start(r)) // self.epochs)

    def first_batch(self, r: int) -> int:
        if self.per_step:
            return r
        return sum(self.batches_in(q) for q in range(r))

    # -- rounds ---------------------------------------------------------------------------------

    def start_round(self, r: int) -> Rows:
        """Sample and judge every prompt of round ``r`` (one batch of ``prompts_per_step`` at a time)."""
        build = self.objective.build
        assert build is not None
        merged: Rows | None = None
        for b in range(self.first_batch(r), self.first_batch(r) + self.batches_in(r)):
            index = batch_indices(len(self.prompts), self.cfg.online.prompts_per_step, b, self.cfg.seed, shuffle=True)
            mine = self.session.shard(index)
            rows = build(self.ctx, [self.prompts[i] for i in mine], seed_of(self.cfg.seed, b, 0, self.session.rank))
            merged = rows if merged is None else merged.merged(rows)
        assert merged is not None
        if self.objective.finish is not None:
            self.objective.finish(self.ctx, merged)
        counts = self.session.all_sum(torch.tensor([float(len(merged)), float(self.rows_built)], dtype=torch.float64))
        if counts[0] == 0:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.ctx.skipped.items())) or "no rows"
            where = f"step {self.round_start(r) + 1}" if self.per_step else f"round {r + 1}"
            message = (f"{where}: none of its {merged.prompts} prompts gave a preference signal (skipped so far: "
                       f"{reasons}); the samples are identical or tied")
            if counts[1] == 0:
                raise NoPreferenceSignalError(
                    f"{message}. Raise online.temperature or online.samples_per_prompt, or check the policy "
                    "and max_new_tokens"
                )
            # The policy has collapsed onto one response per prompt: skip the round (counted in
            # ``empty_steps``), say so once, and keep going; a later round may find signal again.
            if not self.warned_empty:
                warnings.warn(f"{message}; such rounds are skipped and counted in empty_steps", stacklevel=2)
                self.warned_empty = True
        self.rows_built += len(merged)
        self.round_index, self.round_rows = r, merged
        return merged

    def rows_for(self, step: int, rows: Rows) -> list[int]:
        """Row indices trained on at ``step``: the step's minibatch of the round's prompt groups."""
        r = self.round_of(step)
        j = step - self.round_start(r)
        nb, per_batch = self.batches_in(r), self.per_batch
        epoch, minibatch = divmod(j, nb)
        groups = np.arange(rows.prompts)
        if epoch > 0:
            groups = np.random.default_rng(seed_of(self.cfg.seed, r, 100 + epoch)).permutation(rows.prompts)
        chunk = set(groups[minibatch * per_batch:(minibatch + 1) * per_batch].tolist())
        return [i for i, g in enumerate(rows.group) if g in chunk]

    # -- the step -------------------------------------------------------------------------------

    def micro_batches(self, step: int) -> list[MicroBatch]:
        self.clock = time.perf_counter()
        r = self.round_of(step)
        rows = self.round_rows if self.round_index == r and self.round_rows is not None else self.start_round(r)
        index = self.rows_for(step, rows)
        self.rows_seen += len(index)
        self.step_rows, self.step_row_count = rows, len(index)
        if not index:
            self.empty_steps += 1
            return []
        parts = [part.tolist() for part in np.array_split(np.asarray(index), min(self.cfg.train.grad_accum, len(index)))]
        return [MicroBatch(self.units(rows, part), (rows, part)) for part in parts]

    def units(self, rows: Rows, index: list[int]) -> float:
        """A micro-batch's share of the loss normaliser: its rows, or for a token loss what its
        reduction divides by (``prefkit.engine.online.tokens.token_units``)."""
        if self.ctx.rollout is not None:
            return token_units(self.ctx.rollout.loss, rows, index)
        return float(len(index))

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        rows, index = micro.data
        if self.ctx.rollout is not None:
            total, metrics, tokens = token_loss(self.ctx.rollout.loss, self.ctx.rollout, model, rows, index)
            return LossOutput(total, metrics, tokens)
        forward, tokens = self.forward(model, rows, index)
        assert self.objective.loss is not None
        per_row, extra = self.objective.loss(self.loss_fn, forward)
        metrics = MetricSums()
        for name, value in extra.items():
            metrics.add(name, value)
        return LossOutput(per_row.sum(), metrics, tokens)

    def empty_loss(self, model: nn.Module) -> LossOutput:
        eos = self.ctx.policy.tokenizer.eos_token_id
        if self.ctx.rollout is not None:
            return LossOutput(token_empty_loss(self.ctx.rollout, model, eos), MetricSums(), 0)
        batch = self.ctx.policy.encode_token_ids([[eos]], [[eos]], max_length=self.cfg.train.max_length)
        sums, _ = sequence_logps(model, batch.to(self.session.device))
        return LossOutput(sums.sum() * 0.0, MetricSums(), 0)

    def refresh(self, step: int) -> None:
        rows = self.step_rows
        if rows is not None and rows.refresh is not None:
            rows.refresh(self.ctx.sampler, seed_of(self.cfg.seed, step, 2, self.session.rank))

    def forward(self, model: nn.Module, rows: Rows, index: list[int]) -> tuple[Forward, int]:
        """Log-probs of every slot of the rows; each distinct sequence is computed once."""
        policy = self.ctx.policy
        keys: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        where = [[0] * len(index) for _ in range(rows.slots)]
        for n, i in enumerate(index):
            for s in range(rows.slots):
                key = (tuple(rows.prompt_ids[i]), tuple(rows.responses[i][s]))
                where[s][n] = keys.setdefault(key, len(keys))
        unique = list(keys)
        train = self.cfg.train
        batch = policy.encode_token_ids([list(p) for p, _ in unique], [list(y) for _, y in unique],
                                        max_length=train.max_length, max_prompt_length=train.max_prompt_length,
                                        truncation=train.truncation).to(self.session.device)
        token_kl = None
        if self.exact_kl:
            sums, token_kl_all = logps_and_token_kl(model, self.ctx.reference.model, batch)
        else:
            sums, _ = sequence_logps(model, batch)
        sums = sums.float()
        counts = batch.response_lengths.to(sums.device)
        take = [torch.as_tensor(w, device=sums.device) for w in where]
        if self.exact_kl:
            token_kl = [token_kl_all.float()[t] for t in take]
        values = {name: torch.tensor([vals[i] for i in index], dtype=torch.float32, device=sums.device)
                  for name, vals in rows.values.items()}
        forward = Forward([sums[t] for t in take], [counts[t] for t in take], values, token_kl)
        return forward, int(batch.attention_mask.sum())

    # -- accounting and resume ------------------------------------------------------------------

    def counters(self) -> dict[str, float]:
        now = time.perf_counter()
        if self.clock is not None:
            self.compute_s += now - self.clock
            self.clock = now
        gen = self.ctx.sampler.stats
        judge = self.ctx.judge
        out = {
            "queries": float(judge.queries),
            "reward_evals": float(judge.reward_evals),
            "gen_tokens": float(gen.tokens),
            "samples": float(gen.responses),
            "gen_s": gen.seconds,
            "judge_s": judge.seconds,
            "compute_s": self.compute_s,
            "empty_steps": float(self.empty_steps),
            "rows": float(self.step_row_count),
        }
        for why, n in self.ctx.skipped.items():
            out[f"skipped/{why}"] = float(n)
        return out

    def derived(self, counters: dict[str, float]) -> dict[str, float]:
        compute = counters.get("compute_s", 0.0)
        return {"gen_share": counters.get("gen_s", 0.0) / compute if compute > 0 else 0.0}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "judge": self.ctx.judge.state_dict(),
            "generation": self.ctx.sampler.stats.state_dict(),
            "compute_s": self.compute_s,
            "empty_steps": self.empty_steps,
            "rows_seen": self.rows_seen,
            "rows_built": self.rows_built,
            "skipped": dict(self.ctx.skipped),
        }
        if self.round_index is not None and self.round_rows is not None and not self.per_step:
            state["round"] = {"index": self.round_index, "rows": self.round_rows.to_json()}
        if self.ctx.rollout is not None:
            state["rollout"] = self.ctx.rollout.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ctx.judge.load_state_dict(state["judge"])
        self.ctx.sampler.stats.load_state_dict(state["generation"])
        self.compute_s = float(state["compute_s"])
        self.empty_steps = int(state["empty_steps"])
        self.rows_seen = int(state.get("rows_seen", 0))
        self.rows_built = int(state.get("rows_built", 0))
        self.ctx.skipped.clear()
        self.ctx.skipped.update({k: int(v) for k, v in state["skipped"].items()})
        if "round" in state:
            self.round_index = int(state["round"]["index"])
            self.round_rows = Rows.from_json(state["round"]["rows"])
        if self.ctx.rollout is not None:
            self.ctx.rollout.load_state_dict(state.get("rollout", {}))


def logps_and_token_kl(model: torch.nn.Module, reference: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Response log-prob sums ``[N]`` and the mean per-token KL(pi_theta || pi_ref) over response
    positions ``[N]``, from full-vocabulary logits (SuperHF's exact KL prior; gradients flow
    through ``model``)."""
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
    logits = model(**kwargs).logits[:, :-1].float()
    with torch.no_grad():
        ref_logits = reference(**kwargs).logits[:, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    ref_logprobs = torch.log_softmax(ref_logits, dim=-1)
    mask = batch.response_mask[:, 1:]
    target = batch.input_ids[:, 1:]
    token_logps = logprobs.gather(-1, target[..., None]).squeeze(-1)
    sums = torch.where(mask, token_logps, 0.0).sum(dim=1)
    probs = logprobs.exp()
    support = probs > 0  # tokens the policy cannot emit contribute 0 (and no NaN gradient)
    gap = torch.where(support, logprobs, 0.0) - torch.where(support, ref_logprobs, 0.0)
    kl = torch.where(mask, (probs * gap).sum(dim=-1), 0.0)
    token_kl = kl.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return sums, token_kl
