"""Weighted combinations of pairwise losses plus an NLL term (RPO / MPO style)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch

from prefkit.losses import _checks
from prefkit.losses._spec import LossSpec
from prefkit.losses.registry import LOSSES

Tensor = torch.Tensor


def _check_weights(weights: Mapping[str, float], nll_weight: float) -> dict[str, LossSpec]:
    registry = LOSSES
    if not isinstance(weights, Mapping):
        raise ValueError(
            f"weights must map registry names to numbers, got {type(weights).__name__}"
        )
    specs: dict[str, LossSpec] = {}
    for name, weight in weights.items():
        if name not in registry:
            raise ValueError(f"weights: unknown loss {name!r}; known: {sorted(registry)}")
        if registry[name].kind != "pairwise":
            raise ValueError(
                f"weights: {name!r} is a {registry[name].kind} loss; only pairwise losses combine"
            )
        if registry[name].inputs:
            raise ValueError(f"weights: {name!r} needs {', '.join(registry[name].inputs)}, which a combination "
                             "does not pass on; train it on its own (loss.name)")
        if not (isinstance(weight, int | float) and math.isfinite(weight)):
            raise ValueError(f"weights[{name!r}] must be a finite number, got {weight!r}")
        specs[name] = registry[name]
    _checks.non_negative("nll_weight", nll_weight)
    if not specs and nll_weight == 0:
        raise ValueError("weights is empty and nll_weight is 0: nothing to optimise")
    return specs


def combine(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    weights: Mapping[str, float],
    beta: float | None = None,
    nll_weight: float = 0.0,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    **params: Mapping[str, Any],
) -> Tensor:
    """Weighted sum of registry pairwise losses plus a per-token NLL on the chosen response.

    Papers: RPO — Pang et al. 2024, "Iterative Reasoning Preference Optimization", arXiv
    2404.19733 (DPO + NLL normalised by length); MPO — Wang et al. 2024, "Enhancing the
    Reasoning Ability of Multimodal LLMs via Mixed Preference Optimization", arXiv 2411.10442
    (weighted sigmoid + BCO + SFT). TRL 1.16's ``loss_type=[...]`` with ``loss_weights``
    (``"sft"`` for the NLL) is the same idea; its former ``rpo_alpha`` is gone in TRL 1.16.

    ``loss = Σ_name weights[name] · LOSSES[name].fn(...) + nll_weight · (−chosen_logps/|y_c|)``.

    Args:
        chosen_logps, ...: the four ``[B]`` pairwise tensors (references may be ``None`` if no
            component needs them).
        weights: registry name -> weight, e.g. ``{"dpo": 0.8, "bco_pair": 0.2}``.
        beta: passed to every component; ``None`` keeps each loss's own default. A component's
            own ``beta`` in ``params`` wins.
        nll_weight: weight of the chosen NLL, normalised per token (needs ``chosen_lengths``).
        chosen_lengths, rejected_lengths: ``[B]`` token counts, needed when a component has
            ``needs_lengths`` or ``nll_weight > 0``.
        **params: per-component keyword arguments keyed by registry name, e.g.
            ``dpo={"label_smoothing": 0.1}``.

    How the engine calls it: ``spec = combined_spec(cfg.loss.weights, cfg.loss.nll_weight)``
    gives an ordinary pairwise :class:`LossSpec`; call ``spec.fn`` like any pairwise loss with
    ``beta=cfg.loss.beta`` and ``**cfg.loss.params`` (here keyed by component name).
    """
    specs = _check_weights(weights, nll_weight)
    unknown = set(params) - set(specs)
    if unknown:
        raise ValueError(
            f"params for {sorted(unknown)} given, but only {sorted(specs)} are combined "
            "(params are keyed by component name)"
        )
    total: Tensor | None = None
    for name, spec in specs.items():
        kwargs = dict(params.get(name, {}))
        if beta is not None:
            kwargs.setdefault("beta", beta)
        if spec.needs_lengths:
            kwargs.update(chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
        term = weights[name] * spec.fn(
            chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, **kwargs
        )
        total = term if total is None else total + term
    if nll_weight > 0:
        _checks.lengths("chosen_lengths", chosen_lengths, tuple(chosen_logps.shape))
        assert chosen_lengths is not None
        nll = -chosen_logps / chosen_lengths.to(chosen_logps.dtype)
        total = nll_weight * nll if total is None else total + nll_weight * nll
    assert total is not None
    return total


def combined_spec(weights: Mapping[str, float], nll_weight: float = 0.0) -> LossSpec:
    """A pairwise :class:`LossSpec` for ``combine`` with these weights (what the engine runs).

    ``needs_reference`` / ``needs_lengths`` are the union over the components
    (``needs_lengths`` also when ``nll_weight > 0``).
    """
    specs = _check_weights(weights, nll_weight)
    parts = [f"{weight:g}*{name}" for name, weight in weights.items()]
    if nll_weight > 0:
        parts.append(f"{nll_weight:g}*nll")
    return LossSpec(
        name="+".join(parts),
        fn=functools.partial(combine, weights=dict(weights), nll_weight=nll_weight),
        kind="pairwise",
        paper="Pang et al. 2024 (RPO), arXiv 2404.19733; Wang et al. 2024 (MPO), arXiv 2411.10442",
        needs_reference=any(spec.needs_reference for spec in specs.values()),
        needs_lengths=nll_weight > 0 or any(spec.needs_lengths for spec in specs.values()),
    )
