"""Pairwise preference losses (the DPO family).

Every function takes the four sequence log-prob sums positionally,
``chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps`` (shape ``[B]``), and
``beta`` by keyword, and returns the unreduced per-example loss ``[B]``. Reference-free losses
(``simpo``, ``orpo``) accept ``None`` for the reference tensors and ignore them.
Length-normalised losses also take ``chosen_lengths`` and ``rejected_lengths`` (response token
counts ``[B]``) by keyword.

Notation used in the docstrings: ``h_c = chosen_logps − ref_chosen_logps``,
``h_r = rejected_logps − ref_rejected_logps`` (implicit rewards up to β) and
``z = h_c − h_r``. Where TRL's ``DPOTrainer`` (``loss_type=...``) implements the same loss we
match its formula and argument names (``label_smoothing``, ``discopop_tau``) so results can be
compared; deviations are stated per function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor


def _log_ratios(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    beta: float,
    *,
    needs_reference: bool = True,
) -> tuple[Tensor, Tensor]:
    """Check the four inputs and return ``(h_c, h_r)`` (``logps`` alone when reference-free)."""
    _checks.same_shape(
        1,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    if needs_reference:
        _checks.required(
            "ref_chosen_logps", ref_chosen_logps, "(this loss needs the reference model)"
        )
        _checks.required(
            "ref_rejected_logps", ref_rejected_logps, "(this loss needs the reference model)"
        )
    _checks.positive("beta", beta)
    _checks.finite(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    if not needs_reference:
        return chosen_logps, rejected_logps
    assert ref_chosen_logps is not None and ref_rejected_logps is not None
    return chosen_logps - ref_chosen_logps, rejected_logps - ref_rejected_logps


def _smoothing(
    label_smoothing: float | Tensor,
    shape: tuple[int, ...],
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float | Tensor:
    """``label_smoothing`` is a number in the range or a ``[B]`` tensor of per-pair values."""
    if isinstance(label_smoothing, torch.Tensor):
        if tuple(label_smoothing.shape) != shape:
            raise ValueError(
                f"label_smoothing must be a number or a tensor of shape {shape}, "
                f"got shape {tuple(label_smoothing.shape)}"
            )
        _checks.values_in("label_smoothing", label_smoothing, low, high)
        return label_smoothing.detach()
    ok = isinstance(label_smoothing, int | float) and low <= label_smoothing <= high
    ok = (
        ok
        and not (open_low and label_smoothing == low)
        and not (open_high and label_smoothing == high)
    )
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(
            f"label_smoothing must be a number in {lo}{low}, {high}{hi}, got {label_smoothing!r}"
        )
    return float(label_smoothing)


def _per_token(logps: Tensor, lengths: Tensor | None, name: str) -> Tensor:
    _checks.lengths(name, lengths, tuple(logps.shape))
    assert lengths is not None
    return logps / lengths.to(logps.dtype)


def _sigmoid_loss(logits: Tensor, label_smoothing: float | Tensor) -> Tensor:
    """``−(1−ε) log σ(x) − ε log σ(−x)``: binary cross-entropy on a logit with soft label ``1−ε``."""
    loss = -F.logsigmoid(logits)
    if isinstance(label_smoothing, torch.Tensor) or label_smoothing != 0:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-logits)
    return loss


# ---------------------------------------------------------------------------------------- DPO


def dpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float | Tensor = 0.0,
) -> Tensor:
    """DPO (sigmoid) loss; with ``label_smoothing=ε`` it is conservative DPO (cDPO).

    Paper: Rafailov et al. 2023, "Direct Preference Optimization", arXiv 2305.18290, eq. 7;
    cDPO: Mitchell 2023, "A note on DPO with noisy preferences", eq. 3.

    ``loss = −(1−ε) log σ(β z) − ε log σ(−β z)``, ``z = (π_c − π_r) − (ref_c − ref_r)``.
    With ε = 0 it matches TRL 1.16 ``loss_type="sigmoid"``. TRL 1.16's sigmoid loss ignores
    ``label_smoothing`` (its ``label_smoothing`` only reaches ``robust``, ``exo_pair`` and the
    ``aot`` losses), so cDPO (ε > 0) has no TRL 1.16 counterpart.

    Args:
        chosen_logps, rejected_logps: ``[B]`` policy sequence log-prob sums (with gradients).
        ref_chosen_logps, ref_rejected_logps: ``[B]`` reference sequence log-prob sums.
        beta: KL strength β > 0.
        label_smoothing: ε in [0, 1], the probability that the label is flipped; a ``[B]``
            tensor gives per-pair soft labels (ε = 1 − P(chosen ≻ rejected)).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, tuple(h_c.shape), 0.0, 1.0)
    return _sigmoid_loss(beta * (h_c - h_r), eps)


