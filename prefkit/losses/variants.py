"""TRL 1.16's remaining pairwise options as registry losses, with TRL's argument names.

- :func:`fdpo`: DPO under an f-divergence (``f_divergence_type``, ``f_alpha_divergence_coef``).
- :func:`ld_dpo`: LD-DPO, the excess of the longer response's log-prob down-weighted by
  ``ld_alpha`` (needs the log-prob of the tokens past the shared length).
- :func:`wpo`: DPO weighted by the policy's own probability of each pair (WPO, ``use_weighting``).
- :func:`cpo`: CPO, reference-free DPO plus a behaviour-cloning NLL (``cpo_alpha``).
- :func:`alphapo`: AlphaPO, SimPO on the reward ``(1 − p^{−α})/α`` (``alpha``, ``simpo_gamma``).
- :func:`tpo`, :func:`tpo_l`: TPO, a preference term plus the NLL of a gold response (``tpo_alpha``).

Positional arguments are the pairwise family's four sequence log-prob sums ``[B]``
(``chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps``; ``None`` reference
tensors for the reference-free ones). Tensors the standard pairwise step does not compute are
keyword arguments named in the spec's ``inputs`` (``prefkit/losses/_spec.py`` says how each is
computed). Each function returns the unreduced per-example loss ``[B]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
"""TRL's ``f_divergence_type`` values."""


def _pair(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor | None,
          ref_rejected_logps: Tensor | None, beta: float, *, reference: bool) -> tuple[Tensor, Tensor]:
    """Checked ``(h_c, h_r)``: log-ratios against the reference, or the log-probs themselves."""
    _checks.same_shape(1, chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                       ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _checks.positive("beta", beta)
    _checks.finite(chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                   ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if not reference:
        return chosen_logps, rejected_logps
    _checks.required("ref_chosen_logps", ref_chosen_logps, "(this loss needs the reference model)")
    _checks.required("ref_rejected_logps", ref_rejected_logps, "(this loss needs the reference model)")
    assert ref_chosen_logps is not None and ref_rejected_logps is not None
    return chosen_logps - ref_chosen_logps, rejected_logps - ref_rejected_logps


def _extra(name: str, value: Tensor | None, shape: tuple[int, ...], why: str) -> Tensor:
    """A required per-example input of shape ``shape``."""
    if value is None:
        raise ValueError(f"{name} is required: {why} (LossSpec.inputs; see prefkit/losses/_spec.py)")
    _checks.tensor(name, value)
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    _checks.finite(**{name: value})
    return value


def _smoothing(label_smoothing: float) -> float:
    _checks.in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    return float(label_smoothing)


def _logistic(logits: Tensor, label_smoothing: float) -> Tensor:
    """``−(1−ε) log σ(x) − ε log σ(−x)``."""
    loss = -F.logsigmoid(logits)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-logits)
    return loss


def _per_token(logps: Tensor, lengths: Tensor | None, name: str) -> Tensor:
    _checks.lengths(name, lengths, tuple(logps.shape))
    assert lengths is not None
    return logps / lengths.to(logps.dtype)


# ------------------------------------------------------------------------------ f-divergence


def f_divergence_scores(log_ratio: Tensor, f_divergence_type: str, f_alpha_divergence_coef: float = 0.5) -> Tensor:
    """``f'(u)`` at ``u = π/π_ref = exp(log_ratio)``, as TRL 1.16's ``DPOTrainer`` computes it.

    ``reverse_kl``: ``log u``; ``forward_kl``: ``1 − 1/u``; ``js_divergence``:
    ``log(2u/(1+u)) = log 2 + log σ(log u)``; ``alpha_divergence``: ``(u^{a−1} − 1)/(a − 1)`` with
    ``a = f_alpha_divergence_coef`` (``log u`` in the limit ``a → 1``, taken when
    ``|a − 1| < 1e-6``), the exponent clamped at 80 (float32; 11 for float16) as TRL does.
    """
    if f_divergence_type not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type must be one of {F_DIVERGENCES}, got {f_divergence_type!r}")
    if f_divergence_type == "reverse_kl":
        return log_ratio
    if f_divergence_type == "forward_kl":
        return 1 - torch.exp(-log_ratio)
    if f_divergence_type == "js_divergence":
        return math.log(2) + F.logsigmoid(log_ratio)
    a = f_alpha_divergence_coef
    if not (isinstance(a, int | float) and math.isfinite(a)):
        raise ValueError(f"f_alpha_divergence_coef must be a finite number, got {a!r}")
    if abs(a - 1.0) < 1e-6:
        return log_ratio
    t = (a - 1.0) * log_ratio
    clamp = 11.0 if t.dtype == torch.float16 else 80.0
    return (torch.exp(torch.clamp(t.float(), max=clamp)) - 1.0).to(t.dtype) / (a - 1.0)


def fdpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    f_divergence_type: str = "forward_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> Tensor:
    """f-DPO: DPO with an f-divergence regulariser in place of the reverse KL.

    Paper: Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with
    Diverse Divergence Constraints", arXiv 2309.16240, Theorem 1 / eq. 10:
    ``loss = −log σ(β f'(π_c/ref_c) − β f'(π_r/ref_r))`` with ``f'`` from
    :func:`f_divergence_scores`.

    Matches TRL 1.16 ``DPOTrainer`` ``loss_type="sigmoid"`` with ``f_divergence_type`` and
    ``f_alpha_divergence_coef`` (TRL's names and formulas, including its α-divergence
    parameterisation ``f'(u) = (u^{a−1} − 1)/(a − 1)``: the paper's α is TRL's ``1 − a``).
    ``f_divergence_type="reverse_kl"`` is exactly :func:`prefkit.losses.dpo`; the default here is
    ``forward_kl`` so the registry entry differs from ``dpo``.
    """
    h_c, h_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=True)
    delta = f_divergence_scores(h_c, f_divergence_type, f_alpha_divergence_coef) - f_divergence_scores(
        h_r, f_divergence_type, f_alpha_divergence_coef
    )
    return -F.logsigmoid(beta * delta)


