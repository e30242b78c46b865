"""Chain of Hindsight through the engine: the loss mask is exactly the response fields, the loss
is the masked NLL, the positive-phrase inference format is saved and used by eval, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.config import ConfigError, RunConfig, load
from prefkit.data import PairRecord
from prefkit.data.hindsight import (
    INFERENCE_FILE,
    PHRASES,
    InferenceFormat,
    hindsight_examples,
    hindsight_format,
    hindsight_prompt,
    read_inference_format,
)
from prefkit.engine import TrainData, train
from prefkit.engine.offline.hindsight import (
    MaskedExamples,
    check_phrases,
    segment_ids,
    tokenize_hindsight,
)
from prefkit.errors import InputError
from prefkit.policy import Policy
from tests.engine.conftest import make_pairs, tiny_config

PAIR = PairRecord("explain tides", "the moon pulls water", "dunno really", source=("p.jsonl", 7))


def _policy(extra: tuple[str, ...] = ()) -> Policy:
    cfg = RunConfig()
    words = [PAIR.prompt, PAIR.chosen, PAIR.rejected, "User:", *[p for pair in PHRASES for p in pair], *extra]
    return Policy.tiny(words, cfg.tiny.__class__(hidden_size=16, layers=1, heads=2), seed=0)


def _each_template() -> dict:
    seen = {}
    for seed in range(60):
        (example,), _ = hindsight_examples([PAIR], np.random.default_rng(seed))
        seen.setdefault(example.template, example)
    return seen


def test_the_mask_covers_exactly_the_response_tokens_and_the_final_eos():
    policy = _policy()
    decode = policy.tokenizer.decode
    for template, example in _each_template().items():
        ids, trained = segment_ids(policy, example)
        assert ids[0] == policy.tokenizer.bos_token_id and not trained[0]
        assert ids[-1] == policy.tokenizer.eos_token_id and trained[-1]
        responses = [s.text for s in example.segments if s.train]
        runs, current = [], []
        for token, on in zip(ids, trained):
            if on:
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        runs.append(current)
        assert [decode(r[:-1] if r[-1] == policy.tokenizer.eos_token_id else r) for r in runs] == responses, template
        untrained = decode([t for t, on in zip(ids, trained) if not on][1:])
        assert "moon" not in untrained and "dunno" not in untrained
        assert sum(trained) == sum(len(policy.response_ids([r], add_eos=False)[0]) for r in responses) + 1


def test_the_positive_template_is_exactly_sft_on_the_inference_prompt():
    policy = _policy()
    example = _each_template()["p"]
    ids, trained = segment_ids(policy, example)
    prompt = policy.prompt_ids([hindsight_prompt(PAIR.prompt)])[0]
    response = policy.response_ids([PAIR.chosen])[0]
    assert ids == prompt + response
    assert trained == [False] * len(prompt) + [True] * len(response)


def test_the_step_loss_is_the_masked_nll_by_hand(tmp_path):
    from prefkit.engine.offline.shapes import SFTShape
    from prefkit.engine.run import MicroBatch, RunSession

    policy = _policy()
    examples = list(_each_template().values())
    cfg = tiny_config(tmp_path, "coh", "train.batch_size=4", "train.max_length=64")
    tokenized = tokenize_hindsight(policy, examples, cfg.train)
    batch = tokenized.batch(range(4), cfg.train, policy.tokenizer.pad_token_id, True)
    session = RunSession.start(cfg)
    try:
        shape = SFTShape(session, policy, tokenized, label="coh")
        (micro,) = shape.micro_batches(0)
        assert micro.units == float(batch.response_mask[:, 1:].sum())  # the same 4 rows, shuffled
        out = shape.loss(policy.model, MicroBatch(micro.units, batch))
    finally:
        session.close()
    logits = policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    by_hand = -(logp * batch.response_mask[:, 1:]).sum()
    torch.testing.assert_close(out.loss.detach(), by_hand.detach(), rtol=1e-5, atol=1e-4)
    assert int(batch.response_mask[:, 1:].sum()) == sum(sum(t) for t in tokenized.trained)


def test_masked_batches_pack_to_the_same_loss(tmp_path):
    from prefkit.engine.offline.shapes import SFTShape
    from prefkit.engine.run import RunSession

    policy = _policy()
    tokenized = tokenize_hindsight(policy, list(_each_template().values()), tiny_config(tmp_path, "coh").train)
    losses = []
    for packing in ("false", "true"):
        cfg = tiny_config(tmp_path / packing, "coh", "train.batch_size=4", f"train.packing={packing}")
        session = RunSession.start(cfg)
        try:
            shape = SFTShape(session, policy, tokenized, label="coh")
            (micro,) = shape.micro_batches(0)
            losses.append(shape.loss(policy.model, micro).loss.detach())
        finally:
            session.close()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-4)


def test_a_coh_run_saves_its_inference_format_and_eval_uses_it(tmp_path, capsys):
    from prefkit.cli.main import main

    pairs = make_pairs(16)
    cfg = tiny_config(tmp_path, "coh", "train.max_length=64", "coh.phrases=[0,1]", "coh.inference_phrase=1")
    result = train(cfg, data=TrainData(pairs=pairs))
    m = result.metrics
    assert m["method"] == "coh" and m["examples"] == 16 and m["inference_prompt"].endswith(PHRASES[1][0])
    fmt = read_inference_format(tmp_path / "run" / "policy")
    assert fmt == hindsight_format(1, [0, 1])
    assert set(fmt.stops) == {PHRASES[0][0], PHRASES[0][1], PHRASES[1][0], PHRASES[1][1]}
    assert (tmp_path / "run" / "reference" / "config.json").is_file()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r.to_json()) + "\n" for r in pairs), encoding="utf-8")
    assert main(["eval", "--policy", str(tmp_path / "run"), "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["prompt_template"] == fmt.template and out["n"] == 16


def test_the_inference_format_cuts_at_any_phrase_and_round_trips(tmp_path):
    fmt = hindsight_format(0, [0])
    assert fmt.apply("why?") == "User: why? A helpful answer:"
    assert fmt.cut("good words An unhelpful answer : bad words") == "good words"
    assert fmt.cut("good A helpful answer: again") == "good"
    assert fmt.cut("Anunhelpful answer: kept") == "Anunhelpful answer: kept"
    assert InferenceFormat.from_json(fmt.to_json()) == fmt
    (tmp_path / INFERENCE_FILE).write_text(json.dumps({"format": "prefkit.inference", "version": 1,
                                                       "prompt_template": "no field"}))
    with pytest.raises(ValueError, match="prompt_template"):
        read_inference_format(tmp_path)
    assert read_inference_format(tmp_path / "nothing") is None


def test_a_tokenizer_that_cannot_tell_the_phrases_apart_is_refused():
    blind = Policy.tiny([PAIR.prompt, PAIR.chosen], RunConfig().tiny.__class__(hidden_size=16, layers=1, heads=2))
    with pytest.raises(InputError, match="cannot tell the feedback phrases"):
        check_phrases(blind, [0])
    check_phrases(_policy(), [0, 1, 2, 3])


def test_an_over_long_sequence_names_the_pair_under_truncation_error(tmp_path):
    policy = _policy()
    example = _each_template()["np"]
    cfg = tiny_config(tmp_path, "coh", "train.max_length=8", "train.truncation=error").train
    with pytest.raises(InputError, match=r"p\.jsonl:7.*template np.*over train\.max_length=8"):
        tokenize_hindsight(policy, [example], cfg)
    cut = tokenize_hindsight(policy, [example], tiny_config(tmp_path, "coh", "train.max_length=12").train)
    assert isinstance(cut, MaskedExamples) and cut.truncated == 1 and len(cut.ids[0]) == 12
    with pytest.raises(InputError, match="no response token is left"):
        tokenize_hindsight(policy, [example], tiny_config(tmp_path, "coh", "train.max_length=3").train)


def test_ties_only_is_a_clear_error_and_coh_keys_need_the_method(tmp_path):
    ties = [PairRecord("q", "a b", "c d", label=0.5)] * 2
    with pytest.raises(InputError, match="every pair is a tie"):
        train(tiny_config(tmp_path, "coh"), data=TrainData(pairs=ties))
    with pytest.raises(ConfigError, match=r"coh\.per_pair is a setting of --method coh"):
        load(RunConfig, None, ["method=dpo", "coh.per_pair=2"])
    with pytest.raises(ConfigError, match=r"coh\.inference_phrase"):
        load(RunConfig, None, ["method=coh", "coh.inference_phrase=2"])
    with pytest.raises(ConfigError, match=r"coh\.templates"):
        load(RunConfig, None, ["method=coh", "coh.templates=[pp]"])
