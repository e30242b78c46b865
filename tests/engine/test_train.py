import dataclasses
import json

import pytest
import torch

from prefkit.config import to_dict
from prefkit.engine import TrainData, train
from prefkit.engine.data import batch_indices
from prefkit.engine.models import frozen_copy
from prefkit.engine.offline.shapes import PairwiseShape
from prefkit.errors import InputError, NonFiniteLossError
from prefkit.policy import Policy

from .conftest import make_lists, make_pairs, tiny_config


def _policy(cfg, data):
    return Policy.tiny(data.texts(), cfg.tiny, seed=cfg.seed)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    data = TrainData(pairs=make_pairs(16))
    results = []
    for accum in (1, 4):
        cfg = tiny_config(tmp_path / f"a{accum}", "dpo", f"train.grad_accum={accum}", "train.steps=2",
                          "train.batch_size=8", "train.max_grad_norm=null")
        policy = _policy(cfg, data)
        reference = frozen_copy(policy)
        train(cfg, data=data, policy=policy, reference=reference, progress=False)
        results.append({k: v.detach().clone() for k, v in policy.model.state_dict().items()})
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-6)


def test_batch_order_is_a_pure_function_of_seed_and_step():
    first = [batch_indices(10, 4, s, seed=3, shuffle=True) for s in range(5)]
    again = [batch_indices(10, 4, s, seed=3, shuffle=True) for s in range(5)]
    assert first == again
    epoch0 = sorted(first[0] + first[1] + first[2][:2])
    assert epoch0 == list(range(10))  # every example once per epoch
    assert batch_indices(10, 4, 0, seed=3, shuffle=False) == [0, 1, 2, 3]


def test_outputs_and_stable_metric_names(tmp_path):
    cfg = tiny_config(tmp_path, "dpo")
    result = train(cfg, data=TrainData(pairs=make_pairs(12)), progress=False)
    out = tmp_path / "run"
    summary = json.loads((out / "metrics.json").read_text())
    for key in ("tokens_per_s", "steps", "wall_s", "final_loss"):
        assert key in summary
    assert summary["steps"] == 4 and summary["final_loss"] == pytest.approx(result.history[-1]["loss"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected", "kl", "lr", "grad_norm", "tokens"):
        assert name in rows[0], name
    assert (out / "config.yaml").exists() and (out / "policy" / "config.json").exists()
    # the first DPO loss from an identical reference is exactly log 2
    assert rows[0]["loss"] == pytest.approx(0.693147, abs=1e-5)
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)


def test_tokens_count_non_padding_rows_of_both_responses(tmp_path):
    pairs = make_pairs(4)
    cfg = tiny_config(tmp_path, "dpo", "train.steps=1", "train.shuffle=false")
    policy = _policy(cfg, TrainData(pairs=pairs))
    expected = sum(
        len(policy.prompt_ids([p.prompt])[0]) * 2
        + len(policy.response_ids([p.chosen])[0])
        + len(policy.response_ids([p.rejected])[0])
        for p in pairs
    )
    result = train(cfg, data=TrainData(pairs=pairs), policy=policy, progress=False)
    assert result.metrics["tokens"] == expected


def test_reference_cache_hits_on_the_same_data_and_misses_on_other_data(tmp_path):
    data = TrainData(pairs=make_pairs(8))
    first = train(tiny_config(tmp_path / "1"), data=data, progress=False)
    second = train(tiny_config(tmp_path / "2"), data=data, progress=False)
    third = train(tiny_config(tmp_path / "3"), data=TrainData(pairs=make_pairs(8, seed=1)), progress=False)
    assert (first.metrics["ref_cache_hit"], second.metrics["ref_cache_hit"], third.metrics["ref_cache_hit"]) == (
        False, True, False)
    assert first.metrics["final_loss"] == pytest.approx(second.metrics["final_loss"], rel=1e-6)


@pytest.mark.parametrize("method", ["ipo", "simpo", "orpo", "hinge", "cdpo", "rpo", "sft"])
def test_pairwise_methods_and_sft_train_and_reduce_their_loss(tmp_path, method):
    cfg = tiny_config(tmp_path, method, "train.steps=8", "train.batch_size=8")
    result = train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(map(lambda v: v == v, losses))  # finite
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("method", ["lipo_lambda", "dpo_pl", "adpo", "irpo"])
def test_listwise_methods_train_on_ranked_lists(tmp_path, method):
    cfg = tiny_config(tmp_path, method, "train.steps=8", "train.batch_size=8")
    result = train(cfg, data=TrainData(lists=make_lists(8)), progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "rewards/accuracies" in result.history[0]


def test_soft_label_one_is_the_plain_loss_and_zero_swaps_the_pair(tmp_path):
    pairs = make_pairs(4)
    swapped = [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) for p in pairs]
    flipped = [dataclasses.replace(p, label=0.0) for p in pairs]
    losses = []
    for records in (swapped, flipped):
        cfg = tiny_config(tmp_path / str(len(losses)), "dpo", "train.steps=2")
        losses.append([h["loss"] for h in train(cfg, data=TrainData(pairs=records), progress=False).history])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(tmp_path):
    data = TrainData(pairs=make_pairs(8))
    cfg = tiny_config(tmp_path)
    with pytest.raises(InputError, match="no checkpoint"):
        train(cfg, data=data, resume=True, progress=False)
    train(cfg, data=data, progress=False)
    with pytest.raises(InputError, match="already holds a run"):
        train(cfg, data=data, progress=False)
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.5, steps=6))
    with pytest.raises(InputError, match=r"train\.lr"):
        train(changed, data=data, resume=True, progress=False)


