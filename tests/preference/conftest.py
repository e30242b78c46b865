"""Small preference models and pairs shared by the preference tests (CPU, no download)."""

from __future__ import annotations

import pytest
import torch

from prefkit.config import TinyConfig
from prefkit.data.records import PairRecord
from prefkit.preference import build_head, build_model, tiny_backbone

TINY = TinyConfig(hidden_size=16, layers=2, heads=2, max_position_embeddings=256)
TEXTS = ["what is the sky", "the sky is blue", "the sky is green", "tell me a joke", "a funny joke",
         "no joke", "hello there"]


def make_model(kind: str, *, seed: int = 0, dropout: float = 0.0, **head_kwargs):
    backbone = tiny_backbone(TEXTS, TINY, seed=seed, max_length=64)
    torch.manual_seed(seed)
    head = build_head(kind, backbone.hidden_size, dropout=dropout, **head_kwargs)
    return build_model(kind, backbone, head)


def example_records() -> list[PairRecord]:
    """Two decided pairs and a tie."""
    return [
        PairRecord(prompt="what is the sky", chosen="the sky is blue", rejected="the sky is green"),
        PairRecord(prompt="tell me a joke", chosen="a funny joke", rejected="no joke"),
        PairRecord(prompt="hello there", chosen="hello", rejected="there", label=0.5),
    ]


@pytest.fixture
def records() -> list[PairRecord]:
    return example_records()
