"""Token counts for length checks: the built-in whitespace count and a local HF tokenizer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.data import (
    InvalidRowsError,
    hf_counter,
    read_pairs,
    render_plain,
    validate,
    whitespace_counter,
)
from prefkit.data.tokens import TokenCounter
from prefkit.errors import InputError


def test_whitespace_count_matches_the_pre_tokenizer_regex():
    counter = whitespace_counter()
    assert counter.count("Hello, world!") == 4  # Hello , world !
    assert counter.count("it's 3.5%...") == 7  # it ' s 3 . 5 %...
    assert counter.count("  ") == 0
    assert counter.special_tokens == 2
    assert counter.sequence_length("The sky is", " blue.") == 3 + 2 + 2


def test_conversations_are_counted_on_role_content_lines():
    chat = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "yo"}]
    assert render_plain(chat) == "user: hi there\nassistant: yo"
    assert whitespace_counter().count(render_plain(chat)) == 7


def test_over_length_rows_are_counted_or_refused(jsonl):
    path = jsonl([
        {"prompt": "one two", "chosen": "three", "rejected": "four"},  # 2 + 1 + 2 = 5 tokens
        {"prompt": "one two", "chosen": "three four five six", "rejected": "x"},  # 2 + 4 + 2 = 8
        {"prompt": "a b c d e f", "chosen": "x", "rejected": "y"},  # 6 + 1 + 2 = 9; prompt alone 8
    ])
    records, report = read_pairs(path, max_length=5)
    assert len(records) == 3 and report.truncated == [2, 3]
    assert report.max_length == 5
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path, max_length=5, truncation="error")
    assert [(e.line, e.field) for e in caught.value.errors] == [(2, "chosen"), (3, "prompt")]
    assert "prompt + chosen is 8 tokens, over max_length 5" in caught.value.errors[0].reason
    assert read_pairs(path, max_length=8)[1].truncated == [3]
    assert read_pairs(path, max_length=9)[1].truncated == []


def test_validate_measures_lengths(jsonl):
    path = jsonl([
        {"prompt": "one two", "chosen": "three", "rejected": "four five"},
        {"prompt": "a", "chosen": "b", "rejected": "c"},
    ])
    report = validate(path)
    assert report.prompt_tokens.to_json() == {"count": 2, "min": 1, "mean": 1.5, "median": 1.5, "p95": 1.95, "max": 2}
    # sequences: 2 + 1 + 2 = 5, 2 + 2 + 2 = 6, 1 + 1 + 2 = 4 (twice)
    assert (report.sequence_tokens.min, report.sequence_tokens.max, report.sequence_tokens.mean) == (4, 6, 4.75)


def test_a_plain_callable_counts_without_specials(jsonl):
    path = jsonl([{"prompt": "abc", "chosen": "de", "rejected": "f"}])
    report = validate(path, count_tokens=len, max_length=4)
    assert report.sequence_tokens.max == 5 and report.truncated == [1]
    assert isinstance(TokenCounter(len, 0, "chars").count("ab"), int)


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tmp_path_factory):
    """A word-level tokenizer built and saved locally (no download): adds bos, no eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "the": 3, "cat": 4, "sat": 5, ".": 6}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    directory = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(str(directory))
    return directory


def test_hf_counter_from_a_local_directory(tiny_tokenizer_dir, jsonl):
    counter = hf_counter(tiny_tokenizer_dir)
    assert counter.count("the cat sat.") == 4
    assert counter.special_tokens == 2  # bos added by the tokenizer + eos appended to the response
    path = jsonl([{"prompt": "the cat", "chosen": "sat .", "rejected": "sat"}])
    report = validate(path, count_tokens=counter)
    assert report.sequence_tokens.max == 2 + 2 + 2
    assert report.tokenizer == str(tiny_tokenizer_dir)


def test_hf_counter_needs_a_directory(tmp_path):
    with pytest.raises(InputError, match="tokenizer must be a local directory"):
        hf_counter(tmp_path / "missing")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=60))
def test_ascii_fast_path_counts_what_the_pre_tokenizer_counts(text):
    from tokenizers.pre_tokenizers import Whitespace

    assert whitespace_counter().count(text) == len(Whitespace().pre_tokenize_str(text))


def test_non_ascii_text_uses_the_pre_tokenizer():
    assert whitespace_counter().count("café naïve — ok") == 4  # café naïve — ok
