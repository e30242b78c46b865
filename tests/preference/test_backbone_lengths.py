"""A backbone keeps max_length + 1 ids per segment (the prompt's end, a response's start): every
batch is what the whole ids would give; over-long rows are found with file, line and field."""

import random

import pytest
import torch

from prefkit.data.records import PairRecord
from prefkit.errors import InputError
from prefkit.policy import bounded
from prefkit.preference import tiny_backbone
from prefkit.preference.backbone import check_lengths, render_prompt, render_response

from .conftest import TEXTS, TINY


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(TEXTS).split()[0] for _ in range(n))


@pytest.fixture
def backbone(monkeypatch):
    monkeypatch.setattr(bounded, "MIN_WINDOW", 16)  # long texts take the windowed path
    monkeypatch.setattr(bounded, "CHARS_PER_TOKEN", 1)
    return tiny_backbone(TEXTS, TINY, max_length=24)


def test_collated_batches_equal_those_of_the_whole_ids(backbone):
    rng = random.Random(0)
    prompts = [words(rng, rng.choice([1, 5, 10, 20, 22, 23, 24, 60])) for _ in range(200)]
    chosen = [words(rng, rng.randint(1, 30)) for _ in prompts]
    rejected = [words(rng, rng.randint(1, 30)) for _ in prompts]
    capped = backbone.prepare(prompts, chosen, rejected)
    whole = [list(row) for row in zip(backbone.tokenize([render_prompt(backbone.tokenizer, p) for p in prompts]),
                                      backbone.tokenize([render_response(c) for c in chosen]),
                                      backbone.tokenize([render_response(r) for r in rejected]))]
    assert any(len(s) > 25 for row in whole for s in row) and all(len(s) <= 25 for row in capped for s in row)
    for layout in (lambda row: [row[0], row[1]], lambda row: [row[0], row[2]], lambda row: row):
        a = backbone.collate([layout(r) for r in capped])
        b = backbone.collate([layout(r) for r in whole])
        for name in ("input_ids", "attention_mask", "prompt_end", "truncated"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_check_lengths_counts_and_names_the_row(backbone):
    records = [PairRecord("a b", "c d", "e f", source=("f.jsonl", 1)),
               PairRecord("a b", "w " * 5, "w " * 30, source=("f.jsonl", 2))]
    assert check_lengths(backbone, records, pairwise=False, truncation="truncate") == 1
    with pytest.raises(InputError, match=r"f\.jsonl:2 \[rejected\]: prompt \+ rejected is at least 30 tokens"):
        check_lengths(backbone, records, pairwise=False, truncation="error")
    with pytest.raises(InputError, match=r"f\.jsonl:2 \[rejected\]: prompt \+ chosen \+ rejected is at least"):
        check_lengths(backbone, records, pairwise=True, truncation="error")
    assert check_lengths(object(), records, pairwise=False, truncation="error") == 0  # feature backbones