# ------------------------------------------------------------------------------------ LD-DPO


def ld_dpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    chosen_tail_logps: Tensor | None = None,
    rejected_tail_logps: Tensor | None = None,
    ref_chosen_tail_logps: Tensor | None = None,
    ref_rejected_tail_logps: Tensor | None = None,
    beta: float = 0.1,
    ld_alpha: float = 0.5,
) -> Tensor:
    """LD-DPO: DPO on log-probs whose part past the shorter response's length is scaled by α.

    Paper: Liu et al. 2024, "Length Desensitization in Direct Preference Optimization",
    arXiv 2409.06411 (the length-desensitised likelihood
    ``log π̂(y) = log π(y_{≤l}) + α log π(y_{>l})``, ``l = min(|y_c|, |y_r|)``).

    With ``tail`` the sum of the log-probs of the tokens past the shared length ``l`` (zero for
    the shorter response): ``logps' = logps − (1 − α)·tail`` for the policy and the reference,
    then the DPO loss ``−log σ(β z')``. Matches TRL 1.16 ``DPOTrainer(ld_alpha=α)`` (TRL computes
    ``shared + α·tail`` from per-token log-probs; ``total − (1 − α)·tail`` is the same number).
    ``ld_alpha=1`` is DPO, ``ld_alpha=0`` drops the excess tokens. TRL's default ``None`` means
    off; prefkit's default 0.5 (a choice, not the paper's per-model value) makes the registry
    entry differ from ``dpo``.

    Args:
        chosen_tail_logps, rejected_tail_logps: ``[B]`` policy log-prob sums over the response
            tokens past position ``min(|y_c|, |y_r|)`` (with gradients).
        ref_chosen_tail_logps, ref_rejected_tail_logps: the same under the reference.
    """
    h_c, h_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=True)
    _checks.in_range("ld_alpha", ld_alpha, 0.0, 1.0)
    shape = tuple(h_c.shape)
    why = "LD-DPO needs the log-prob sums past the shared length"
    tails = [
        _extra(name, value, shape, why)
        for name, value in (("chosen_tail_logps", chosen_tail_logps), ("rejected_tail_logps", rejected_tail_logps),
                            ("ref_chosen_tail_logps", ref_chosen_tail_logps),
                            ("ref_rejected_tail_logps", ref_rejected_tail_logps))
    ]
    scale = 1.0 - ld_alpha
    h_c = h_c - scale * (tails[0] - tails[2])
    h_r = h_r - scale * (tails[1] - tails[3])
    return -F.logsigmoid(beta * (h_c - h_r))


