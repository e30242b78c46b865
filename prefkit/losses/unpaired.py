"""Unpaired losses: one completion per example with a desirable / undesirable label (KTO family).

Calling convention (``LossSpec.kind == "unpaired"``)::

    fn(logps, ref_logps, labels, *, beta=..., **inputs, **params) -> [B]

``logps``, ``ref_logps``: ``[B]`` sequence log-prob sums of each completion under the policy
(with gradients) and the reference; ``labels``: ``[B]`` bool, True for a desirable completion.
KTO also takes its reference point's inputs (``kl_logps``, ``ref_kl_logps``, or an already
averaged ``kl``; see :func:`kto`). The output is the per-example loss, weights included, so the
batch loss is its mean, as TRL's ``KTOTrainer`` takes it (``losses.nanmean()``).

Notation: ``h = logps − ref_logps`` (the implicit reward up to β).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor


def _inputs(logps: Tensor, ref_logps: Tensor, labels: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Checked ``(h, labels as bool)``."""
    shape = _checks.same_shape(1, logps=logps, ref_logps=ref_logps)
    _checks.required("ref_logps", ref_logps, "(this loss needs the reference model)")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != shape:
        raise ValueError(f"labels must be a tensor of shape {shape} (True: desirable)")
    if labels.dtype != torch.bool:
        if labels.is_floating_point() or labels.dtype.is_complex:
            raise ValueError(f"labels must be a bool tensor (True: desirable), got dtype {labels.dtype}")
        if _checks.value_checks_enabled(labels) and bool(((labels != 0) & (labels != 1)).any()):
            raise ValueError("labels must be 0/1 or bool (True: desirable)")
        labels = labels.bool()
    _checks.positive("beta", beta)
    _checks.finite(logps=logps, ref_logps=ref_logps)
    return logps - ref_logps, labels


def _weights(desirable_weight: float, undesirable_weight: float) -> None:
    _checks.non_negative("desirable_weight", desirable_weight)
    _checks.non_negative("undesirable_weight", undesirable_weight)


def kto_kl(kl_logps: Tensor, ref_kl_logps: Tensor) -> Tensor:
    """KTO's reference point before clamping: ``mean(kl_logps − ref_kl_logps)``, detached.

    ``kl_logps``/``ref_kl_logps`` are the log-prob sums of *mismatched* completions (row i's
    prompt with row i−1's completion, :func:`prefkit.data.kl_partners`) under the policy and the
    reference. On several processes, average this value across them (as TRL gathers it) and pass
    the result to :func:`kto` as ``kl``.
    """
    _checks.same_shape(1, kl_logps=kl_logps, ref_kl_logps=ref_kl_logps)
    _checks.finite(kl_logps=kl_logps, ref_kl_logps=ref_kl_logps)
    return (kl_logps - ref_kl_logps).mean().detach()