def test_resume_continues_exactly(tmp_path):
    data = TrainData(pairs=make_pairs(12))
    full = train(tiny_config(tmp_path / "full", "dpo", "train.steps=6"), data=data, progress=False)
    part_cfg = tiny_config(tmp_path / "part", "dpo", "train.steps=3")
    train(part_cfg, data=data, progress=False)
    resumed_cfg = dataclasses.replace(part_cfg, train=dataclasses.replace(part_cfg.train, steps=6))
    resumed = train(resumed_cfg, data=data, resume=True, progress=False)
    assert resumed.metrics["final_loss"] == pytest.approx(full.metrics["final_loss"], rel=1e-6, abs=1e-7)
    full_rows = (tmp_path / "full" / "run" / "metrics.jsonl").read_text().splitlines()
    resumed_rows = (tmp_path / "part" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["loss"] for r in full_rows] == pytest.approx(
        [json.loads(r)["loss"] for r in resumed_rows], rel=1e-6)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss = PairwiseShape.loss
    calls = {"n": 0}

    def poisoned(self, model, micro):
        out = real_loss(self, model, micro)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(PairwiseShape, "loss", poisoned)
    cfg = tiny_config(tmp_path, "dpo", "train.steps=6", "train.save_every=2")
    with pytest.raises(NonFiniteLossError, match=r"step 3: the loss is nan.*step-00000002"):
        train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-00000002"


def test_truncation_error_names_file_line_and_field(tmp_path):
    long = make_pairs(2)
    long[1] = dataclasses.replace(long[1], chosen=" ".join(["alpha"] * 60))
    cfg = tiny_config(tmp_path, "dpo", "train.truncation=error", "train.batch_size=2")
    with pytest.raises(InputError, match=r"mem\.jsonl:2 \[chosen\]: prompt \+ chosen is at least \d+ tokens, over max_length"):
        train(cfg, data=TrainData(pairs=long), progress=False)
    cfg = tiny_config(tmp_path / "t", "dpo", "train.batch_size=2")
    result = train(cfg, data=TrainData(pairs=long), progress=False)
    assert result.metrics["truncated_rows"] == 1


def test_unknown_loss_setting_is_rejected_with_the_valid_ones(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "loss.params={label_smothing: 0.1}")
    with pytest.raises(ValueError, match=r"loss\.params\.label_smothing: dpo has no such setting.*label_smoothing"):
        train(cfg, data=TrainData(pairs=make_pairs(4)), progress=False)


def test_saved_config_round_trips(tmp_path):
    from prefkit.config import RunConfig, load

    cfg = tiny_config(tmp_path)
    train(cfg, data=TrainData(pairs=make_pairs(4)), progress=False)
    assert to_dict(load(RunConfig, tmp_path / "run" / "config.yaml")) == to_dict(cfg)


def test_bf16_autocast_trains_and_keeps_fp32_master_weights(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "train.precision=bf16", "train.steps=3", "train.batch_size=8")
    result = train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(v == v for v in losses) and losses[0] == pytest.approx(0.6931, abs=2e-2)
    assert next(result.policy.model.parameters()).dtype == torch.float32


def test_trains_from_a_saved_hugging_face_directory_on_conversational_data(tmp_path):
    from prefkit.config import TinyConfig
    from prefkit.data import PairRecord
    from prefkit.policy import build_tiny_checkpoint

    pairs = [
        PairRecord([{"role": "user", "content": f"topic {w} please"}],
                   [{"role": "assistant", "content": f"good {w} answer"}],
                   [{"role": "assistant", "content": "bad reply"}])
        for w in ("alpha", "beta", "gamma", "delta")
    ]
    texts = ["user assistant topic please good answer bad reply alpha beta gamma delta"]
    model_dir = build_tiny_checkpoint(tmp_path / "base", texts, TinyConfig(hidden_size=16, layers=1, heads=2))
    cfg = tiny_config(tmp_path, "dpo", f"model={model_dir}", "train.steps=3", "attn_implementation=eager")
    result = train(cfg, data=TrainData(pairs=pairs), progress=False)
    assert result.policy.model.config._attn_implementation == "eager"
    assert result.history[0]["loss"] == pytest.approx(0.693147, abs=1e-5)
    assert result.history[-1]["rewards/margins"] > 0
    assert not (tmp_path / "run" / "reference").exists()  # loadable from model_dir instead