def dpo_norm(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 5.0,
    label_smoothing: float | Tensor = 0.0,
) -> Tensor:
    """Length-normalised DPO: the DPO loss on per-token log-ratios (Delta-learning / Tülu 3 recipe).

    Paper: Geng et al. 2025, "The Delta Learning Hypothesis", arXiv 2507.06187 (``dpo_norm``
    with β = 5); Lambert et al. 2024, "Tülu 3", arXiv 2411.15124, length-normalised DPO.

    ``loss = −(1−ε) log σ(β (h_c/|y_c| − h_r/|y_r|)) − ε log σ(−β (...))``.
    With ε = 0 it matches TRL 1.16 ``loss_type="sigmoid_norm"`` (which ignores ``label_smoothing``). The default ``beta=5.0`` is the Delta-learning
    value; per-token log-ratios are ~length times smaller than sequence sums, hence the large β.

    Args:
        chosen_lengths, rejected_lengths: ``[B]`` response token counts (> 0).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, tuple(h_c.shape), 0.0, 1.0)
    z = _per_token(h_c, chosen_lengths, "chosen_lengths") - _per_token(
        h_r, rejected_lengths, "rejected_lengths"
    )
    return _sigmoid_loss(beta * z, eps)


def robust(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
) -> Tensor:
    """Robust DPO (rDPO): an unbiased DPO loss under a known label-flip rate ε.

    Paper: Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback",
    arXiv 2403.00409 (the unbiased robust loss).

    ``loss = [(1−ε)(−log σ(β z)) − ε(−log σ(−β z))] / (1 − 2ε)``.
    Matches TRL ``loss_type="robust"``. ε = ``label_smoothing`` must lie in [0, 0.5); the loss can
    be negative for ε > 0 (it is an unbiased estimate, not a likelihood).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, tuple(h_c.shape), 0.0, 0.5, open_high=True)
    logits = beta * (h_c - h_r)
    return ((1 - eps) * -F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)


def ipo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> Tensor:
    """IPO: square loss pulling the log-ratio gap to ``1/(2β)``.

    Paper: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", arXiv 2310.12036, eq. 17 (β is the paper's τ).

    ``loss = (z − 1/(2β))²`` on **sequence sums**, as in the paper.

    Deviation note: TRL's ``loss_type="ipo"`` divides each log-prob by its token count first.
    Pass ``chosen_lengths``/``rejected_lengths`` (or use the ``ipo_norm`` registry entry) to get
    TRL's per-token form ``(h_c/|y_c| − h_r/|y_r| − 1/(2β))²``.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    if chosen_lengths is not None or rejected_lengths is not None:
        h_c = _per_token(h_c, chosen_lengths, "chosen_lengths")
        h_r = _per_token(h_r, rejected_lengths, "rejected_lengths")
    return (h_c - h_r - 1 / (2 * beta)) ** 2


def ipo_norm(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
) -> Tensor:
    """IPO on per-token log-ratios, as TRL's ``loss_type="ipo"`` computes it.

    Paper: Azar et al. 2023, arXiv 2310.12036, eq. 17, with TRL's length normalisation:
    ``loss = (h_c/|y_c| − h_r/|y_r| − 1/(2β))²``.
    """
    return ipo(
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )


def hinge(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """Hinge (SLiC-style) loss on the log-ratio gap.

    Paper: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
    arXiv 2305.10425 (rank calibration loss); Liu et al. 2024 (RSO), arXiv 2309.06657.

    ``loss = max(0, 1 − β z)``. Matches TRL ``loss_type="hinge"``. Deviation from SLiC: SLiC's
    hinge is reference-free with margin δ on ``π_c − π_r``; here, as in TRL/RSO, it acts on the
    reference-normalised gap with margin ``1/β``.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return torch.relu(1 - beta * (h_c - h_r))


def exo_pair(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 1e-3,
) -> Tensor:
    """EXO (pairwise): reverse KL from the model's pair distribution to the smoothed label.

    Paper: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment",
    arXiv 2402.00856, eq. 16.

    With ``p = σ(β z)`` and label distribution ``(1−ε, ε)``:
    ``loss = KL((p, 1−p) ‖ (1−ε, ε)) = p (log p − log(1−ε)) + (1−p)(log(1−p) − log ε)``.
    Matches TRL 1.16 ``loss_type="exo_pair"``. ε must lie in (0, 1); the default is the paper's
    1e-3. TRL 1.16's ``DPOTrainer`` raises a ``ValueError`` for ``label_smoothing=0`` with
    ``exo_pair`` (its default ``label_smoothing`` is 0, so ``exo_pair`` needs it set there).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, tuple(h_c.shape), 0.0, 1.0, open_low=True, open_high=True)
    assert isinstance(eps, float)
    logits = beta * (h_c - h_r)
    return torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-eps)) + torch.sigmoid(
        -logits
    ) * (F.logsigmoid(-logits) - math.log(eps))


def nca_pair(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """NCA (pairwise): noise-contrastive alignment on absolute implicit rewards.

    Paper: Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", arXiv 2402.05369, NCA loss for K = 2 (pairwise preference form).

    ``loss = −log σ(β h_c) − ½ log σ(−β h_c) − ½ log σ(−β h_r)``. Matches TRL
    ``loss_type="nca_pair"``. Unlike DPO it constrains the chosen likelihood itself to rise.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    r_c, r_r = beta * h_c, beta * h_r
    return -F.logsigmoid(r_c) - 0.5 * F.logsigmoid(-r_c) - 0.5 * F.logsigmoid(-r_r)


