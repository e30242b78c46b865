"""Reward models in the standard format, both ways (issue 10, item 1).

- ``prefkit rm train --kind bt`` writes a ``*ForSequenceClassification`` checkpoint that plain
  transformers loads with no missing or unexpected weights, whose logits, on inputs tokenized
  TRL's way here (``tokenizer(prompt + response + eos)``, or the chat template), equal
  prefkit's rewards.
- A one-label sequence classifier built from a config, with a locally trained tokenizer, saved
  as TRL's ``RewardTrainer`` saves it, is a preference model everywhere: ``load_preference_model``,
  ``prefkit rm eval --model DIR`` and ``online.judge=DIR`` in a short online DPO run; more than
  one label is refused.
"""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
)

from prefkit.cli.main import main
from prefkit.data import PairRecord, write_jsonl
from prefkit.errors import InputError
from prefkit.preference import load_preference_model

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=64",
        "train.lr=1e-2"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["the sky is blue", "the sky is green", "what colour is the sky", "tell me a joke", "a funny joke", "no joke"]


def pairs(n: int = 12) -> list[PairRecord]:
    return [PairRecord(f"what colour is the sky {i}", f"the sky is blue {i}", f"the sky is green {i}")
            for i in range(n)]


def hf_rewards(directory, prompts, responses) -> torch.Tensor:
    """Plain transformers, the TRL ``RewardTrainer`` tokenization, right padding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    rows = []
    for prompt, response in zip(prompts, responses):
        if isinstance(prompt, list):
            rows.append(tok.apply_chat_template(prompt + response, tokenize=True, return_dict=True)["input_ids"])
        else:
            text = prompt + response
            rows.append(tok(text + ("" if text.endswith(tok.eos_token) else tok.eos_token))["input_ids"])
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), model.config.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0]


def test_a_trained_bt_model_is_a_plain_transformers_sequence_classifier(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    write_jsonl(pairs(), data)
    out = tmp_path / "rm"
    assert main(["rm", "train", "--kind", "bt", "--data", str(data), "--model", "tiny", "--out", str(out), "--json",
                 *TINY, "train.steps=4"]) == 0
    model_dir = out / "model"
    assert (model_dir / "tokenizer.json").is_file() and (model_dir / "chat_template.jinja").is_file()
    assert not (model_dir / "head.safetensors").exists()
    hf, info = AutoModelForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert hf.config.num_labels == 1 and type(hf).__name__ == "LlamaForSequenceClassification"
    mine = load_preference_model(out)
    records = pairs(5)
    prompts, responses = [r.prompt for r in records] * 2, [r.chosen for r in records] + [r.rejected for r in records]
    expected = hf_rewards(model_dir, prompts, responses)
    torch.testing.assert_close(mine.score(prompts, responses), expected, rtol=0, atol=1e-5)
    assert expected.std() > 0  # the rewards are not all equal: the comparison means something


def test_conversational_rewards_equal_the_chat_template_logits(tmp_path):
    conversations = [
        PairRecord([{"role": "user", "content": f"what colour is the sky {i}"}],
                   [{"role": "assistant", "content": f"the sky is blue {i}"}],
                   [{"role": "assistant", "content": "the sky is green"}])
        for i in range(8)
    ]
    data = tmp_path / "chat.jsonl"
    write_jsonl(conversations, data)
    assert main(["rm", "train", "--kind", "bt", "--data", str(data), "--model", "tiny", "--out", str(tmp_path / "rm"),
                 *TINY, "train.steps=3"]) == 0
    model = load_preference_model(tmp_path / "rm")
    prompts = [r.prompt for r in conversations] * 2
    responses = [r.chosen for r in conversations] + [r.rejected for r in conversations]
    torch.testing.assert_close(model.score(prompts, responses), hf_rewards(tmp_path / "rm" / "model", prompts,
                                                                            responses), rtol=0, atol=1e-5)


# ------------------------------------------------------------------ a TRL-style reward model


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(WORDS * 3, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


@pytest.fixture(params=["llama", "qwen2"])
def trl_reward_model(request, tmp_path):
    """What TRL's RewardTrainer saves: save_pretrained of a one-label sequence classifier, with
    config.pad_token_id set from the tokenizer, and the tokenizer beside it."""
    tok = chatml_tokenizer()
    common = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, num_labels=1,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    if request.param == "llama":
        model = LlamaForSequenceClassification(LlamaConfig(**common))
    else:
        model = Qwen2ForSequenceClassification(Qwen2Config(**common))
    directory = tmp_path / f"trl-{request.param}"
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def test_a_trl_reward_model_is_a_preference_model(trl_reward_model, tmp_path, capsys):
    model = load_preference_model(trl_reward_model)
    assert model.kind == "bt" and model.head.embedding_size == 1
    prompts, responses = ["what colour is the sky", "tell me a joke"], [" the sky is blue", " a funny joke"]
    torch.testing.assert_close(model.score(prompts, responses), hf_rewards(trl_reward_model, prompts, responses),
                               rtol=0, atol=1e-5)
    data = tmp_path / "pairs.jsonl"
    write_jsonl(pairs(6), data)
    capsys.readouterr()
    assert main(["rm", "eval", "--model", str(trl_reward_model), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 6 and result["kind"] == "bt" and result["truncated"] == 0


def test_a_trl_reward_model_judges_an_online_run(trl_reward_model, tmp_path, capsys):
    out = tmp_path / "online"
    assert main(["train", "--method", "online_dpo", "--world", "transitive", "--model", "tiny", "--out", str(out),
                 f"online.judge={trl_reward_model}", "online.prompts_per_step=2", "online.max_new_tokens=4",
                 "train.steps=2", *TINY, "eval.prompts=2", "eval.samples=1", "eval.max_new_tokens=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics.get("queries", 0) > 0


def test_more_than_one_label_is_not_a_reward(tmp_path, capsys):
    tok = chatml_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_labels=3, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "three")
    tok.save_pretrained(tmp_path / "three")
    with pytest.raises(InputError, match=r"3 labels .* a reward needs exactly one label \(num_labels=1\)"):
        load_preference_model(tmp_path / "three")
    data = tmp_path / "pairs.jsonl"
    write_jsonl(pairs(2), data)
    assert main(["rm", "eval", "--model", str(tmp_path / "three"), "--data", str(data)]) == 2
    assert "num_labels=1" in capsys.readouterr().err


def test_gpm_and_encoder_models_keep_prefkits_format(tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_jsonl(pairs(), data)
    assert main(["rm", "train", "--kind", "gpm", "--data", str(data), "--model", "tiny", "--out",
                 str(tmp_path / "gpm"), *TINY, "train.steps=2"]) == 0
    manifest = json.loads((tmp_path / "gpm" / "model" / "preference_model.json").read_text())
    assert "weights" not in manifest and (tmp_path / "gpm" / "model" / "head.safetensors").is_file()
    assert main(["rm", "train", "--kind", "bt", "--data", str(data), "--model", "tiny", "--out",
                 str(tmp_path / "mean"), *TINY, "train.steps=2", "rm.pooling=mean"]) == 0
    assert (tmp_path / "mean" / "model" / "head.safetensors").is_file()


def test_a_huge_row_is_tokenized_only_as_far_as_truncation_keeps_and_gives_the_same_batch():
    """A response of ~400k characters: the standard reward model's rows take the bounded path
    (a window of the text, not the whole) and collate to the batch the whole tokenization gives."""
    import random

    from prefkit.config import TinyConfig
    from prefkit.policy.chat import prompt_completion_ids
    from prefkit.preference.seqcls import reward_model_for_training

    rng = random.Random(0)
    words = [f"w{i}" for i in range(50)]
    huge = " " + " ".join(rng.choice(words) for _ in range(80_000))
    prompt = "tell me " + " ".join(rng.choice(words) for _ in range(30))
    model = reward_model_for_training("tiny", [prompt, huge, " short answer"], TinyConfig(hidden_size=16, layers=1,
                                      heads=2), seed=0, max_length=32, dropout=0.0, freeze_backbone=False,
                                      device=torch.device("cpu"))
    backbone = model.backbone
    (row,) = backbone.prepare([prompt], [huge])
    assert len(row[1]) <= backbone.max_length + 2  # the response's start (and its eos), not 80k tokens
    whole = [list(ids) for ids in [*prompt_completion_ids(backbone.tokenizer, prompt, [huge])[:1],
                                   prompt_completion_ids(backbone.tokenizer, prompt, [huge])[1][0]]]
    assert len(whole[1]) > 10_000
    bounded_batch, whole_batch = backbone.collate([row]), backbone.collate([whole])
    assert torch.equal(bounded_batch.input_ids, whole_batch.input_ids)
    assert torch.equal(bounded_batch.attention_mask, whole_batch.attention_mask)
