"""Padding-free packing (``train.packing=true``) is exact: per-row log-probs, losses and the
trained weights equal the padded path's, for pairs, lists and SFT, with gradient accumulation."""

from __future__ import annotations

import pytest
import torch

from prefkit.engine import TrainData, train
from prefkit.policy import Policy, sequence_logps
from prefkit.policy.encoding import build_batch

from .conftest import make_lists, make_pairs, tiny_config


def test_packed_rows_give_the_padded_log_probs_and_gradients(tmp_path):
    pairs = make_pairs(6)
    cfg = tiny_config(tmp_path)
    policy = Policy.tiny(TrainData(pairs=pairs).texts(), cfg.tiny, seed=0)
    prompts = policy.prompt_ids([p.prompt for p in pairs])
    responses = policy.response_ids([p.chosen for p in pairs])
    batch = build_batch(prompts, responses, pad_id=policy.tokenizer.pad_token_id, max_length=32)
    assert int(batch.attention_mask.sum()) < batch.attention_mask.numel()  # there is padding to remove
    padded, _ = sequence_logps(policy.model, batch)
    padded.sum().backward()
    want = {n: p.grad.clone() for n, p in policy.model.named_parameters()}
    policy.model.zero_grad()
    packed_batch = batch.pack()
    assert packed_batch.input_ids.shape[0] == 1 and packed_batch.attention_mask is None
    packed, _ = sequence_logps(policy.model, packed_batch)
    packed.sum().backward()
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    for name, param in policy.model.named_parameters():
        torch.testing.assert_close(param.grad, want[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("method, data", [
    ("dpo", TrainData(pairs=make_pairs(16))),
    ("lipo_lambda", TrainData(lists=make_lists(16))),
    ("sft", TrainData(pairs=make_pairs(16))),
])
def test_packed_training_equals_padded_training(tmp_path, method, data):
    runs = {}
    for packing in (False, True):
        cfg = tiny_config(tmp_path / str(packing), method, "train.steps=4", "train.batch_size=8",
                          "train.grad_accum=2", f"train.packing={str(packing).lower()}", "train.bucket_overhead=0")
        runs[packing] = train(cfg, data=data, progress=False)
    a, b = runs[False], runs[True]
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-5, abs=1e-6)
    for (name, x), (_, y) in zip(a.policy.model.state_dict().items(), b.policy.model.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    assert a.metrics["tokens"] == b.metrics["tokens"]