def test_text_that_tokenizes_to_nothing_is_an_error_naming_the_row(tmp_path):
    pairs = make_pairs(4)
    cfg = tiny_config(tmp_path)
    policy = _policy(cfg, TrainData(pairs=pairs))
    unknown = "zzzz"  # not in the fitted vocabulary: one <unk> token, not nothing
    policy.tokenizer.backend_tokenizer.normalizer = __import__("tokenizers").normalizers.Replace(unknown, "")
    pairs[2] = dataclasses.replace(pairs[2], chosen=unknown)
    with pytest.raises(InputError, match=r"mem\.jsonl:3 \[chosen\]: the text tokenizes to no tokens"):
        train(cfg, data=TrainData(pairs=pairs), policy=policy, progress=False)


def test_a_reference_cache_hit_builds_no_reference_copy(tmp_path, monkeypatch):
    """The initial policy's log-probs are keyed by its own weights: a hit needs no frozen copy, and
    with nothing left to use it (no evaluation, a checkpoint not saved as reference/) none is kept."""
    from prefkit.data import write_jsonl
    from prefkit.engine.offline import train as offline_train
    from prefkit.policy import build_tiny_checkpoint

    pairs = make_pairs(8)
    base = build_tiny_checkpoint(tmp_path / "base", TrainData(pairs=pairs).texts(), tiny_config(tmp_path).tiny)
    data_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, data_file)
    copies = []
    real = offline_train.frozen_copy
    monkeypatch.setattr(offline_train, "frozen_copy", lambda policy: copies.append(1) or real(policy))
    first = train(tiny_config(tmp_path / "1", "dpo", f"model={base}", f"data.path={data_file}"), progress=False)
    second = train(tiny_config(tmp_path / "2", "dpo", f"model={base}", f"data.path={data_file}"), progress=False)
    assert (first.metrics["ref_cache_hit"], second.metrics["ref_cache_hit"]) == (False, True)
    assert len(copies) == 1  # the miss only
    assert first.metrics["final_loss"] == pytest.approx(second.metrics["final_loss"], rel=1e-6)
    assert not (tmp_path / "2" / "run" / "reference").exists()


def test_final_checkpoint_false_saves_only_the_model_and_attention_keys_are_checked(tmp_path):
    from prefkit.config import ConfigError

    cfg = tiny_config(tmp_path, "dpo", "train.final_checkpoint=false")
    train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(ConfigError, match="the tiny preset is built with sdpa"):
        tiny_config(tmp_path, "dpo", "attn_implementation=eager")
    with pytest.raises(ConfigError, match="attn_implementation"):
        tiny_config(tmp_path, "dpo", "attn_implementation=flash")


def test_data_keys_a_reader_would_not_read_are_refused(tmp_path, capsys):
    """data.unpair outside the unpaired methods, and split/column keys for the readers of one
    whole file (ratings, critiques), stop the run naming the key instead of being ignored."""
    from prefkit.cli.main import main
    from prefkit.data import write_jsonl

    from .conftest import make_pairs

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(8), pairs)
    ratings = tmp_path / "ratings.jsonl"
    assert main(["sim", "export", "--world", "transitive", "--kind", "ratings", "--n", "8", "--out", str(ratings)]) == 0
    tiny = ["--model", "tiny", "tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.steps=1"]
    capsys.readouterr()
    cases = [
        (["train", "--method", "coh", "--data", str(pairs), *tiny, "data.unpair=true"], "data.unpair"),
        (["rm", "train", "--kind", "bt", "--data", str(pairs), *tiny, "data.unpair=true"], "data.unpair"),
        (["rm", "train", "--kind", "ordinal", "--scale", "1-5", "--data", str(ratings), *tiny,
          "data.columns.prompt=question"], "data.columns"),
    ]
    for k, (args, key) in enumerate(cases):
        assert main([*args, "--out", str(tmp_path / f"run{k}")]) == 2, args
        assert key in capsys.readouterr().err


def test_an_ordinal_model_honours_train_epochs(tmp_path, capsys):
    import json
    import math

    from prefkit.cli.main import main

    ratings = tmp_path / "ratings.jsonl"
    assert main(["sim", "export", "--world", "transitive", "--kind", "ratings", "--n", "8", "--out", str(ratings)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["rm", "train", "--kind", "ordinal", "--scale", "1-5", "--data", str(ratings), "--model", "tiny",
                 "tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.epochs=1.5",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == math.ceil(1.5 * summary["rated_completions"] / 4)
