"""The offline step shapes: pairwise, listwise and SFT.

Each step takes the example indices of one optimizer step, cuts them into
``train.grad_accum`` micro-batches, and for each: one policy forward (chosen and rejected
rows together), the registry loss on the per-example log-prob sums, and ``backward``.

Loss normalisation is owned here and only here: every micro-batch contributes
``sum(per-example loss * weight) / batch_size``, so accumulating micro-batches gives exactly the
gradient of the mean over the whole batch (SFT: the sum of token NLLs over the batch's response
tokens). Losses coupled across the batch (AOT sorts the batch) see micro-batches instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from prefkit.config import LossConfig, TrainConfig
from prefkit.engine.buckets import length_buckets
from prefkit.engine.examples import ListExamples, PairExamples, SequenceExamples
from prefkit.engine.methods import Method
from prefkit.losses import LOSSES, LossSpec, combined_spec
from prefkit.policy import EncodedBatch, Policy, sequence_logps
from prefkit.policy.logps import token_logps


@dataclass
class ResolvedLoss:
    """The loss a method minimises, with its keyword arguments checked against the signature."""

    spec: LossSpec
    kwargs: dict[str, Any]
    beta: float
    """The strength used for the implicit-reward metrics (``rewards/*``)."""
    nll_weight: float = 0.0


def resolve_loss(method: Method, cfg: LossConfig) -> ResolvedLoss | None:
    """Turn a method and the ``loss`` config section into a callable loss, or fail clearly."""
    if method.step == "sft":
        return None
    name = cfg.name or method.loss
    if cfg.weights:
        spec = combined_spec(dict(cfg.weights), cfg.nll_weight + method.nll_weight)
        kwargs: dict[str, Any] = {**cfg.params}
        if cfg.beta is not None:
            kwargs["beta"] = cfg.beta
        return ResolvedLoss(spec, kwargs, beta=cfg.beta if cfg.beta is not None else 0.1)
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r} (known: {', '.join(sorted(LOSSES))})")
    spec = LOSSES[name]
    if spec.inputs or spec.kind == "unpaired":
        raise ValueError(
            f"loss.name={name}: a {spec.kind} loss"
            + (f" that needs {', '.join(spec.inputs)}" if spec.inputs else "")
            + f", which the {method.step} step does not compute (docs/methods.md)"
        )
    params = {**method.loss_params, **cfg.params}
    signature = inspect.signature(spec.fn).parameters
    keyword_only = {n for n, p in signature.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    engine_fed = {"chosen_lengths", "rejected_lengths", "mask", "lengths"}
    settable = keyword_only - engine_fed
    for key in params:
        if key not in settable:
            raise ValueError(
                f"loss.params.{key}: {name} has no such setting (it takes: {', '.join(sorted(settable)) or 'none'})"
            )
    if spec.strength_arg is not None and cfg.beta is not None:
        if cfg.beta <= 0:
            raise ValueError(f"loss.beta must be positive, got {cfg.beta}")
        params[spec.strength_arg] = cfg.beta
    strength = params.get(spec.strength_arg) if spec.strength_arg else None
    if strength is None and spec.strength_arg:
        strength = spec.defaults.get(spec.strength_arg)
    beta = float(strength) if strength is not None else 1.0
    if spec.strength_arg == "tau":
        beta = 1.0 / beta
    return ResolvedLoss(spec, params, beta=beta, nll_weight=cfg.nll_weight + method.nll_weight)


@dataclass
class StepContext:
    """What a step needs from the engine; the engine alone builds it."""

    policy: Policy
    train: TrainConfig
    autocast: Callable[[], AbstractContextManager]
    device: torch.device
    metrics: dict[str, float] = field(default_factory=dict)
    tokens: int = 0

    def add(self, name: str, value: torch.Tensor | float, count: int, total: int) -> None:
        """Accumulate a metric as a mean over the optimizer step's ``total`` examples."""
        value = float(value.detach().float().sum()) if torch.is_tensor(value) else float(value) * count
        self.metrics[name] = self.metrics.get(name, 0.0) + value / total

    def forward(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Response log-prob sums and token counts of every row, in length buckets."""
        self.tokens += batch.num_tokens
        lengths = batch.lengths.tolist()
        groups = length_buckets(lengths, self.train.bucket_overhead)
        if len(groups) == 1:
            with self.autocast():
                sums, counts = sequence_logps(self.policy.model, batch.to(self.device))
            return sums.float(), counts
        parts, index = [], []
        for rows in groups:
            with self.autocast():
                sums, _ = sequence_logps(self.policy.model, batch.select(rows).to(self.device))
            parts.append(sums.float())
            index.extend(rows)
        order = torch.empty(len(index), dtype=torch.long)
        order[torch.tensor(index)] = torch.arange(len(index))
        return torch.cat(parts)[order.to(self.device)], batch.response_lengths.to(self.device)


def micro_batches(index: Sequence[int], grad_accum: int) -> list[list[int]]:
    index = list(index)
    size = len(index) // grad_accum
    return [index[i * size : (i + 1) * size] for i in range(grad_accum)]


def _symmetrised(fn: Callable[..., torch.Tensor], labels: torch.Tensor, c, r, rc, rr, kwargs) -> torch.Tensor:
    """Soft label p = P(chosen beats rejected): ``p L(c, r) + (1 - p) L(r, c)`` for any pairwise
    loss (equals the loss itself for hard labels p = 1; a tie p = 1/2 pulls to indifference)."""
    forward = fn(c, r, rc, rr, **kwargs)
    if bool((labels == 1).all()):
        return forward
    swapped_kwargs = dict(kwargs)
    if "chosen_lengths" in kwargs:
        swapped_kwargs["chosen_lengths"], swapped_kwargs["rejected_lengths"] = (
            kwargs["rejected_lengths"],
            kwargs["chosen_lengths"],
        )
    backward = fn(r, c, rr, rc, **swapped_kwargs)
    return labels * forward + (1 - labels) * backward


def pairwise_step(
    ctx: StepContext, loss: ResolvedLoss, examples: PairExamples, ref: torch.Tensor | None, index: Sequence[int]
) -> None:
    total = len(index)
    pad_id = ctx.policy.tokenizer.pad_token_id
    keep_bos = ctx.policy.tokenizer.bos_token_id is not None
    for micro in micro_batches(index, ctx.train.grad_accum):
        n = len(micro)
        sums, counts = ctx.forward(examples.batch(micro, ctx.train, pad_id, keep_bos))
        c, r = sums[:n], sums[n:]
        lc, lr = counts[:n].to(c.dtype), counts[n:].to(c.dtype)
        if ref is not None:
            rc, rr = ref[micro, 0].to(ctx.device), ref[micro, 1].to(ctx.device)
        else:
            rc = rr = None
        kwargs = dict(loss.kwargs)
        if loss.spec.needs_lengths:
            kwargs.update(chosen_lengths=lc, rejected_lengths=lr)
        labels = examples.labels[micro].to(ctx.device)
        per_example = _symmetrised(loss.spec.fn, labels, c, r, rc, rr, kwargs)
        if loss.nll_weight:
            per_example = per_example + loss.nll_weight * (-c / lc)
        weights = examples.weights[micro].to(ctx.device)
        (per_example * weights).sum().div(total).backward()

        with torch.no_grad():
            hc = c - rc if rc is not None else c / lc
            hr = r - rr if rr is not None else r / lr
            ctx.add("loss", per_example * weights, n, total)
            ctx.add("rewards/chosen", loss.beta * hc, n, total)
            ctx.add("rewards/rejected", loss.beta * hr, n, total)
            ctx.add("rewards/margins", loss.beta * (hc - hr), n, total)
            ctx.add("rewards/accuracies", (hc > hr).float(), n, total)
            ctx.add("logps/chosen", c, n, total)
            ctx.add("logps/rejected", r, n, total)
            if rc is not None:
                ctx.add("kl", 0.5 * ((c - rc) + (r - rr)), n, total)


def listwise_step(
    ctx: StepContext, loss: ResolvedLoss, examples: ListExamples, ref: torch.Tensor | None, index: Sequence[int]
) -> None:
    total = len(index)
    pad_id = ctx.policy.tokenizer.pad_token_id
    keep_bos = ctx.policy.tokenizer.bos_token_id is not None
    k = examples.k
    for micro in micro_batches(index, ctx.train.grad_accum):
        n = len(micro)
        batch, slots = examples.batch(micro, ctx.train, pad_id, keep_bos)
        sums, counts = ctx.forward(batch)
        slots = slots.to(ctx.device)
        logps = torch.zeros(n * k, device=ctx.device, dtype=sums.dtype).index_copy(0, slots, sums).view(n, k)
        lengths = torch.ones(n * k, device=ctx.device).index_copy(0, slots, counts.float()).view(n, k)
        mask = examples.mask[micro].to(ctx.device)
        scores = examples.scores[micro].to(ctx.device)
        labels = loss.spec.targets_from_scores(scores, mask) if loss.spec.targets_from_scores else scores
        ref_logps = ref[micro].to(ctx.device) if ref is not None else None
        kwargs = dict(loss.kwargs)
        if loss.spec.needs_lengths:
            kwargs["lengths"] = lengths
        per_example = loss.spec.fn(logps, ref_logps, labels, mask=mask, **kwargs)
        per_example.sum().div(total).backward()

        with torch.no_grad():
            h = (logps - ref_logps) if ref_logps is not None else logps / lengths
            neg = torch.finfo(h.dtype).min
            best = torch.where(mask, scores, torch.full_like(scores, neg)).argmax(dim=1)
            top = torch.where(mask, h, torch.full_like(h, neg)).argmax(dim=1)
            ctx.add("loss", per_example, n, total)
            ctx.add("rewards/accuracies", (best == top).float(), n, total)
            mean_h = (h * mask).sum(1) / mask.sum(1)
            ctx.add("rewards/mean", loss.beta * mean_h, n, total)
            ctx.add("logps/mean", (logps * mask).sum(1) / mask.sum(1), n, total)
            if ref_logps is not None:
                ctx.add("kl", mean_h, n, total)


def sft_step(ctx: StepContext, examples: SequenceExamples, index: Sequence[int]) -> None:
    """Token-level NLL of the response, averaged over every response token of the optimizer step."""
    pad_id = ctx.policy.tokenizer.pad_token_id
    keep_bos = ctx.policy.tokenizer.bos_token_id is not None
    batches = [examples.batch(m, ctx.train, pad_id, keep_bos) for m in micro_batches(index, ctx.train.grad_accum)]
    total_tokens = sum(int(b.response_mask.sum()) for b in batches)
    total = len(index)
    for batch in batches:
        batch = batch.to(ctx.device)
        ctx.tokens += int(batch.attention_mask.sum())
        with ctx.autocast():
            per_token = token_logps(ctx.policy.model, batch)
        nll = -(per_token.float() * batch.response_mask).sum()
        (nll / total_tokens).backward()
        with torch.no_grad():
            ctx.metrics["loss"] = ctx.metrics.get("loss", 0.0) + float(nll) / total_tokens
            ctx.add("logps/chosen", (per_token.float() * batch.response_mask).sum(1), batch.num_rows, total)
