"""Tiny policies shared by the policy tests (hidden 32, two layers: fast on one CPU thread)."""

import pytest
import torch

from prefkit.config import TinyConfig
from prefkit.policy import Policy

TEXTS = [
    "the cat sat on the mat .",
    "a dog ran far away , quickly and happily",
    "hello world , how are you today ?",
    "the quick brown fox jumps over the lazy dog",
    "one two three four five six seven eight nine ten",
]
TINY = TinyConfig(hidden_size=32, layers=2, heads=4, kv_heads=2, max_vocab=64)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.tiny(TEXTS, TINY, seed=0)


@pytest.fixture(scope="module")
def policy64() -> Policy:
    """The same tiny policy in float64, for exact comparisons."""
    tiny = Policy.tiny(TEXTS, TINY, seed=0)
    tiny.model.to(torch.float64)
    return tiny