# --------------------------------------------------------------------------------------- WPO


def wpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    chosen_wpo_logps: Tensor | None = None,
    rejected_wpo_logps: Tensor | None = None,
    beta: float = 0.1,
) -> Tensor:
    """WPO: the DPO loss of each pair weighted by how likely the current policy is to write it.

    Paper: Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization",
    arXiv 2406.11827, eq. 2 with the sampling-aligned weights of §3.2:
    ``w(y) = exp((1/|y|) Σ_t [log π(y_t|·) − log Σ_v π(v|·)²])`` (detached), and
    ``loss = −log σ(β z) · w(y_c) · w(y_r)``.

    Matches TRL 1.16 ``DPOTrainer(use_weighting=True)`` with ``loss_type="sigmoid"``.
    ``chosen_wpo_logps``/``rejected_wpo_logps`` are the exponents, the per-token means of
    ``log π(y_t) − log Σ_v π(v)²`` over each response under the policy
    (:func:`prefkit.policy.wpo_weight_logps`); they are detached here.
    """
    h_c, h_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=True)
    shape = tuple(h_c.shape)
    why = "WPO weights each pair by the policy's probability of it"
    a_c = _extra("chosen_wpo_logps", chosen_wpo_logps, shape, why).detach()
    a_r = _extra("rejected_wpo_logps", rejected_wpo_logps, shape, why).detach()
    return -F.logsigmoid(beta * (h_c - h_r)) * torch.exp(a_c + a_r)


# --------------------------------------------------------------------------------------- CPO


def cpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
) -> Tensor:
    """CPO: reference-free DPO on sequence log-probs plus a behaviour-cloning NLL on chosen.

    Paper: Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM
    Performance in Machine Translation", arXiv 2401.08417, eq. 3 (``L_prefer``) + ``L_NLL``:
    ``loss = −(1−ε) log σ(β(π_c − π_r)) − ε log σ(−β(π_c − π_r)) + cpo_alpha · (−π_c/|y_c|)``.

    Matches TRL 1.16 ``experimental.cpo.CPOTrainer`` with ``loss_type="sigmoid"`` (same ``beta``,
    ``label_smoothing``, ``cpo_alpha`` and defaults) except for the NLL's averaging: TRL's
    ``CrossEntropyLoss`` averages over all chosen tokens of the batch (a batch-pooled mean),
    here each pair's own chosen tokens are averaged (equal when the chosen lengths are equal).
    ``chosen_lengths`` counts the response tokens. The reference tensors are ignored.
    """
    p_c, p_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=False)
    eps = _smoothing(label_smoothing)
    _checks.non_negative("cpo_alpha", cpo_alpha)
    _checks.lengths("rejected_lengths", rejected_lengths, tuple(p_r.shape))
    loss = _logistic(beta * (p_c - p_r), eps)
    if cpo_alpha:
        loss = loss - cpo_alpha * _per_token(p_c, chosen_lengths, "chosen_lengths")
    return loss


# ------------------------------------------------------------------------------------ AlphaPO


