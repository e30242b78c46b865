"""Model cards: the ``README.md`` a Hugging Face hub user expects in every saved model directory.

:func:`write_model_card` writes one beside the weights, atomically: YAML front matter the hub
reads (``library_name``, ``pipeline_tag``, ``tags``, ``base_model`` when it is a hub name),
then what was trained (role, method, base model, data), the key settings, the final metrics,
the prefkit version, and how to load it. Every ``prefkit rm train`` model directory gets one;
the training engine calls it for ``RUN/policy`` at the end of a policy run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from prefkit.config import RunConfig

Role = Literal["policy", "preference_model"]
CARD = "README.md"

_TRAIN_KEYS = ("steps", "epochs", "batch_size", "grad_accum", "lr", "schedule", "warmup_steps", "warmup_ratio",
               "weight_decay", "max_length", "precision")
_RM_KEYS = ("kind", "backbone", "pooling", "dim", "tau", "head_lr", "dropout", "margin", "label_smoothing",
            "center_rewards_coefficient", "freeze_backbone")


def _hub_name(value: str | None) -> str | None:
    """A base model the hub can link: a name, not ``tiny`` or a local path."""
    if not value or value == "tiny" or os.path.isabs(value) or os.path.exists(value):
        return None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return f"`{value}`" if isinstance(value, str) else str(value)


def settings_of(cfg: RunConfig, role: Role) -> dict[str, Any]:
    """The settings a card lists: the method's loss for a policy, the head for a preference
    model, and the optimisation (non-default or defining values)."""
    out: dict[str, Any] = {"seed": cfg.seed}
    if role == "policy":
        out["method"] = cfg.method
        if cfg.loss.name:
            out["loss.name"] = cfg.loss.name
        if cfg.loss.beta is not None:
            out["loss.beta"] = cfg.loss.beta
        for key, value in cfg.loss.params.items():
            out[f"loss.params.{key}"] = value
        if cfg.loss.nll_weight:
            out["loss.nll_weight"] = cfg.loss.nll_weight
        if cfg.ref_model:
            out["ref_model"] = cfg.ref_model
    else:
        for key in _RM_KEYS:
            value = getattr(cfg.rm, key)
            if value is not None:
                out[f"rm.{key}"] = value
    for key in _TRAIN_KEYS:
        value = getattr(cfg.train, key)
        if value is not None:
            out[f"train.{key}"] = value
    if cfg.model == "tiny":
        out.update({f"tiny.{k}": getattr(cfg.tiny, k) for k in ("hidden_size", "layers", "heads")})
    return out


def card_text(cfg: RunConfig, metrics: Mapping[str, Any], *, role: Role, name: str | None = None,
              standard: bool = False) -> str:
    """The card's Markdown (front matter included); ``standard``: a preference model saved as an
    ``AutoModelForSequenceClassification``."""
    from prefkit import __version__

    kind = cfg.rm.kind if role == "preference_model" else None
    what = {"bt": "Bradley-Terry reward model", "gpm": "general preference model (GPM)",
            "pairpm": "pairwise preference model"}.get(kind or "", "policy")
    front: dict[str, Any] = {
        "library_name": "transformers" if role == "policy" or standard else "prefkit",
        "pipeline_tag": "text-generation" if role == "policy" else "text-classification",
        "tags": ["prefkit", cfg.method if role == "policy" else f"reward-model-{kind}"],
    }
    base = _hub_name(cfg.model)
    if base:
        front["base_model"] = base
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {name or Path(cfg.out).name}", "",
             f"A {what} trained with prefkit {__version__}.", "",
             "## Training", "",
             f"- role: {'policy' if role == 'policy' else 'preference model'} ({what})",
             f"- method: `{cfg.method if role == 'policy' else 'rm train --kind ' + str(kind)}`",
             f"- base model: `{cfg.model}`" + (" (prefkit's built-in tiny Llama preset)" if cfg.model == "tiny" else ""),
             f"- data: `{cfg.data.path}`" + (f" (split `{cfg.data.split}`)" if cfg.data.split else "")
             if cfg.data.path else "- data: given in memory",
             f"- prefkit version: {__version__}", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in settings_of(cfg, role).items()]
    shown = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if shown:
        lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in shown.items()]
    lines += ["", "## Use", ""]
    if role == "policy":
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  "model = AutoModelForCausalLM.from_pretrained(PATH)", "tokenizer = AutoTokenizer.from_pretrained(PATH)",
                  "```"]
    elif standard:
        lines += ["A standard `AutoModelForSequenceClassification` with one label: its logit is the reward. "
                  "Inputs are tokenized as TRL's `RewardTrainer` does: `tokenizer(prompt + response + eos)` for "
                  "text, the chat template of the conversation for messages.", "",
                  "```python", "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
                  "model = AutoModelForSequenceClassification.from_pretrained(PATH)",
                  "tokenizer = AutoTokenizer.from_pretrained(PATH)",
                  "ids = tokenizer(prompt + response + tokenizer.eos_token, return_tensors='pt')",
                  "reward = model(**ids).logits[0, 0]", "```"]
    else:
        lines += ["prefkit's own preference-model format (docs/preference.md): a transformers backbone, "
                  "`head.safetensors` and `preference_model.json`.", "",
                  "```python", "from prefkit.preference import load_preference_model", "",
                  "model = load_preference_model(PATH)", "p = model.prob(prompts, a, b)  # P(a beats b | prompt)",
                  "```"]
    return "\n".join(lines) + "\n"


def write_model_card(directory: str | os.PathLike[str], cfg: RunConfig, metrics: Mapping[str, Any], *,
                     role: Role, name: str | None = None) -> Path:
    """Write ``directory/README.md`` (atomically) for a saved policy or preference model."""
    import json

    from prefkit._atomic import atomic_write_text

    target = Path(directory)
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no saved model directory to describe")
    manifest = target / "preference_model.json"
    standard = manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("weights") == (
        "sequence_classification")
    return atomic_write_text(target / CARD, card_text(cfg, metrics, role=role, name=name, standard=standard))
