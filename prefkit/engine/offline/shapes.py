"""The offline step shapes: pairwise, listwise and SFT (they compute losses; the driver,
``prefkit.engine.run``, does everything else).

Each optimizer step takes the global batch ``batch_indices(seed, step)``, this rank's contiguous
slice of it, and ``train.grad_accum`` micro-batches of that slice. A micro-batch is one policy
forward (chosen and rejected rows together, or every response of a list) on token ids built
once per run (``prefkit.engine.offline.examples``), padded to the longest row, or split into
length buckets (``train.bucket_overhead``), or packed into one padding-free row
(``train.packing``): all three give the same log-probs.

Units (the loss normaliser): examples for pairs and lists (every micro-batch contributes
``sum(per-example loss * weight)``, and the driver divides by the global batch), response
tokens for SFT (the NLL summed over the batch's response tokens, divided by their number).
Losses coupled across the batch (AOT sorts the batch) see one micro-batch of one rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prefkit.engine.data import batch_indices
from prefkit.engine.losses import TAIL_INPUTS, WPO_INPUTS, ResolvedLoss, symmetrised
from prefkit.engine.metrics import MetricSums
from prefkit.engine.offline.buckets import length_buckets
from prefkit.engine.offline.examples import (
    ListExamples,
    PairExamples,
    UnpairedExamples,
    shared_lengths,
)
from prefkit.engine.run import LossOutput, MicroBatch, RunSession, StepShape
from prefkit.policy import EncodedBatch, Policy, sequence_logps, tail_logps, wpo_weight_logps
from prefkit.policy.encoding import first_token_rule
from prefkit.policy.logps import token_logps


def split(index: Sequence[int], parts: int) -> list[list[int]]:
    """``index`` cut into ``parts`` equal consecutive chunks (``parts`` divides its length)."""
    index = list(index)
    size = len(index) // parts
    return [index[i * size:(i + 1) * size] for i in range(parts)]


class OfflineShape(StepShape):
    """Shared by the offline shapes: batches, sharding, the forward and held-out evaluation."""

    def __init__(self, session: RunSession, policy: Policy, examples: Any, *, label: str,
                 eval_examples: Any = None) -> None:
        self.session, self.policy, self.examples = session, policy, examples
        self.train = session.cfg.train
        self.label = label
        self.seed = session.cfg.seed
        session.require_batch(self.train.batch_size, "train.batch_size", micro=self.train.grad_accum)
        self.eval_examples = eval_examples
        self.pad_id = policy.tokenizer.pad_token_id
        self.keep_bos = first_token_rule(policy.tokenizer)

    def rows(self, step: int) -> list[list[int]]:
        """This rank's micro-batches of example indices for ``step``."""
        index = batch_indices(len(self.examples), self.train.batch_size, step, self.seed, self.train.shuffle)
        return split(self.session.shard(index), self.train.grad_accum)

    def forward(self, model: nn.Module, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Response log-prob sums and token counts of every row (packed, bucketed or padded)."""
        device = self.session.device
        if self.train.packing:
            sums, counts = sequence_logps(model, batch.pack().to(device))
            return sums.float(), counts
        groups = length_buckets(batch.lengths.tolist(), self.train.bucket_overhead)
        if len(groups) == 1:
            sums, counts = sequence_logps(model, batch.to(device))
            return sums.float(), counts
        parts, order = [], []
        for rows in groups:
            sums, _ = sequence_logps(model, batch.select(rows).to(device))
            parts.append(sums.float())
            order.extend(rows)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(device)], batch.response_lengths.to(device)

    def eval_batches(self) -> list[list[int]]:
        """This rank's share of the held-out examples, in micro-batch-sized chunks."""
        mine = self.session.shard_index(len(self.eval_examples))
        size = max(1, self.train.batch_size // (self.session.world * self.train.grad_accum))
        return [mine[i:i + size] for i in range(0, len(mine), size)]

    def evaluate(self, model: nn.Module) -> MetricSums | None:
        """Held-out metrics summed over this rank's share (:meth:`evaluate_rows` per chunk)."""
        if self.eval_examples is None:
            return None
        out = MetricSums()
        for rows in self.eval_batches():
            self.evaluate_rows(model, rows, out)
        return out

    def evaluate_rows(self, model: nn.Module, rows: list[int], out: MetricSums) -> None:
        """Add the held-out loss and metrics of the examples ``rows`` to ``out``."""
        raise NotImplementedError


class PerExampleShape(OfflineShape):
    """A registry loss giving one loss per example from one forward of the example's rows
    (pairs: chosen and rejected; unpaired rows: the completion and its KL partner), with the
    reference's log-probs ``ref`` computed before training. Subclasses give :meth:`per_example`."""

    def __init__(self, session: RunSession, policy: Policy, examples: Any, loss: ResolvedLoss,
                 ref: torch.Tensor | None, *, label: str, eval_examples: Any = None,
                 eval_ref: torch.Tensor | None = None) -> None:
        super().__init__(session, policy, examples, label=label, eval_examples=eval_examples)
        self.loss_fn, self.ref, self.eval_ref = loss, ref, eval_ref

    def micro_batches(self, step: int) -> list[MicroBatch]:
        return [MicroBatch(len(rows), (rows, self.examples.batch(rows, self.train, self.pad_id, self.keep_bos)))
                for rows in self.rows(step)]

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        rows, batch = micro.data
        per_example, metrics = self.per_example(model, self.examples, self.ref, rows, batch, training=True)
        return LossOutput(per_example.sum(), metrics, batch.num_tokens)

    def per_example(self, model: nn.Module, examples: Any, ref: torch.Tensor | None, rows: list[int],
                    batch: EncodedBatch, *, training: bool) -> tuple[torch.Tensor, MetricSums]:
        """The weighted per-example losses of ``rows`` and their metrics; ``training`` is False on
        held-out batches (whose number may differ between processes)."""
        raise NotImplementedError

    def evaluate_rows(self, model: nn.Module, rows: list[int], out: MetricSums) -> None:
        batch = self.eval_examples.batch(rows, self.train, self.pad_id, self.keep_bos)
        per_example, metrics = self.per_example(model, self.eval_examples, self.eval_ref, rows, batch, training=False)
        out.add("loss", per_example)
        out.merge(metrics)


class PairwiseShape(PerExampleShape):
    """A registry pairwise loss on (chosen, rejected) log-prob sums, soft labels symmetrised."""

    def per_example(self, model: nn.Module, examples: PairExamples, ref: torch.Tensor | None, rows: list[int],
                    batch: EncodedBatch, *, training: bool) -> tuple[torch.Tensor, MetricSums]:
        device, loss = self.session.device, self.loss_fn
        n = len(rows)
        kwargs = dict(loss.kwargs)
        inputs = set(loss.spec.inputs)
        if inputs & set(TAIL_INPUTS):  # LD-DPO: one padded forward gives the sums and the tails
            padded = batch.to(device)
            sums, tails = tail_logps(model, padded, shared_lengths(padded, n))
            sums, tails, counts = sums.float(), tails.float(), padded.response_lengths
            kwargs.update(chosen_tail_logps=tails[:n], rejected_tail_logps=tails[n:],
                          ref_chosen_tail_logps=ref[rows, 2].to(device), ref_rejected_tail_logps=ref[rows, 3].to(device))
        else:
            sums, counts = self.forward(model, batch)
        if inputs & set(WPO_INPUTS):
            weights = wpo_weight_logps(model, batch)
            kwargs.update(chosen_wpo_logps=weights[:n], rejected_wpo_logps=weights[n:])
        c, r = sums[:n], sums[n:]
        lc, lr = counts[:n].to(c.dtype), counts[n:].to(c.dtype)
        rc = ref[rows, 0].to(device) if ref is not None else None
        rr = ref[rows, 1].to(device) if ref is not None else None
        if loss.spec.needs_lengths:
            kwargs.update(chosen_lengths=lc, rejected_lengths=lr)
        labels = examples.labels[rows].to(device)
        per_example = symmetrised(loss.spec.fn, labels, c, r, rc, rr, kwargs)
        if loss.nll_weight:
            per_example = per_example + loss.nll_weight * (-c / lc)
        per_example = per_example * examples.weights[rows].to(device)
        metrics = MetricSums()
        with torch.no_grad():
            hc = c - rc if rc is not None else c / lc
            hr = r - rr if rr is not None else r / lr
            metrics.add("rewards/chosen", loss.beta * hc)
            metrics.add("rewards/rejected", loss.beta * hr)
            metrics.add("rewards/margins", loss.beta * (hc - hr))
            metrics.add("rewards/accuracies", (hc > hr).float())
            metrics.add("logps/chosen", c)
            metrics.add("logps/rejected", r)
            if rc is not None:
                metrics.add("kl", 0.5 * ((c - rc) + (r - rr)))
        return per_example, metrics


class ListwiseShape(OfflineShape):
    """A registry listwise loss on ``[n, K]`` log-prob sums of ranked lists."""

    def __init__(self, session: RunSession, policy: Policy, examples: ListExamples, loss: ResolvedLoss,
                 ref: torch.Tensor | None, *, label: str, eval_examples: ListExamples | None = None,
                 eval_ref: torch.Tensor | None = None) -> None:
        super().__init__(session, policy, examples, label=label, eval_examples=eval_examples)
        self.loss_fn, self.ref, self.eval_ref = loss, ref, eval_ref

    def micro_batches(self, step: int) -> list[MicroBatch]:
        return [MicroBatch(len(rows), (rows, *self.examples.batch(rows, self.train, self.pad_id, self.keep_bos)))
                for rows in self.rows(step)]

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        rows, batch, slots = micro.data
        per_example, metrics = self._lists(model, self.examples, self.ref, rows, batch, slots)
        return LossOutput(per_example.sum(), metrics, batch.num_tokens)

    def _lists(self, model: nn.Module, examples: ListExamples, ref: torch.Tensor | None, rows: list[int],
               batch: EncodedBatch, slots: torch.Tensor) -> tuple[torch.Tensor, MetricSums]:
        device, loss, k = self.session.device, self.loss_fn, examples.k
        n = len(rows)
        sums, counts = self.forward(model, batch)
        slots = slots.to(device)
        logps = torch.zeros(n * k, device=device, dtype=sums.dtype).index_copy(0, slots, sums).view(n, k)
        lengths = torch.ones(n * k, device=device).index_copy(0, slots, counts.float()).view(n, k)
        mask = examples.mask[rows].to(device)
        scores = examples.scores[rows].to(device)
        labels = loss.spec.targets_from_scores(scores, mask) if loss.spec.targets_from_scores else scores
        ref_logps = ref[rows].to(device) if ref is not None else None
        kwargs = dict(loss.kwargs)
        if loss.spec.needs_lengths:
            kwargs["lengths"] = lengths
        per_example = loss.spec.fn(logps, ref_logps, labels, mask=mask, **kwargs)
        metrics = MetricSums()
        with torch.no_grad():
            h = (logps - ref_logps) if ref_logps is not None else logps / lengths
            neg = torch.finfo(h.dtype).min
            best = torch.where(mask, scores, torch.full_like(scores, neg)).argmax(dim=1)
            top = torch.where(mask, h, torch.full_like(h, neg)).argmax(dim=1)
            metrics.add("rewards/accuracies", (best == top).float())
            mean_h = (h * mask).sum(1) / mask.sum(1)
            metrics.add("rewards/mean", loss.beta * mean_h)
            metrics.add("logps/mean", (logps * mask).sum(1) / mask.sum(1))
            if ref_logps is not None:
                metrics.add("kl", mean_h)
        return per_example, metrics

    def evaluate_rows(self, model: nn.Module, rows: list[int], out: MetricSums) -> None:
        batch, slots = self.eval_examples.batch(rows, self.train, self.pad_id, self.keep_bos)
        per_example, metrics = self._lists(model, self.eval_examples, self.eval_ref, rows, batch, slots)
        out.add("loss", per_example)
        out.merge(metrics)


class SFTShape(OfflineShape):
    """Token-level NLL of the response, normalised by the response tokens of the global batch."""

    def micro_batches(self, step: int) -> list[MicroBatch]:
        out = []
        for rows in self.rows(step):
            batch = self.examples.batch(rows, self.train, self.pad_id, self.keep_bos)
            out.append(MicroBatch(float(batch.response_mask[:, 1:].sum()), batch))
        return out

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        return self._nll(model, micro.data)

    def _nll(self, model: nn.Module, batch: EncodedBatch) -> LossOutput:
        device = self.session.device
        if self.train.packing:
            sums = sequence_logps(model, batch.pack().to(device))[0].float()
        else:
            batch = batch.to(device)
            per_token = token_logps(model, batch).float()
            sums = (per_token * batch.response_mask).sum(1)
        metrics = MetricSums()
        metrics.add("logps/chosen", sums.detach())
        return LossOutput(-sums.sum(), metrics, batch.num_tokens)

    def evaluate_rows(self, model: nn.Module, rows: list[int], out: MetricSums) -> None:
        batch = self.eval_examples.batch(rows, self.train, self.pad_id, self.keep_bos)
        result = self._nll(model, batch)
        out.add_total("loss", float(result.loss), float(batch.response_mask[:, 1:].sum()))
        out.merge(result.metrics)



class UnpairedShape(PerExampleShape):
    """A registry unpaired loss (KTO, unpaired BCO, APO-zero unpaired) on one completion per
    example, desirable or not (``fn(logps, ref_logps, labels, **kwargs)``).

    KTO's reference point ``z_0`` (TRL 1.16 ``KTOTrainer``): the mean over the micro-batch of
    ``log π(y_j | x_i) − log π_ref(y_j | x_i)`` for each row's fixed mismatched partner ``j``
    (``UnpairedExamples.kl_partner``; the policy's side without gradients), averaged across
    processes as TRL gathers it, and passed to the loss as ``kl``. Units: examples (the batch
    loss is the mean of the per-example losses, TRL's ``nanmean``)."""

    def per_example(self, model: nn.Module, examples: UnpairedExamples, ref: torch.Tensor | None, rows: list[int],
                    batch: EncodedBatch, *, training: bool) -> tuple[torch.Tensor, MetricSums]:
        """KTO's ``z_0`` is averaged over the processes on training steps; a held-out batch (their
        number differs between processes) uses its own."""
        assert ref is not None
        device, loss = self.session.device, self.loss_fn
        n = len(rows)
        kwargs = dict(loss.kwargs)
        with_kl = examples.kl_partner is not None
        if with_kl:
            # The mismatched rows need no gradients: score them separately, under no_grad.
            sums, _ = self.forward(model, batch.select(list(range(n))))
            with torch.no_grad():
                kl_sums, _ = self.forward(model, batch.select(list(range(n, 2 * n))))
            ref_logps, ref_kl = ref[rows, 0].to(device), ref[rows, 1].to(device)
            local = torch.stack([(kl_sums - ref_kl).sum(), torch.tensor(float(n), device=device)])
            total = self.session.all_sum(local.detach()) if training else local.detach()
            kwargs["kl"] = total[0] / total[1]
        else:
            sums, _ = self.forward(model, batch)
            ref_logps = ref[rows].to(device)
        labels = examples.labels[rows].to(device)
        per_example = loss.spec.fn(sums, ref_logps, labels, **kwargs)
        if loss.nll_weight:
            raise ValueError("loss.nll_weight applies to pairwise losses, not to unpaired ones")
        per_example = per_example * examples.weights[rows].to(device)
        metrics = MetricSums()
        with torch.no_grad():
            h = loss.beta * (sums - ref_logps)
            metrics.add("rewards/chosen", h[labels])
            metrics.add("rewards/rejected", h[~labels])
            metrics.add("logps/chosen", sums[labels])
            metrics.add("logps/rejected", sums[~labels])
            if with_kl:
                metrics.add_total("kl", float(kwargs["kl"]) * n, n)
        return per_example, metrics
