"""A PPO critic initialised from a saved Bradley-Terry reward model.

InstructGPT (Ouyang et al. 2022, arXiv 2203.02155) and AlpacaFarm initialise the value
function from the reward model. :func:`critic_from_reward_model` builds that
``prefkit.policy.SeparateCritic``: the reward model's causal backbone and its scalar head's
weight (the bias starts at 0). It lives in the online engine, its one user
(``online.critic_model`` naming a preference-model directory, ``tokens.build_critic``), because
it reads a preference-model directory and ``prefkit.policy`` must not depend on
``prefkit.preference``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors.torch import load_file

from prefkit.errors import InputError
from prefkit.policy.value import SeparateCritic, load_base_transformer, load_saved_tokenizer
from prefkit.preference.io import HEAD_WEIGHTS, read_manifest, resolve_model_dir


def critic_from_reward_model(
    directory: str | os.PathLike[str],
    *,
    tokenizer: Any,
    device: str | torch.device = "cpu",
) -> SeparateCritic:
    """A separate critic started from the Bradley-Terry reward model saved in ``directory``
    (``prefkit rm train``'s model directory or its run directory).

    Values are read on the policy's token ids, so the reward model's tokenizer must have the
    policy's vocabulary (``tokenizer``). Refused with an ``InputError`` naming the directory: a
    reward model of another kind than ``bt``, a non-causal backbone, another vocabulary, or a
    head file without a ``(1, hidden_size)`` weight.
    """
    root = resolve_model_dir(directory)
    manifest = read_manifest(root)
    if manifest["kind"] != "bt":
        raise InputError(
            f"a value model can start from a Bradley-Terry (scalar) reward model, not a "
            f"{manifest['kind']!r} one; use SeparateCritic.from_pretrained for its backbone only",
            file=str(root), field="kind",
        )  # fmt: skip
    if manifest.get("backbone") != "causal":
        raise InputError(
            "a value model needs a causal backbone (each position may only see the tokens "
            f"before it); this reward model's is {manifest.get('backbone')!r}",
            file=str(root), field="backbone",
        )  # fmt: skip
    own = load_saved_tokenizer(root)
    if own is None or own.get_vocab() != tokenizer.get_vocab():
        raise InputError(
            "the reward model's tokenizer differs from the policy's; a value model reads the "
            "policy's token ids, so it must share the policy's vocabulary",
            file=str(root), field="tokenizer",
        )  # fmt: skip
    critic = SeparateCritic(load_base_transformer(root, device), tokenizer=own)
    weights = load_file(root / HEAD_WEIGHTS)
    weight = weights.get("linear.weight")
    if weight is None or tuple(weight.shape) != (1, critic.head.hidden_size):
        raise InputError(
            f"{HEAD_WEIGHTS} has no scalar head weight of shape (1, {critic.head.hidden_size})",
            file=str(root / HEAD_WEIGHTS),
        )
    with torch.no_grad():
        critic.head.linear.weight.copy_(weight)
    return critic.to(device)
