import random

import pytest

from prefkit.policy.tokenizer import (
    SPECIAL_TOKENS,
    TEMPLATE_WORDS,
    count_words,
    fit_word_tokenizer,
)

TEXTS = ["b a c a", "c b a , d", "e !"]
# counts: a 3, b 2, c 2, "," 1, d 1, e 1, "!" 1


def test_vocabulary_is_specials_template_words_then_most_frequent_with_ties_by_word():
    tokenizer = fit_word_tokenizer(TEXTS, max_vocab=len(SPECIAL_TOKENS) + len(TEMPLATE_WORDS) + 4)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    words = [word for word, _ in vocab]
    assert words == [*SPECIAL_TOKENS, *TEMPLATE_WORDS, "a", "b", "c", "!"]
    # "!" "," "d" "e" all occur once: ties go to the smallest string, "!" < "," < "d" < "e".
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id) == (0, 1)
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id) == (2, 3)


def test_vocabulary_does_not_depend_on_text_order():
    forward = fit_word_tokenizer(TEXTS, max_vocab=12).get_vocab()
    backward = fit_word_tokenizer(TEXTS[::-1], max_vocab=12).get_vocab()
    assert forward == backward
    assert len(forward) == 12


def test_unknown_words_map_to_unk():
    tokenizer = fit_word_tokenizer(TEXTS, max_vocab=9)  # specials, template words, "a"
    ids = tokenizer("a zebra b", add_special_tokens=False)["input_ids"]
    assert ids == [8, tokenizer.unk_token_id, tokenizer.unk_token_id]


def test_count_words_uses_whitespace_pre_tokenizer():
    assert count_words(["hi, there!! hi"]) == {"hi": 2, ",": 1, "there": 1, "!!": 1}


def test_decode_then_encode_round_trips_every_id_sequence():
    tokenizer = fit_word_tokenizer(["x , y . z !! w", "hello world ?"], max_vocab=64)
    vocab_size = len(tokenizer)
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(vocab_size) for _ in range(rng.randint(0, 12))]
        text = tokenizer.decode(ids, skip_special_tokens=False)
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids, text


def test_chat_template_renders_role_lines_and_generation_prompt_with_known_words():
    tokenizer = fit_word_tokenizer(["hi there"], max_vocab=64)
    messages = [{"role": "system", "content": "hi"}, {"role": "user", "content": "there"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s>system: hi\nuser: there\nassistant:"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    # an assistant turn ends with the eos, like ChatML's <|im_end|>
    full = [*messages, {"role": "assistant", "content": "hi"}]
    assert tokenizer.apply_chat_template(full, tokenize=False) == "<s>system: hi\nuser: there\nassistant: hi</s>\n"


def test_the_tokenizer_itself_adds_the_bos():
    tokenizer = fit_word_tokenizer(["hi there"], max_vocab=64)
    assert tokenizer("hi there")["input_ids"] == [tokenizer.bos_token_id, *tokenizer("hi there", add_special_tokens=False)["input_ids"]]


def test_too_small_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="max_vocab must be at least 8"):
        fit_word_tokenizer(TEXTS, max_vocab=7)
