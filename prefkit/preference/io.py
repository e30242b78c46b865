"""The saved preference-model directory (a documented contract, docs/preference.md).

Two layouts. A Bradley-Terry model on a causal LM is a standard transformers checkpoint::

    DIR/
      config.json, model.safetensors   *ForSequenceClassification with num_labels=1 (score head inside)
      tokenizer.json, tokenizer_config.json, chat_template.jinja, ...   its tokenizer
      preference_model.json   format, version, kind=bt, weights=sequence_classification, layout,
                              max_length, dropout, prefkit version, what it was trained on
      README.md               the model card

``AutoModelForSequenceClassification.from_pretrained(DIR)`` loads it with no missing or
unexpected weights and its logits are the rewards. Every other model (GPM, pairpm, a BT model on
an encoder or with mean/cls pooling) is prefkit's own::

    DIR/
      preference_model.json   format, version, kind, backbone (causal|encoder), pooling,
                              max_length, hidden_size, pad, dim, tau, normalize, eigenvalues,
                              dropout, prefkit version, and what it was trained on
      config.json, model.safetensors   the backbone (``save_pretrained``, safetensors)
      tokenizer.json, tokenizer_config.json, ...   its tokenizer
      head.safetensors        the head's weights

whose backbone files alone load with ``transformers.AutoModel.from_pretrained(DIR)``.
:func:`load_preference_model` also takes any ``*ForSequenceClassification`` checkpoint with one
label and no manifest (a TRL ``RewardTrainer`` output) as a Bradley-Terry model. Loading never
unpickles anything and never runs remote code. A run directory written by ``prefkit rm train``
holds the model in ``RUN/model``; :func:`load_preference_model` accepts either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prefkit._atomic import atomic_directory
from prefkit.errors import InputError
from prefkit.preference.backbone import TextBackbone, load_backbone
from prefkit.preference.heads import build_head
from prefkit.preference.models import MODEL_CLASSES, NeuralPreferenceModel, RewardModel, build_model
from prefkit.preference.seqcls import (
    ScoreHead,
    SequenceClassifierBackbone,
    is_sequence_classifier_dir,
    load_sequence_classifier,
)

MANIFEST = "preference_model.json"
HEAD_WEIGHTS = "head.safetensors"
FORMAT = "prefkit.preference_model"
VERSION = 1


def save_preference_model(model: NeuralPreferenceModel, directory: str | os.PathLike[str], *,
                          extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` into ``directory`` atomically (a temporary sibling renamed into place)."""
    from prefkit import __version__

    if not isinstance(model.backbone, TextBackbone):
        raise ValueError("only text backbones (Hugging Face models) can be saved as a preference-model directory")
    target = Path(directory)
    with atomic_directory(target) as staging:
        model.backbone.save(staging)
        if not isinstance(model.backbone, SequenceClassifierBackbone):  # its head is inside the model
            head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
            save_file(head, staging / HEAD_WEIGHTS)
        manifest = {"format": FORMAT, "version": VERSION, **model.describe(), "prefkit_version": __version__}
        if extra:
            manifest["trained"] = extra
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def resolve_model_dir(directory: str | os.PathLike[str]) -> Path:
    """``DIR`` if it holds ``preference_model.json`` or a ``*ForSequenceClassification``
    checkpoint, else ``DIR/model`` (a run directory)."""
    path = Path(directory)
    for candidate in (path, path / "model"):
        if (candidate / MANIFEST).is_file() or is_sequence_classifier_dir(candidate):
            return candidate
    if not path.exists():
        raise InputError("preference-model directory does not exist", file=str(path))
    raise InputError(
        f"not a preference-model directory (no {MANIFEST} and no *ForSequenceClassification "
        "config.json, here or in model/); train one with `prefkit rm train`",
        file=str(path),
    )


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = resolve_model_dir(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the manifest: {error}", file=str(path)) from error
    if manifest.get("format") != FORMAT:
        raise InputError(f"not a prefkit preference model (format {manifest.get('format')!r})", file=str(path))
    if manifest.get("version") != VERSION:
        raise InputError(f"unsupported format version {manifest.get('version')!r} (this prefkit reads {VERSION})",
                         file=str(path))
    if manifest.get("kind") not in MODEL_CLASSES:
        raise InputError(f"unknown kind {manifest.get('kind')!r}", file=str(path), field="kind")
    return manifest


def load_preference_model(directory: str | os.PathLike[str], *, device: str | torch.device = "auto") -> NeuralPreferenceModel:
    """Load a saved preference model (a model directory or a ``prefkit rm train`` run directory),
    in eval mode on ``device`` (``auto``: CUDA when available)."""
    from prefkit.policy import resolve_device

    root = resolve_model_dir(directory)
    target = resolve_device(device, field="device")
    if not (root / MANIFEST).is_file():  # a standard checkpoint, e.g. TRL's RewardTrainer output
        return _frozen(_reward_model(load_sequence_classifier(root, device=target)), target)
    manifest = read_manifest(root)
    if manifest.get("weights") == "sequence_classification":
        backbone = load_sequence_classifier(root, max_length=int(manifest["max_length"]), device=target,
                                            dropout=float(manifest.get("dropout", 0.0)))
        return _frozen(_reward_model(backbone), target)
    backbone = load_backbone(root, kind=manifest["backbone"], pooling=manifest["pooling"],
                             max_length=int(manifest["max_length"]), device=target)
    head = build_head(
        manifest["kind"], backbone.hidden_size, dim=int(manifest.get("dim", 2)), tau=float(manifest.get("tau", 0.1)),
        normalize=bool(manifest.get("normalize", False)), eigenvalues=manifest.get("eigenvalues", "ones"),
        dropout=float(manifest.get("dropout", 0.0)), levels=int(manifest.get("levels", 5)),
    )
    weights_path = root / HEAD_WEIGHTS
    if not weights_path.is_file():
        raise InputError(f"missing {HEAD_WEIGHTS}", file=str(root))
    weights = load_file(weights_path)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        raise InputError(f"head weights do not match the manifest (expected {expected}, found {found})",
                         file=str(weights_path))
    head.load_state_dict(weights)
    return _frozen(build_model(manifest["kind"], backbone, head), target)


def _reward_model(backbone: SequenceClassifierBackbone) -> RewardModel:
    return RewardModel(backbone, ScoreHead(backbone.dropout))


def _frozen(model: NeuralPreferenceModel, device: torch.device) -> NeuralPreferenceModel:
    model = model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