def bco_pair(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    delta: float | Tensor = 0.0,
) -> Tensor:
    """BCO (pairwise): binary classification of chosen vs rejected implicit rewards.

    Paper: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model
    Alignment", arXiv 2404.04656 (BCO with reward shift δ).

    ``loss = −log σ(β h_c − δ) − log σ(−(β h_r − δ))``.

    With ``delta=0`` (the default) it matches TRL 1.16 ``loss_type="bco_pair"``, which has no
    shift. Older TRL versions (and the unpaired ``BCOTrainer`` of TRL <= 0.2x) kept δ as trainer
    state, a running mean of ``β h`` over chosen and rejected; a caller that wants that keeps
    the running mean of ``β·(h_c, h_r)`` (detached) and passes it as ``delta`` (purity: no state
    inside the loss).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    if isinstance(delta, torch.Tensor):
        if delta.numel() != 1 and tuple(delta.shape) != tuple(h_c.shape):
            raise ValueError(f"delta must be a number, a scalar tensor or shape {tuple(h_c.shape)}")
        delta = delta.detach()
    elif not (isinstance(delta, int | float) and math.isfinite(delta)):
        raise ValueError(f"delta must be a finite number, got {delta!r}")
    return -F.logsigmoid(beta * h_c - delta) - F.logsigmoid(-(beta * h_r - delta))


def sppo_hard(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """SPPO with hard labels: square loss on each log-ratio towards ±1/(2β).

    Paper: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment",
    arXiv 2405.00675, eq. 4.7 with P̂(y_w ≻ π_t) = 1 and P̂(y_l ≻ π_t) = 0 (η = 1/β).

    ``loss = (h_c − 1/(2β))² + (h_r + 1/(2β))²``. Matches TRL ``loss_type="sppo_hard"``.
    The soft-probability form is :func:`prefkit.losses.sppo`.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return (h_c - 0.5 / beta) ** 2 + (h_r + 0.5 / beta) ** 2


