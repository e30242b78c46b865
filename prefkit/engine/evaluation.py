"""Evaluate a policy on a simulated world: sample, score under P*, estimate KL to the reference."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from prefkit.config import EvalConfig, RunConfig
from prefkit.policy import Policy, Samples


def sample_texts(
    policy: Policy, prompts: list[str], cfg: EvalConfig, seed: int, *, temperature: float | None = None
) -> Samples:
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    with torch.no_grad():
        return policy.sample(
            prompts, cfg.samples, max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature if temperature is None else temperature, generator=generator,
        )


def reference_logps_of(samples: Samples, reference: Policy) -> np.ndarray:
    """``log pi_ref`` of every sampled token sequence, ``[prompts, n]``, scored on the same ids."""
    n = len(samples.token_ids[0]) if samples.token_ids else 0
    prompt_ids = [ids for ids in samples.prompt_ids for _ in range(n)]
    response_ids = [ids for row in samples.token_ids for ids in row]
    scores = reference.logprob_ids(prompt_ids, response_ids)
    return scores.view(len(samples.token_ids), n).numpy()


def evaluate_on_world(
    policy: Policy,
    reference: Policy,
    world: Any,
    cfg: EvalConfig,
    *,
    seed: int = 0,
    ref_samples: Samples | None = None,
    pool: Mapping[str, list[list[str]]] | None = None,
) -> tuple[Any, Samples]:
    """``(Evaluation, policy samples)`` of ``policy`` against ``reference`` under ``world``'s P*.

    Win-rates use samples at ``cfg.temperature``; the KL estimate uses samples at temperature 1
    (the policy's own distribution), drawn separately when ``cfg.temperature != 1``.
    """
    from prefkit.sim.evaluation import evaluate

    prompts = world.prompts("eval", cfg.prompts)
    samples = sample_texts(policy, prompts, cfg, seed)
    if ref_samples is None:
        ref_samples = sample_texts(reference, prompts, cfg, seed + 1)
    result = evaluate(world, prompts, samples.texts, ref_samples.texts, pool=pool)
    kl_samples = samples if cfg.temperature == 1.0 else sample_texts(policy, prompts, cfg, seed + 3, temperature=1.0)
    kl = reference_logps_of(kl_samples, reference)
    per_prompt = (kl_samples.logps.numpy() - kl).mean(axis=1)
    kl_mean = float(per_prompt.mean())
    kl_se = float(per_prompt.std(ddof=1) / np.sqrt(len(per_prompt))) if len(per_prompt) > 1 else 0.0
    return replace(result, kl=kl_mean, kl_se=kl_se), samples


def world_evaluator(cfg: RunConfig) -> Callable[[Policy, Policy | None, int], dict[str, Any]]:
    """An ``evaluate(policy, reference, step)`` callback for ``engine.train`` on ``cfg.eval.world``.

    Reference samples are drawn once and reused at every evaluation, so successive numbers
    differ only by the policy.
    """
    from prefkit.sim import make_world

    world = make_world(cfg.eval.world, seed=cfg.seed)
    cache: dict[str, Any] = {}

    def evaluate(policy: Policy, reference: Policy | None, step: int) -> dict[str, Any]:
        if reference is None:
            raise ValueError("world evaluation needs a reference policy")
        if "ref" not in cache:
            prompts = world.prompts("eval", cfg.eval.prompts)
            cache["ref"] = sample_texts(reference, prompts, cfg.eval, cfg.seed + 1)
        result, _ = evaluate_on_world(policy, reference, world, cfg.eval, seed=cfg.seed + 2,
                                      ref_samples=cache["ref"])
        out = {"win_rate": result.win_rate, "win_rate_se": result.win_rate_se}
        if result.kl is not None:
            out.update(kl=result.kl, kl_se=result.kl_se)
        return out

    return evaluate
