"""Backbones: the segment layout, truncation, pooling, pad handling, kind detection."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, LlamaConfig, T5Config

from prefkit.errors import InputError
from prefkit.policy.tokenizer import fit_word_tokenizer
from prefkit.preference.backbone import (
    FeatureBackbone,
    TextBackbone,
    _waterfill,
    detect_backbone_kind,
    render_prompt,
    render_response,
    tiny_backbone,
)
from tests.preference.conftest import TEXTS, TINY


@pytest.fixture(scope="module")
def backbone() -> TextBackbone:
    return tiny_backbone(TEXTS, TINY, seed=0, max_length=12)


def test_layout_is_start_prompt_sep_responses_sep(backbone):
    tok = backbone.tokenizer
    short = backbone.collate(backbone.prepare(["hello there"], ["a funny joke"]))
    assert tok.convert_ids_to_tokens(short.input_ids[0].tolist()) == [
        "<s>", "hello", "there", "</s>", "a", "funny", "joke", "</s>"]
    assert short.prompt_end.tolist() == [3]
    assert short.attention_mask.tolist() == [[1] * 8]
    assert short.truncated.tolist() == [False]
    pair = backbone.collate(backbone.prepare(["hello"], ["a joke"], ["no"]))
    assert tok.convert_ids_to_tokens(pair.input_ids[0].tolist()) == [
        "<s>", "hello", "</s>", "a", "joke", "</s>", "no", "</s>"]


def test_truncation_keeps_prompt_end_and_response_starts(backbone):
    tok = backbone.tokenizer
    rows = backbone.prepare(["what is the sky what is the sky"], ["the sky is blue the sky"], ["a funny joke"])
    batch = backbone.collate(rows)
    words = tok.convert_ids_to_tokens(batch.input_ids[0].tolist())
    # 12 tokens: start + 3 separators leave 8; the prompt keeps >= 8 // 3 = 2 of its end, and the
    # responses share the remaining 6 (the 3-word one whole, the other its first 3 words).
    assert len(words) == 12
    assert words == ["<s>", "the", "sky", "</s>", "the", "sky", "is", "</s>", "a", "funny", "joke", "</s>"]
    assert batch.truncated.tolist() == [True]
    with pytest.raises(InputError, match="max_length=12"):
        backbone.collate(rows, truncation="error")


def test_waterfill_keeps_short_responses_whole():
    assert _waterfill([2, 10, 10], 12) == [2, 5, 5]
    assert _waterfill([3, 4], 10) == [3, 4]
    assert _waterfill([7, 7], 9) == [4, 5]  # the whole budget is used
    assert sum(_waterfill([1, 50, 8, 30], 20)) <= 20


def test_pooling_ignores_padding_and_batch_neighbours(backbone):
    backbone.eval()
    rows = backbone.prepare(["hello there", "what is the sky"], ["a funny joke", "the sky is blue and green"])
    with torch.no_grad():
        together, prompt_together = backbone(backbone.collate(rows))
        alone, prompt_alone = backbone(backbone.collate(rows[:1]))
    torch.testing.assert_close(together[0], alone[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(prompt_together[0], prompt_alone[0], rtol=1e-5, atol=1e-6)


def test_causal_prompt_vector_depends_on_the_prompt_only(backbone):
    backbone.eval()
    rows = backbone.prepare(["hello there", "hello there"], ["a funny joke", "no"])
    with torch.no_grad():
        pooled, prompt = backbone(backbone.collate(rows))
    torch.testing.assert_close(prompt[0], prompt[1])
    assert not torch.allclose(pooled[0], pooled[1])


def test_mean_pooling_is_the_masked_mean(backbone):
    mean = TextBackbone(backbone.model, backbone.tokenizer, kind="causal", pooling="mean", max_length=64)
    batch = mean.collate(mean.prepare(["hello", "what is the sky"], ["a funny joke", "no"]))
    with torch.no_grad():
        pooled, _ = mean(batch)
        hidden = backbone.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    n1 = int(batch.attention_mask[1].sum())
    torch.testing.assert_close(pooled[1], hidden[1, :n1].mean(0), rtol=1e-5, atol=1e-6)


def test_conversations_render_through_the_chat_template(backbone):
    prompt = [{"role": "user", "content": "tell me a joke"}]
    assert render_prompt(backbone.tokenizer, prompt) == "<s>user: tell me a joke\nassistant:"
    # the template's <s> is the start token: the prompt segment does not carry it twice
    (row,) = backbone.prepare([prompt], ["no joke"])
    assert row[0][0] != backbone.tokenizer.bos_token_id
    assert render_response([{"role": "assistant", "content": "no joke"}]) == "no joke"
    with pytest.raises(ValueError, match="only assistant"):
        render_response([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="role"):
        render_prompt(backbone.tokenizer, [{"content": "x"}])


def test_a_causal_tokenizer_without_pad_pads_with_eos(backbone):
    tokenizer = fit_word_tokenizer(TEXTS, 64)
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    pb = TextBackbone(backbone.model, tokenizer, kind="causal")
    assert pb.pad_id == tokenizer.eos_token_id and pb.pad_source == "eos"


def test_an_unusable_pad_token_is_a_clear_error(backbone):
    tokenizer = fit_word_tokenizer(TEXTS, 64)
    tokenizer.pad_token, tokenizer.eos_token = None, None
    with pytest.raises(InputError, match="sep nor an eos"):
        TextBackbone(backbone.model, tokenizer, kind="causal")
    encoder_tok = fit_word_tokenizer(TEXTS, 64)
    encoder_tok.pad_token = None
    with pytest.raises(InputError, match="no usable pad token"):
        TextBackbone(backbone.model, encoder_tok, kind="encoder")


def test_backbone_kind_detection():
    assert detect_backbone_kind(BertConfig()) == "encoder"
    assert detect_backbone_kind(LlamaConfig()) == "causal"
    assert detect_backbone_kind(LlamaConfig(architectures=["LlamaModel"])) == "causal"
    with pytest.raises(InputError, match="encoder-decoder"):
        detect_backbone_kind(T5Config())


def test_load_backbone_refuses_bin_only_and_missing_dirs(tmp_path):
    from prefkit.preference import load_backbone

    with pytest.raises(InputError, match=r"no config\.json"):
        load_backbone(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(InputError, match=r"does not unpickle"):
        load_backbone(tmp_path)


def test_feature_backbone_concatenates_segments_and_isolates_the_prompt():
    torch.manual_seed(0)
    fb = FeatureBackbone(2 + 3, hidden=8, layers=1, prompt_dim=2)
    prompts, responses = torch.randn(4, 2), torch.randn(4, 3)
    rows = fb.prepare(prompts, responses)
    x = fb.collate(rows)
    torch.testing.assert_close(x, torch.cat([prompts, responses], 1))
    _, p1 = fb(x)
    _, p2 = fb(torch.cat([prompts, torch.randn(4, 3)], 1))
    torch.testing.assert_close(p1, p2)
    with pytest.raises(ValueError, match=r"expects 5"):
        fb.collate(fb.prepare(prompts, torch.randn(4, 4)))


def test_unseen_words_share_a_zero_unk_embedding(backbone):
    tok = backbone.tokenizer
    ids = backbone.tokenize(["zzz-never-seen hello"])[0]
    assert ids[0] == tok.unk_token_id and ids[-1] != tok.unk_token_id
    table = backbone.model.get_input_embeddings().weight
    assert torch.count_nonzero(table[tok.unk_token_id]) == 0
    assert torch.count_nonzero(table[ids[-1]]) == table.shape[1]
    layer = backbone.model.layers[0]
    with torch.no_grad():
        values = layer.self_attn.v_proj(layer.input_layernorm(table[[tok.unk_token_id]]))
    assert torch.count_nonzero(values) == 0  # an unknown word adds nothing at the first layer
