"""The saved preference-model directory (a documented contract, docs/preference.md).

::

    DIR/
      preference_model.json   format, version, kind, backbone (causal|encoder), pooling,
                              max_length, hidden_size, pad, dim, tau, normalize, eigenvalues,
                              dropout, prefkit version, and what it was trained on
      config.json, model.safetensors   the backbone (``save_pretrained``, safetensors)
      tokenizer.json, tokenizer_config.json, ...   its tokenizer
      head.safetensors        the head's weights

The backbone files alone load with ``transformers.AutoModel.from_pretrained(DIR)``. Loading never
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
from prefkit.preference.models import MODEL_CLASSES, NeuralPreferenceModel, build_model

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
        head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
        save_file(head, staging / HEAD_WEIGHTS)
        manifest = {"format": FORMAT, "version": VERSION, **model.describe(), "prefkit_version": __version__}
        if extra:
            manifest["trained"] = extra
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def resolve_model_dir(directory: str | os.PathLike[str]) -> Path:
    """``DIR`` if it holds ``preference_model.json``, else ``DIR/model`` (a run directory)."""
    path = Path(directory)
    if (path / MANIFEST).is_file():
        return path
    if (path / "model" / MANIFEST).is_file():
        return path / "model"
    if not path.exists():
        raise InputError("preference-model directory does not exist", file=str(path))
    raise InputError(
        f"not a preference-model directory (no {MANIFEST} here or in model/); "
        "train one with `prefkit rm train`",
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
    manifest = read_manifest(root)
    target = resolve_device(device, field="device")
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
    model = build_model(manifest["kind"], backbone, head).to(target)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
