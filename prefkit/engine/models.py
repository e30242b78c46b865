"""The policy and the reference a run trains with (tiny preset, a local checkpoint)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from prefkit.config import RunConfig
from prefkit.errors import InputError
from prefkit.policy import Policy


def build_policy(cfg: RunConfig, texts: Sequence[str], device: torch.device, dtype: str | None) -> Policy:
    """``cfg.model``: the tiny preset (its tokenizer fitted on ``texts``) or a checkpoint."""
    if cfg.model == "tiny":
        if not texts:
            raise InputError("the tiny preset fits its tokenizer on the data, and the data has no text")
        return Policy.tiny(texts, cfg.tiny, seed=cfg.seed, device=device)
    return Policy.load(cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code)


def build_reference(cfg: RunConfig, policy: Policy, device: torch.device, dtype: str | None) -> Policy:
    """``cfg.ref_model`` when given, else a frozen copy of the initial policy."""
    if cfg.ref_model:
        reference = Policy.load(cfg.ref_model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        reference.model.eval().requires_grad_(False)
        return reference
    return frozen_copy(policy)


def frozen_copy(policy: Policy) -> Policy:
    """A frozen reference: same tokenizer, a deep copy of the weights, eval mode."""
    model = copy.deepcopy(policy.model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Policy(model, policy.tokenizer)