def alphapo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 2.0,
    simpo_gamma: float = 0.5,
    alpha: float = 0.25,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AlphaPO: SimPO with the length-normalised reward reshaped by α.

    Paper: Gupta et al. 2025, "AlphaPO: Reward Shape Matters for LLM Alignment",
    arXiv 2501.03884: with ``p = exp(π/|y|)`` (the per-token geometric-mean probability),
    ``r_α(y) = (1 − p^{−α})/α`` (``r_0 = log p``, SimPO's reward), and
    ``loss = −(1−ε) log σ(β(r_α(y_c) − r_α(y_r)) − γ) − ε log σ(−(…))``.

    Matches TRL 1.16 ``experimental.cpo.CPOTrainer`` with ``loss_type="alphapo"`` (SimPO,
    ``cpo_alpha=0``) and TRL's names ``alpha`` and ``simpo_gamma`` (TRL writes the margin as
    ``γ/β`` inside ``β(·)``; the value is the same). ``alpha=0`` is exactly
    :func:`prefkit.losses.simpo` with ``gamma=simpo_gamma``. TRL's defaults are ``beta=0.1``,
    ``alpha=0.0``; prefkit's ``beta=2.0`` follows SimPO's recommended range and ``alpha=0.25``
    is a choice that makes the entry differ from SimPO (not a value from the paper; tune it).
    Reference-free: the reference tensors are ignored.
    """
    p_c, p_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=False)
    eps = _smoothing(label_smoothing)
    for name, value in (("simpo_gamma", simpo_gamma), ("alpha", alpha)):
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    a_c = _per_token(p_c, chosen_lengths, "chosen_lengths")
    a_r = _per_token(p_r, rejected_lengths, "rejected_lengths")
    if alpha:
        r_c, r_r = (1 - torch.exp(-alpha * a_c)) / alpha, (1 - torch.exp(-alpha * a_r)) / alpha
    else:
        r_c, r_r = a_c, a_r
    return _logistic(beta * (r_c - r_r) - simpo_gamma, eps)


# ---------------------------------------------------------------------------------------- TPO


def _gold_nll(gold_logps: Tensor | None, gold_lengths: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    why = "TPO adds the NLL of a gold (reference) response per prompt"
    logps = _extra("gold_logps", gold_logps, shape, why)
    return -_per_token(logps, gold_lengths, "gold_lengths")


def tpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    gold_logps: Tensor | None = None,
    gold_lengths: Tensor | None = None,
    beta: float = 0.01,
    label_smoothing: float = 0.0,
    tpo_alpha: float = 1.0,
) -> Tensor:
    """TPO: a reference-free preference term on chosen vs rejected plus the NLL of a gold response.

    Paper: Saeidi et al. 2024, "Triple Preference Optimization: Achieving Better Alignment using
    a Single Step Optimization", arXiv 2405.16681 (the TPO objective: preference term plus
    ``α``-weighted SFT on the gold response ``y_ref``):
    ``loss = −(1−ε) log σ(β(π_c − π_r)) − ε log σ(−β(π_c − π_r)) + tpo_alpha · (−π_gold/|y_gold|)``.

    Matches TRL 1.16 ``experimental.tpo.TPOTrainer`` ``loss_type="sigmoid"`` (``beta=0.01``,
    ``label_smoothing``, ``tpo_alpha`` and their defaults) except for the NLL's averaging: TRL
    averages over all gold tokens of the batch, here over each row's own gold tokens (equal when
    the gold lengths are equal). ``gold_logps`` is the policy's log-prob sum of the gold
    response (TRL's ``reference`` column; with gradients), ``gold_lengths`` its token count.
    """
    p_c, p_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=False)
    eps = _smoothing(label_smoothing)
    _checks.non_negative("tpo_alpha", tpo_alpha)
    loss = _logistic(beta * (p_c - p_r), eps)
    if tpo_alpha:
        loss = loss + tpo_alpha * _gold_nll(gold_logps, gold_lengths, tuple(p_c.shape))
    return loss


def tpo_l(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    gold_logps: Tensor | None = None,
    gold_lengths: Tensor | None = None,
    beta: float = 0.01,
    label_smoothing: float = 0.0,
    tpo_alpha: float = 1.0,
    tpo_l_gamma: float = 0.5,
) -> Tensor:
    """TPO-L: TPO on length-normalised log-probs with a target margin γ.

    Paper: Saeidi et al. 2024, arXiv 2405.16681 (TPO-L):
    ``loss = −(1−ε) log σ(β(π_c/|y_c| − π_r/|y_r|) − γ) − ε log σ(−(…)) + tpo_alpha · NLL_gold``.
    Matches TRL 1.16 ``TPOTrainer`` ``loss_type="tpo-l"`` (``tpo_l_gamma``, TRL's ``γ/β`` inside
    ``β(·)``), with the NLL averaged per row as in :func:`tpo`.
    """
    p_c, p_r = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reference=False)
    eps = _smoothing(label_smoothing)
    _checks.non_negative("tpo_alpha", tpo_alpha)
    if not (isinstance(tpo_l_gamma, int | float) and math.isfinite(tpo_l_gamma)):
        raise ValueError(f"tpo_l_gamma must be a finite number, got {tpo_l_gamma!r}")
    gap = _per_token(p_c, chosen_lengths, "chosen_lengths") - _per_token(p_r, rejected_lengths, "rejected_lengths")
    loss = _logistic(beta * gap - tpo_l_gamma, eps)
    if tpo_alpha:
        loss = loss + tpo_alpha * _gold_nll(gold_logps, gold_lengths, tuple(p_c.shape))
    return loss