def aot(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AOT (paired): distributional alignment via 1-D optimal transport of the log-ratio gaps.

    Paper: Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal
    Transport", arXiv 2406.05882 (AOT paired, logistic loss).

    ``d = sort_B(π_c − π_r) − sort_B(ref_c − ref_r)``; ``loss_i = −(1−ε) log σ(β d_i) −
    ε log σ(−β d_i)``. Matches TRL ``loss_type="aot"``.

    Batch coupling: the sort runs across the batch, so entry ``i`` of the output is the loss of
    the i-th quantile pair, not of example ``i``; only the batch mean is meaningful, and the
    loss depends on the batch composition (and on how gradient accumulation splits it).
    """
    _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, (), 0.0, 1.0)
    policy_gap = torch.sort(chosen_logps - rejected_logps).values
    reference_gap = torch.sort(ref_chosen_logps - ref_rejected_logps).values
    return _sigmoid_loss(beta * (policy_gap - reference_gap), eps)


def aot_unpaired(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AOT (unpaired): first-order stochastic dominance of chosen over rejected log-ratios.

    Paper: Melnyk et al. 2024, arXiv 2406.05882 (AOT unpaired, logistic loss).

    ``d = sort_B(h_c) − sort_B(h_r)``; ``loss_i = −(1−ε) log σ(β d_i) − ε log σ(−β d_i)``.
    Matches TRL ``loss_type="aot_unpaired"`` (called ``"aot_pair"`` in older TRL versions).
    Batch-coupled like :func:`aot`: entry ``i`` is the i-th quantile, not example ``i``.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = _smoothing(label_smoothing, (), 0.0, 1.0)
    gap = torch.sort(h_c).values - torch.sort(h_r).values
    return _sigmoid_loss(beta * gap, eps)


def apo_zero(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """APO-zero: raise the chosen likelihood, lower the rejected one (anchored objective).

    Paper: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive
    Revisions", arXiv 2408.06266, eq. 7. Use when chosen outputs beat the model's own.

    ``loss = (1 − σ(β h_c)) + σ(β h_r)``. Matches TRL ``loss_type="apo_zero"``.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return (1 - torch.sigmoid(beta * h_c)) + torch.sigmoid(beta * h_r)


def apo_down(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """APO-down: lower both likelihoods, the rejected one more.

    Paper: D'Oosterlinck et al. 2024, arXiv 2408.06266, eq. 8. Use when the model's own outputs
    beat the chosen ones.

    ``loss = σ(β h_c) + (1 − σ(β z))``. Matches TRL ``loss_type="apo_down"``.
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return torch.sigmoid(beta * h_c) + (1 - torch.sigmoid(beta * (h_c - h_r)))


def discopop(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    discopop_tau: float = 0.05,
) -> Tensor:
    """DiscoPOP: log-ratio-modulated blend of the logistic and exponential losses.

    Paper: Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for
    Large Language Models", arXiv 2406.08414, eq. 5.

    With ``x = β z`` and ``m = σ(x / discopop_tau)``: ``loss = (1 − m)(−log σ(x)) + m·e^{−x}``.
    Matches TRL ``loss_type="discopop"`` (same default ``discopop_tau = 0.05``).
    """
    h_c, h_r = _log_ratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    _checks.positive("discopop_tau", discopop_tau)
    logits = beta * (h_c - h_r)
    modulation = torch.sigmoid(logits / discopop_tau)
    return (1 - modulation) * -F.logsigmoid(logits) + modulation * torch.exp(-logits)


def simpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """SimPO: reference-free, length-normalised DPO with a target reward margin γ.

    Paper: Meng, Xia & Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free
    Reward", arXiv 2405.14734, eq. 6.

    ``loss = −(1−ε) log σ(β (π_c/|y_c| − π_r/|y_r|) − γ) − ε log σ(−(...))``.
    Same as Liger-Kernel's ``LigerFusedLinearSimPOLoss`` (``beta``, ``gamma``) and TRL's CPO
    ``loss_type="simpo"`` with ``simpo_gamma = γ`` (TRL writes the margin as ``γ/β`` inside
    ``β(·)``; the value is the same). Defaults lie in the paper's recommended range
    (β ≈ 2-2.5, γ/β ≈ 0.5). The reference tensors are ignored (pass ``None``).
    """
    _log_ratios(
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta,
        needs_reference=False,
    )
    if not (isinstance(gamma, int | float) and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number, got {gamma!r}")
    eps = _smoothing(label_smoothing, (), 0.0, 1.0)
    gap = _per_token(chosen_logps, chosen_lengths, "chosen_lengths") - _per_token(
        rejected_logps, rejected_lengths, "rejected_lengths"
    )
    return _sigmoid_loss(beta * gap - gamma, eps)


def orpo(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    include_nll: bool = True,
) -> Tensor:
    """ORPO: NLL on the chosen response plus a log-odds-ratio penalty (reference-free).

    Paper: Hong, Lee & Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference
    Model", arXiv 2403.07691, §3 (``L_ORPO = L_SFT + λ·L_OR``).

    With per-token average log-probs ``a = logps/|y|`` and ``log odds(y) = a − log(1 − e^{a})``:
    ``loss = −a_c + β·(−log σ(log odds(y_c) − log odds(y_r)))`` (β is the paper's λ).
    ``include_nll=False`` returns only the odds-ratio term ``β·(−log σ(·))``. TRL 1.16's
    ``experimental.orpo`` differs in two ways (same ``beta`` name and default 0.1): its
    ``odds_ratio_loss`` returns ``β·log σ(·)``, the opposite sign (the trainer subtracts its
    mean), and its NLL is the cross-entropy over the chosen row's prompt *and* response tokens,
    averaged over all such tokens of the batch. The NLL here is the per-token mean over each
    chosen response alone, as in the paper. Reference tensors are ignored.
    """
    _log_ratios(
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta,
        needs_reference=False,
    )
    _checks.values_in("chosen_logps", chosen_logps, float("-inf"), 0.0)
    _checks.values_in("rejected_logps", rejected_logps, float("-inf"), 0.0)
    mean_c = _per_token(chosen_logps, chosen_lengths, "chosen_lengths")
    mean_r = _per_token(rejected_logps, rejected_lengths, "rejected_lengths")
    # log(1 − e^a) for a < 0, computed stably; a = 0 (probability one) gives −inf odds, as it should.
    log_odds_c = mean_c - torch.log(-torch.expm1(mean_c))
    log_odds_r = mean_r - torch.log(-torch.expm1(mean_r))
    loss = beta * -F.logsigmoid(log_odds_c - log_odds_r)
    if include_nll:
        loss = loss - mean_c
    return loss
