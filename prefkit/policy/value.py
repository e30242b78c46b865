"""Critics for PPO: a scalar value head on a causal LM's hidden states.

Two layouts (Ouyang et al. 2022, InstructGPT, arXiv 2203.02155, initialise the value
function from the reward model; AlpacaFarm and TRL use a separate value model; a head on the
policy's own backbone is the cheaper alternative):

- :class:`SharedCritic`: the head reads the *policy's* hidden states. One forward of the policy
  gives the response log-probs and the values (:meth:`SharedCritic.logps_and_values`); only the
  head's parameters are new.
- :class:`SeparateCritic`: its own base transformer (no LM head) plus the head, built from the
  policy (a copy) or from any causal-LM checkpoint. Starting it from a Bradley-Terry reward model
  directory (backbone and head weights both taken over) reads a preference model, so it lives
  with its user, the online engine: ``prefkit.engine.online.critic.critic_from_reward_model``
  (``prefkit.policy`` does not depend on ``prefkit.preference``).

Values are aligned with ``batch.input_ids`` like :func:`prefkit.policy.token_logps`: entry
``[i, t]`` is ``V(x, y_<t)``, read from the hidden state at position ``t − 1`` (the state in
which token ``t`` is chosen), at response positions; 0 elsewhere. These are the ``values`` of
``prefkit.losses.Rollout`` and of ``prefkit.losses.ppo_value``.

A saved critic is a directory: ``value_model.json`` (format, version, kind, hidden size),
``value_head.safetensors``, and for a separate critic its backbone (``config.json``,
``model.safetensors``, written by ``save_pretrained``). Nothing is unpickled and no remote code
runs.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prefkit._atomic import atomic_directory
from prefkit.errors import InputError
from prefkit.policy._hf import unwrap
from prefkit.policy.encoding import EncodedBatch
from prefkit.policy.logps import ChunkSize, token_logps

MANIFEST = "value_model.json"
HEAD_WEIGHTS = "value_head.safetensors"
FORMAT = "prefkit.value_model"
VERSION = 1


class ValueHead(nn.Module):
    """``V(h) = w·h + b``: a linear map from a hidden state to a scalar, initialised to 0 (the
    critic starts by predicting 0 everywhere, as AlpacaFarm's value head). Runs in float32."""

    def __init__(self, hidden_size: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden_size, self.dropout_p = int(hidden_size), float(dropout)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., H]`` → ``[...]``."""
        if hidden.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden states have size {hidden.shape[-1]}, the value head expects "
                f"{self.hidden_size}"
            )
        return self.linear(self.dropout(hidden.to(self.linear.weight.dtype))).squeeze(-1)


def backbone_of(model: nn.Module) -> nn.Module:
    """The base transformer inside a causal LM (``model.model`` for Llama), through DDP,
    ``torch.compile`` and PEFT wrappers; an error naming the model when there is none."""
    inner = unwrap(model)
    if hasattr(inner, "get_base_model"):  # PEFT
        inner = inner.get_base_model()
    prefix = getattr(inner, "base_model_prefix", None)
    base = getattr(inner, prefix, None) if isinstance(prefix, str) and prefix else None
    if not isinstance(base, nn.Module) or base is inner:
        raise InputError(
            f"{type(inner).__name__} has no base transformer whose hidden states a value head "
            "can read (expected a Hugging Face causal LM with `base_model_prefix`, e.g. "
            "LlamaForCausalLM.model)",
            field="model",
        )
    return base


def _last_hidden(output: Any, where: str) -> torch.Tensor:
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None and isinstance(output, tuple) and output and torch.is_tensor(output[0]):
        hidden = output[0]
    if not torch.is_tensor(hidden) or hidden.dim() != 3:
        raise InputError(
            f"{where} returned no hidden states ([batch, tokens, hidden] `last_hidden_state`); "
            "a value head needs a transformer that outputs them",
            field="model",
        )
    return hidden


def _hidden_size(module: nn.Module) -> int:
    size = getattr(getattr(module, "config", None), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise InputError(
            f"{type(module).__name__} has no config.hidden_size; cannot size a value head",
            field="model",
        )
    return size


def align_values(raw: torch.Tensor, batch: EncodedBatch) -> torch.Tensor:
    """Head outputs per position ``[B, T]`` → values at response tokens (``[i, t]`` from
    position ``t − 1``), 0 elsewhere, float32."""
    if batch.packed:
        raise ValueError("values need a padded batch, not a packed one")
    shifted = torch.cat([torch.zeros_like(raw[:, :1]), raw[:, :-1]], dim=1)
    target = batch.response_mask.to(raw.device).clone()
    target[:, 0] = False
    return shifted.masked_fill(~target, 0.0).float()


@contextmanager
def _quiet() -> Iterator[None]:
    """No transformers progress bars or load reports (loading a causal LM's base model reports
    its unused LM head, which is intended here)."""
    from transformers.utils import logging as hf_logging

    enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def _capture_hidden(base: nn.Module, where: str) -> Iterator[dict[str, torch.Tensor]]:
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured["hidden"] = _last_hidden(output, where)

    handle = base.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


class SharedCritic(nn.Module):
    """A value head on the policy's own backbone: one policy forward gives log-probs and values.

    Only ``head`` is registered as a submodule (its parameters are the critic's new ones); the
    policy's weights stay the policy's and receive the value loss's gradients too.
    """

    kind = "shared"

    def __init__(self, policy_model: nn.Module, head: ValueHead | None = None) -> None:
        super().__init__()
        base = backbone_of(policy_model)
        size = _hidden_size(base)
        if head is not None and head.hidden_size != size:
            raise ValueError(
                f"the head expects hidden size {head.hidden_size}, the policy has {size}"
            )
        self._policy = [policy_model]  # a plain list: not registered as a submodule
        self.head = head if head is not None else ValueHead(size)

    @property
    def policy_model(self) -> nn.Module:
        return self._policy[0]

    def logps_and_values(
        self, batch: EncodedBatch, *, chunk_size: ChunkSize = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token_logps [B, T], values [B, T])`` from one forward of the policy (gradients
        flow to the policy and the head)."""
        base = backbone_of(self.policy_model)
        with _capture_hidden(base, type(base).__name__) as captured:
            logps = token_logps(self.policy_model, batch, chunk_size=chunk_size)
        if "hidden" not in captured:
            raise InputError(
                f"{type(base).__name__} did not run in the policy's forward; cannot read values",
                field="model",
            )
        return logps, align_values(self.head(captured["hidden"]), batch)

    def values(self, batch: EncodedBatch) -> torch.Tensor:
        """Values only: a forward of the policy's backbone without the LM head. It calls the
        base transformer directly, past any DDP wrapper; in a distributed run use
        :meth:`logps_and_values`, which goes through the wrapped model."""
        base = backbone_of(self.policy_model)
        return _backbone_values(base, self.head, batch)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain full forward: ``(logits [B, T, V], head outputs [B, T])`` at every position
        (position ``p`` values the state after token ``p``)."""
        base = backbone_of(self.policy_model)
        with _capture_hidden(base, type(base).__name__) as captured:
            logits = self.policy_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).logits
        return logits, self.head(captured["hidden"])


class SeparateCritic(nn.Module):
    """A value model of its own: a base transformer (no LM head) and a :class:`ValueHead`."""

    kind = "separate"

    def __init__(
        self, backbone: nn.Module, head: ValueHead | None = None, *, tokenizer: Any = None
    ) -> None:
        super().__init__()
        size = _hidden_size(backbone)
        if head is not None and head.hidden_size != size:
            raise ValueError(
                f"the head expects hidden size {head.hidden_size}, the backbone has {size}"
            )
        self.backbone = backbone
        self.head = head if head is not None else ValueHead(size)
        self.tokenizer = tokenizer

    def values(self, batch: EncodedBatch) -> torch.Tensor:
        """``[B, T]`` values at the response tokens of ``batch`` (gradients flow)."""
        return _backbone_values(self.backbone, self.head, batch)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.values(batch)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_policy(cls, policy_model: nn.Module, *, tokenizer: Any = None) -> SeparateCritic:
        """A copy of the policy's base transformer with a fresh (zero) head."""
        return cls(copy.deepcopy(backbone_of(policy_model)), tokenizer=tokenizer)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
    ) -> SeparateCritic:
        """The base transformer of a local Hugging Face checkpoint (a causal LM directory) with a
        fresh head; safetensors weights only, no remote code."""
        root = Path(path)
        return cls(load_base_transformer(root, device), tokenizer=load_saved_tokenizer(root))


def _backbone_values(base: nn.Module, head: ValueHead, batch: EncodedBatch) -> torch.Tensor:
    device = next(base.parameters()).device
    batch = batch.to(device)
    output = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return align_values(head(_last_hidden(output, type(base).__name__)), batch)


def load_base_transformer(path: Path, device: str | torch.device) -> nn.Module:
    """The base transformer (``AutoModel``, no LM head) of the local Hugging Face checkpoint in
    ``path``, on ``device``: safetensors weights only, no remote code; an ``InputError`` naming
    the directory when it is not one."""
    from transformers import AutoModel

    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model directory (no config.json)", file=str(path))
    if not any(path.glob("*.safetensors")):
        raise InputError("no .safetensors weights here (prefkit does not unpickle .bin files)",
                         file=str(path))  # fmt: skip
    try:
        with _quiet():
            model = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"cannot load a backbone from here: {error}", file=str(path)) from error
    return model.to(device)


