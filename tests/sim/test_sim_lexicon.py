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


def test_parse_is_the_same_one_by_one_and_with_the_separator_character_inside():
    responses = ["certainly water salt", "", "zzz \x01 the", "ugh\x01 ugh", "sure"]
    together = text.parse(responses)
    for i, r in enumerate(responses):
        alone = text.parse([r])
        assert together.length[i] == alone.length[0] and together.style[i] == alone.style[0]
    assert together.length.tolist() == [2, 0, 3, 2, 0]
    # without the separator inside any response the fast path must agree too
    clean = [r.replace("\x01", "q") for r in responses]
    assert text.parse(clean).length.tolist() == [2, 0, 3, 2, 0]


def test_importing_sim_does_not_import_torch_engine_or_policy():
    import subprocess
    import sys

    code = ("import sys, prefkit.sim; bad = [m for m in ('torch', 'prefkit.engine', 'prefkit.policy') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
