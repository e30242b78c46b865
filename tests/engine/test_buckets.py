import itertools

import torch

from prefkit.engine import TrainData, train
from prefkit.engine.offline.buckets import length_buckets

from .conftest import make_pairs, tiny_config


def _cost(groups, lengths, overhead):
    return sum(max(lengths[i] for i in g) * len(g) + overhead for g in groups)


def test_buckets_cover_every_row_once_and_are_optimal():
    lengths = [5, 40, 7, 38, 6, 41, 39, 8]
    groups = length_buckets(lengths, overhead=20)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in g) for g in groups] == [[5, 6, 7, 8], [38, 39, 40, 41]]
    # brute force over every way of cutting the sorted rows into contiguous groups
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = min(
        _cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], lengths, 20)
        for k in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), k)
    )
    assert _cost(groups, lengths, 20) == best


def test_no_overhead_budget_means_one_bucket_and_a_large_one_too():
    assert length_buckets([3, 50, 4], overhead=0) == [[0, 1, 2]]
    assert len(length_buckets([3, 50, 4], overhead=10_000)) == 1
    assert length_buckets([3, 50, 4], overhead=1) == [[0, 2], [1]]


def test_bucketed_training_equals_one_padded_forward(tmp_path):
    data = TrainData(pairs=make_pairs(8))
    runs = []
    for overhead in (0, 1):
        cfg = tiny_config(tmp_path / f"b{overhead}", "dpo", f"train.bucket_overhead={overhead}",
                          "train.batch_size=8")
        runs.append(train(cfg, data=data, progress=False))
    torch.testing.assert_close(
        [h["loss"] for h in runs[0].history], [h["loss"] for h in runs[1].history], rtol=1e-5, atol=1e-6)
