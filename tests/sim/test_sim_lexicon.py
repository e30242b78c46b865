import numpy as np

from prefkit.sim import lexicon as lx
from prefkit.sim import make_world, text


def test_every_word_has_exactly_one_role():
    lx.check_lexicon()
    assert len(set(lx.prompt_words()) & set(lx.response_words())) == 0


def test_vocabulary_is_small_lowercase_and_covers_prompts_and_base_responses():
    world = make_world("transitive")
    vocab = set(world.vocabulary())
    assert 100 <= len(vocab) <= 300
    assert all(w.isalpha() and w == w.lower() for w in vocab)
    prompts = world.prompts("train") + world.prompts("eval")
    assert all(2 <= len(p.split()) <= 5 for p in prompts)
    assert {w for p in prompts for w in p.split()} <= vocab
    responses = [r for row in world.base_responses(prompts[:50], 20, np.random.default_rng(0)) for r in row]
    assert {w for r in responses for w in r.split()} <= vocab
    lengths = [len(r.split()) for r in responses]
    assert min(lengths) >= 3 and max(lengths) <= 12
    assert all(r == " ".join(r.split()) for r in responses)  # single spaces, no padding


def test_parse_reads_opener_body_and_unknown_words():
    parsed = text.parse(["certainly water salt", "water certainly", "", "sure", "zzz  yyy zzz"])
    assert parsed.style.tolist() == [0, lx.NO_STYLE, lx.NO_STYLE, lx.NO_STYLE, lx.NO_STYLE]
    assert parsed.length.tolist() == [2, 2, 0, 0, 3]
    first, repeats = text.class_counts(parsed, np.array([0, 0, 0, 0, 0]))
    assert first[0].tolist() == [2, 0, 0, 0, 0, 0]  # two on-topic ocean words
    assert first[1].tolist() == [1, 0, 0, 0, 0, 1]  # an opener inside the body is "other"
    # Distinct unknown words are not repeats of each other; the second "zzz" is.
    assert first[4, lx.OTHER] == 2 and repeats[4, lx.OTHER] == 1
