"""The policy and the reference a run trains with (tiny preset, a local checkpoint), LoRA
adapters on the policy (``lora.*``), and the policy outputs a run writes."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from prefkit.config import RunConfig
from prefkit.errors import InputError
from prefkit.policy import Policy
from prefkit.policy.lora import (
    AdaptersOff,
    adapters_off,
    apply_lora,
    enable_gradient_checkpointing,
    is_lora,
    quantization_config,
    supports_checkpointing,
    trainable_counts,
)


def build_policy(cfg: RunConfig, texts: Sequence[str], device: torch.device, dtype: str | None) -> Policy:
    """``cfg.model``: the tiny preset (its tokenizer fitted on ``texts``) or a checkpoint, with
    ``cfg.lora`` adapters when ``lora.r > 0`` (the base loaded quantized under ``lora.quantize``)."""
    quantization = quantization_config(cfg.lora, device, cfg.train.precision)
    if cfg.model == "tiny":
        if quantization is not None:
            raise InputError("lora.quantize loads a checkpoint directory quantized, and the tiny preset is built "
                             "in memory: give --model DIR, or lora.quantize=none", field="lora.quantize")
        if not texts:
            raise InputError("the tiny preset fits its tokenizer on the data, and the data has no text")
        policy = Policy.tiny(texts, cfg.tiny, seed=cfg.seed, device=device)
    else:
        policy = Policy.load(cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
                             attn_implementation=cfg.attn_implementation,
                             quantization_config=quantization)
    return with_lora(cfg, policy, quantized=quantization is not None)


def with_lora(cfg: RunConfig, policy: Policy, *, quantized: bool = False) -> Policy:
    """``policy`` with ``cfg.lora`` adapters (itself when ``lora.r=0``). An in-memory policy
    passed to ``train(policy=...)`` goes through here too."""
    if not cfg.lora.enabled:
        return policy
    if cfg.lora.quantize != "none" and not quantized:
        raise InputError("lora.quantize applies when prefkit loads --model itself; a policy given in memory is "
                         "used as it is (load it quantized yourself, or set lora.quantize=none)",
                         field="lora.quantize")
    compute = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
    model = apply_lora(policy.model, cfg.lora, task_type="CAUSAL_LM", seed=cfg.seed, quantized=quantized,
                       compute_dtype=compute)
    return Policy(model, policy.tokenizer)


def prepare_for_training(cfg: RunConfig, model: torch.nn.Module) -> None:
    """Train mode and ``train.gradient_checkpointing`` (with the input gradients PEFT needs)."""
    model.train()
    if cfg.train.gradient_checkpointing:
        if not supports_checkpointing(model):
            raise InputError(f"train.gradient_checkpointing: {type(model).__name__} does not support activation "
                             "checkpointing", field="train.gradient_checkpointing")
        enable_gradient_checkpointing(model)


def build_reference(cfg: RunConfig, policy: Policy, device: torch.device, dtype: str | None) -> Policy:
    """``cfg.ref_model`` when given, else the initial policy (:func:`initial_reference`)."""
    if cfg.ref_model:
        reference = Policy.load(cfg.ref_model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
                                attn_implementation=cfg.attn_implementation)
        reference.model.eval().requires_grad_(False)
        return reference
    return initial_reference(policy)


def initial_reference(policy: Policy) -> Policy:
    """The frozen initial policy: for a freshly wrapped LoRA policy the same model with its
    adapters disabled (no copy), otherwise a deep copy."""
    view = adapters_off(policy.model)
    if view is not None:
        return Policy(view, policy.tokenizer)
    return frozen_copy(policy)


def frozen_copy(policy: Policy) -> Policy:
    """A frozen reference: same tokenizer, a deep copy of the weights, eval mode."""
    model = copy.deepcopy(policy.model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Policy(model, policy.tokenizer)


def lora_summary(model: torch.nn.Module) -> dict[str, Any]:
    """``{"lora_trainable_params", "lora_total_params"}`` for a LoRA model (else empty), for
    ``metrics.json``."""
    if not is_lora(model):
        return {}
    trainable, total = trainable_counts(model)
    return {"lora_trainable_params": trainable, "lora_total_params": total}


def save_policy_outputs(cfg: RunConfig, out: Path, policy: Policy, reference: Policy | None, *,
                        loaded_from_model: bool, save_reference: bool,
                        state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the run's policy outputs (docs/policy.md, "LoRA and QLoRA").

    ``out/policy``: always a plain Hugging Face directory (merged ``W + (alpha / r) B A`` for a
    LoRA policy). ``save_reference``: ``out/reference`` too (the tiny preset's initial policy,
    not loadable from a path otherwise). A LoRA policy adds ``out/adapter`` (the PEFT adapter)
    and its base: ``cfg.model`` when the policy was loaded from that directory, else the base
    written as ``out/reference`` (it is the run's initial policy) or, when the run has another
    reference (``ref_model``, or one given in memory), as ``out/base``.
    """
    policy.save(out / "policy")
    if save_reference and reference is not None:
        reference.save(out / "reference")
    if not is_lora(policy.model):
        return
    if loaded_from_model and Path(cfg.model).is_dir():
        base = Path(cfg.model)
    else:
        reference_is_base = reference is not None and isinstance(reference.model, AdaptersOff)
        base = out / ("reference" if reference_is_base or (reference is None and not cfg.ref_model) else "base")
        if not (base.name == "reference" and save_reference and reference is not None):
            Policy(AdaptersOff(policy.model), policy.tokenizer).save(base)
    policy.save_adapter(out / "adapter", base_model=str(base.resolve()))