def load_saved_tokenizer(path: Path) -> Any:
    """The tokenizer saved in ``path`` (no remote code), or ``None`` when it holds none."""
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return None
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


# ------------------------------------------------------------------------- save / load


def save_critic(critic: SharedCritic | SeparateCritic, directory: str | os.PathLike[str]) -> Path:
    """Write a critic into ``directory`` atomically (head in safetensors; a separate critic's
    backbone with ``save_pretrained``). A shared critic's backbone is the policy, saved with it."""
    from prefkit import __version__

    target = Path(directory)
    head = critic.head
    with atomic_directory(target) as staging, _quiet():
        if isinstance(critic, SeparateCritic):
            critic.backbone.save_pretrained(staging, safe_serialization=True)
            if critic.tokenizer is not None:
                critic.tokenizer.save_pretrained(staging)
        weights = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
        save_file(weights, staging / HEAD_WEIGHTS)
        manifest = {"format": FORMAT, "version": VERSION, "kind": critic.kind,
                    "hidden_size": head.hidden_size, "dropout": head.dropout_p,
                    "prefkit_version": __version__}  # fmt: skip
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def load_critic(
    directory: str | os.PathLike[str],
    *,
    policy_model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> SharedCritic | SeparateCritic:
    """Load a critic written by :func:`save_critic`; a shared one needs the ``policy_model``
    it was trained with (its hidden size must match)."""
    root = Path(directory)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"not a value-model directory (no {MANIFEST})", file=str(root))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the manifest: {error}", file=str(path)) from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(
            f"not a prefkit value model of version {VERSION} (format {manifest.get('format')!r}, "
            f"version {manifest.get('version')!r})",
            file=str(path),
        )
    kind = manifest.get("kind")
    head = ValueHead(int(manifest["hidden_size"]), dropout=float(manifest.get("dropout", 0.0)))
    weights = load_file(root / HEAD_WEIGHTS)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        raise InputError(f"head weights do not match (expected {expected}, found {found})",
                         file=str(root / HEAD_WEIGHTS))  # fmt: skip
    head.load_state_dict(weights)
    if kind == "shared":
        if policy_model is None:
            raise InputError("a shared critic is a head on the policy: pass policy_model",
                             file=str(path), field="kind")  # fmt: skip
        return SharedCritic(policy_model, head).to(device)
    if kind == "separate":
        backbone = load_base_transformer(root, device)
        return SeparateCritic(backbone, head, tokenizer=load_saved_tokenizer(root)).to(device)
    raise InputError(f"unknown critic kind {kind!r}", file=str(path), field="kind")