def kto(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    kl_logps: Tensor | None = None,
    ref_kl_logps: Tensor | None = None,
    kl: Tensor | float | None = None,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """KTO: Kahneman-Tversky value of each completion around a KL reference point.

    Paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
    arXiv 2402.01306, eq. 7 (with λ_D, λ_U the desirable/undesirable weights and ``z_0`` the
    batch KL estimate):
    ``loss = λ_D (1 − σ(β(h − z_0)))`` for a desirable completion,
    ``λ_U (1 − σ(β(z_0 − h)))`` for an undesirable one.

    ``z_0`` exactly as TRL 1.16's ``KTOTrainer`` computes it: the mean over the micro-batch of
    ``kl_logps − ref_kl_logps`` (mismatched prompt/completion pairs, see :func:`kto_kl`),
    averaged across processes, detached and clamped at 0. Give ``kl_logps`` and
    ``ref_kl_logps`` (one process), or ``kl``, the unclamped estimate already averaged across
    processes; not both. TRL's names and defaults: ``beta=0.1``, ``desirable_weight=1``,
    ``undesirable_weight=1``; the per-example output includes the weights, and the batch loss is
    its mean (TRL's ``nanmean`` over the concatenated chosen and rejected losses).
    """
    h, desirable = _inputs(logps, ref_logps, labels, beta)
    _weights(desirable_weight, undesirable_weight)
    if kl is not None and (kl_logps is not None or ref_kl_logps is not None):
        raise ValueError("give kl (averaged across processes) or kl_logps and ref_kl_logps, not both")
    if kl is None:
        if kl_logps is None or ref_kl_logps is None:
            raise ValueError("kto needs its reference point: kl_logps and ref_kl_logps (log-prob sums of "
                             "mismatched prompt/completion pairs, LossSpec.inputs), or kl")
        z0 = kto_kl(kl_logps, ref_kl_logps)
    elif isinstance(kl, torch.Tensor):
        if kl.numel() != 1:
            raise ValueError(f"kl must be a scalar, got shape {tuple(kl.shape)}")
        z0 = kl.detach().reshape(()).to(h.dtype)
    elif isinstance(kl, int | float) and math.isfinite(kl):
        z0 = torch.tensor(float(kl), dtype=h.dtype, device=h.device)
    else:
        raise ValueError(f"kl must be a finite number or a scalar tensor, got {kl!r}")
    z0 = z0.clamp(min=0)
    return torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (h - z0))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - h))),
    )


def bco_unpaired(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 0.1,
    delta: float | Tensor = 0.0,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """BCO: binary classification of desirable vs undesirable completions by the implicit reward.

    Paper: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model
    Alignment", arXiv 2404.04656, eq. 5 with the reward shift δ (§3.2):
    ``loss = −log σ(βh − δ)`` for a desirable completion, ``−log σ(−(βh − δ))`` for an
    undesirable one.

    TRL 1.16 has no BCO trainer any more (the unpaired ``BCOTrainer`` of TRL <= 0.2x was
    removed); this follows that trainer's ``bco_loss`` (checked against TRL 0.19.1), where δ is
    the running mean of ``β h`` over every completion seen. Deviation (purity): δ is an explicit
    argument (default 0); a caller that wants TRL's behaviour keeps that running mean (detached)
    and passes it. The underlying-distribution-matching weights of TRL's ``BCOTrainer``
    (``prompt_sample_size`` classifier) are not included. ``desirable_weight`` and
    ``undesirable_weight`` (default 1) scale the two kinds of rows as in :func:`kto`.
    """
    h, desirable = _inputs(logps, ref_logps, labels, beta)
    _weights(desirable_weight, undesirable_weight)
    if isinstance(delta, torch.Tensor):
        if delta.numel() != 1:
            raise ValueError(f"delta must be a number or a scalar tensor, got shape {tuple(delta.shape)}")
        delta = delta.detach().reshape(())
    elif not (isinstance(delta, int | float) and math.isfinite(delta)):
        raise ValueError(f"delta must be a finite number, got {delta!r}")
    rewards = beta * h
    return torch.where(
        desirable,
        desirable_weight * -F.logsigmoid(rewards - delta),
        undesirable_weight * -F.logsigmoid(-(rewards - delta)),
    )


def apo_zero_unpaired(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """APO-zero, unpaired: raise desirable likelihoods, lower undesirable ones (no KL estimate).

    Paper: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive
    Revisions", arXiv 2408.06266, eq. 7 split per completion:
    ``loss = λ_D (1 − σ(βh))`` for a desirable completion, ``λ_U σ(βh)`` for an undesirable one.

    Matches TRL 1.16 ``KTOTrainer(loss_type="apo_zero_unpaired")`` (which needs no KL
    completions) with its ``beta``, ``desirable_weight`` and ``undesirable_weight``.
    """
    h, desirable = _inputs(logps, ref_logps, labels, beta)
    _weights(desirable_weight, undesirable_weight)
    return torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * h)),
        undesirable_weight * torch.sigmoid(beta * h),
    )
