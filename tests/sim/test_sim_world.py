import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.data.records import ListRecord, PairRecord
from prefkit.sim import POOLS, WORLDS, Annotator, GeneratorConfig, make_world, nash_equilibrium
from prefkit.sim import lexicon as lx


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def bonus(world, topic, style):
    return world.style_bonus_table[topic, lx.STYLES.index(style)]


def test_worlds_registry_and_unknown_names():
    assert {"transitive", "cyclic", "noisy"} <= set(WORLDS)
    with pytest.raises(ValueError, match="did you mean 'cyclic'"):
        make_world("cyclc")
    with pytest.raises(ValueError, match="did you mean 'annotators'"):
        make_world("transitive", annotator="clean")
    with pytest.raises(ValueError, match="unknown annotator pool"):
        make_world("transitive", annotators="humans")
    assert make_world("cyclic", annotators="alpacafarm").pool == POOLS["alpacafarm"]
    assert make_world("transitive").pool == POOLS["alpacafarm"]
    assert make_world("noisy").pool == POOLS["length_biased"]


def test_prompt_splits_are_disjoint_seeded_and_deterministic():
    a, b, other = make_world("transitive", seed=3), make_world("cyclic", seed=3), make_world("transitive", seed=4)
    train, evals = a.prompts("train"), a.prompts("eval")
    assert len(train) == 360 and len(evals) == 120 and not set(train) & set(evals)
    assert train == b.prompts("train")  # the split depends on the seed, not the world
    assert set(train) != set(other.prompts("train"))
    assert a.prompts("eval", 3) == evals[:3]
    assert a.prompts("eval", 125)[120:] == evals[:5]
    drawn = a.prompts("train", 50, rng=np.random.default_rng(0))
    assert drawn == a.prompts("train", 50, rng=np.random.default_rng(0)) and set(drawn) <= set(train)
    with pytest.raises(ValueError, match="split"):
        a.prompts("test")


def test_same_seed_gives_the_same_data():
    def data(seed):
        world = make_world("transitive", seed=seed)
        rng = np.random.default_rng(seed)
        return world.pairs(30, rng), world.lists(10, 4, rng), world.base_responses(["explain reefs"], 5, rng)

    assert data(1) == data(1)
    assert data(1) != data(2)


def test_utility_worked_examples():
    world = make_world("transitive")
    ocean = 0
    # "briefly": preferred length 4. Body: water(+1) salt(+1) stupid(-2) water(repeat: min(1,0)-1 = -1)
    # -> mean -1/4, times a=5 -> -1.25; length 4 -> no penalty; formal opener bonus for ocean.
    u = world.utility(["describe reefs briefly"], ["certainly water salt stupid water"])[0]
    assert u == pytest.approx(-1.25 + bonus(world, ocean, "formal"), abs=1e-12)
    # No modifier: preferred length 7. Body: reefs (a prompt word: other, -1), zzz (unknown: -1),
    # the (filler, 0) -> mean -2/3 -> -10/3; 3 words is 4 away -> -0.3 * 4; no opener.
    u = world.utility(["explain reefs"], ["reefs zzz the"])[0]
    assert u == pytest.approx(-10 / 3 - 1.2, abs=1e-12)
    # An off-topic prompt (no subject): every topic word is off-topic (-0.4).
    u = world.utility(["hello there"], ["water salt waves fish coral tide shore"])[0]
    assert u == pytest.approx(5 * -0.4, abs=1e-12)


def test_empty_response_is_worst_in_every_world():
    junk = ["ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh ugh", "zzz", "sure hate hate"]
    for name in WORLDS:
        world = make_world(name)
        prompts = ["describe reefs briefly"] * len(junk)
        for empty in ("", "certainly", "   "):
            p = world.true_preference(prompts, [empty] * len(junk), junk)
            assert (p < 0.5).all(), (name, empty, p)


words = st.sampled_from([*make_world("transitive").vocabulary(), "zzz", "qq", "the"])
responses = st.lists(words, max_size=14).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(a=responses, b=responses, prompt=st.sampled_from(["explain reefs", "describe storms briefly", "hi"]))
def test_true_preference_is_a_preference(a, b, prompt):
    for name in ("transitive", "cyclic"):
        world = make_world(name)
        ab = world.true_preference([prompt], [a], [b])[0]
        ba = world.true_preference([prompt], [b], [a])[0]
        assert 0.0 <= ab <= 1.0
        assert ab + ba == pytest.approx(1.0, abs=1e-12)
        assert world.true_preference([prompt], [a], [a])[0] == 0.5


def test_transitive_world_orders_by_utility_and_has_no_cycles():
    world = make_world("transitive")
    rng = np.random.default_rng(0)
    for prompt in world.prompts("eval", 5):
        responses = world.base_responses([prompt], 40, rng)[0]
        m = world.preference_matrix(prompt, responses)
        u = world.utility([prompt] * len(responses), responses)
        beats = m > 0.5
        assert np.array_equal(beats, u[:, None] > u[None, :])
        # no 3-cycle i > j > k > i
        assert not np.einsum("ij,jk,ki->", beats.astype(int), beats.astype(int), beats.astype(int))


def test_cyclic_world_has_a_preference_cycle():
    world = make_world("cyclic")
    prompt = "discuss guitars briefly"
    formal, casual, playful = (world.ideal_response(prompt, s) for s in lx.STYLES)
    p = world.true_preference([prompt] * 3, [formal, casual, playful], [casual, playful, formal])
    assert (p > 0.9).all()  # formal > casual > playful > formal, each strongly
    # The transitive world ranks the same three responses by the style bonus alone.
    transitive = make_world("transitive")
    q = transitive.true_preference([prompt] * 3, [formal, casual, playful], [casual, playful, formal])
    assert (q > 0.5).sum() in (1, 2)


def test_style_game_and_its_nash_equilibrium():
    cyclic, transitive = make_world("cyclic"), make_world("transitive")
    for prompt in cyclic.prompts("eval", 8):
        g = cyclic.style_game(prompt)
        np.testing.assert_allclose(g + g.T, 1.0, atol=1e-12)
        pi = cyclic.style_nash(prompt)
        assert pi.sum() == pytest.approx(1.0) and pi[lx.NO_STYLE] == pytest.approx(0.0, abs=1e-9)
        assert (pi @ g >= 0.5 - 1e-9).all()  # no pure style beats the equilibrium
        # Nash-MD's rule for a 3-cycle (algorithms.md 2.5): a style's weight is proportional to
        # the advantage on the edge of the cycle it is not part of.
        a = g - 0.5
        edges = {0: a[1, 2], 1: a[2, 0], 2: a[0, 1]}  # formal: casual>playful, ...
        expected = np.array([edges[s] for s in range(3)])
        np.testing.assert_allclose(pi[:3], expected / expected.sum(), atol=1e-6)
        # Without the cycle the equilibrium is the single best style of the topic.
        topic, _ = transitive.prompt_info(prompt)
        best = int(np.argmax(transitive.style_bonus_table[topic, :3]))
        np.testing.assert_allclose(transitive.style_nash(prompt), np.eye(4)[best], atol=1e-9)


def test_nash_equilibrium_of_rock_paper_scissors_is_uniform():
    rps = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    np.testing.assert_allclose(nash_equilibrium(rps), [1 / 3] * 3, atol=1e-9)
    with pytest.raises(ValueError, match="square"):
        nash_equilibrium(np.ones((2, 3)))


def test_ideal_response_beats_every_base_response():
    world = make_world("transitive")
    rng = np.random.default_rng(0)
    for prompt in world.prompts("eval", 6):
        ideal = world.ideal_response(prompt)
        base = world.base_responses([prompt], 300, rng)[0]
        u_ideal = world.utility([prompt], [ideal])[0]
        assert u_ideal >= world.utility([prompt] * 300, base).max() - 1e-12
        # one-word edits do not improve it
        words = ideal.split()
        for i in range(1, len(words)):
            for w in ("the", "clear", "stupid", words[1]):
                edited = " ".join([*words[:i], w, *words[i + 1:]])
                assert world.utility([prompt], [edited])[0] <= u_ideal + 1e-12


def test_base_logprob_is_an_exact_normalised_distribution():
    gen = GeneratorConfig(opener_prob=0.3, min_length=1, max_length=2)
    world = make_world("transitive", generator=gen)
    prompt = "describe storms"
    topic = lx.TOPICS[world.prompt_info(prompt)[0]]
    body_words = sorted({w for t in lx.TOPICS for w in t.words} | set(lx.QUALITY_WORDS)
                        | set(lx.FILLER_WORDS) | set(lx.BAD_WORDS))
    bodies = body_words + [f"{a} {b}" for a in body_words for b in body_words]
    openers = [""] + [w for f in lx.OPENERS.values() for w in f]
    everything = [f"{o} {b}".strip() for o in openers for b in bodies]
    lp = world.base_logprob([prompt] * len(everything), everything)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-9)
    # a single on-topic word without opener: (1 - 0.3) * 1/2 * 0.30/8
    one = world.base_logprob([prompt], [topic.words[0]])[0]
    assert one == pytest.approx(math.log(0.7 * 0.5 * 0.30 / 8))
    # words it never writes, lengths outside its range
    assert world.base_logprob([prompt] * 3, ["zzz", "storms", "the the the"]).tolist() == [-np.inf] * 3
    sampled = world.base_responses([prompt], 50, np.random.default_rng(0))[0]
    assert np.isfinite(world.base_logprob([prompt] * 50, sampled)).all()
    with pytest.raises(ValueError, match="topic"):
        world.base_responses(["hello"], 1, np.random.default_rng(0))


def test_clean_annotators_sample_from_the_true_preference():
    world = make_world("transitive", annotators="clean")
    rng = np.random.default_rng(0)
    prompts = world.prompts("train", 20000, rng=rng)
    drawn = world.base_responses(prompts, 2, rng)
    a, b = [r[0] for r in drawn], [r[1] for r in drawn]
    p = world.true_preference(prompts, a, b)
    ann = world.annotate_detailed(prompts, a, b, rng)
    np.testing.assert_allclose(ann.prob, p)
    assert not ann.flipped.any()
    se = np.sqrt(np.mean(p * (1 - p)) / len(p))
    assert abs(ann.labels.mean() - p.mean()) < 4 * se


def test_alpacafarm_annotators_flip_a_quarter_of_labels():
    world = make_world("transitive")  # alpacafarm pool
    rng = np.random.default_rng(1)
    n = 20000
    prompts = world.prompts("train", n, rng=rng)
    best = {p: world.ideal_response(p) for p in set(prompts)}
    ideal = [best[p] for p in prompts]
    # Against an empty response every annotator is certain, so wrong labels are the flips.
    ann = world.annotate_detailed(prompts, ideal, [""] * n, rng)
    assert ann.prob.min() > 1 - 1e-5
    se = math.sqrt(0.25 * 0.75 / n)
    assert abs(ann.flipped.mean() - 0.25) < 4 * se
    assert abs((1 - ann.labels.mean()) - 0.25) < 4 * se
    counts = np.bincount(ann.annotator, minlength=len(world.pool))
    assert (counts > n / len(world.pool) * 0.9).all()


def _length_excess(world, n, seed):
    """Mean label minus what an unbiased annotator with the same flips would give, on pairs
    where a is longer than b."""
    rng = np.random.default_rng(seed)
    prompts = world.prompts("train", n, rng=rng)
    drawn = world.base_responses(prompts, 2, rng)
    a, b = [r[0] for r in drawn], [r[1] for r in drawn]
    longer = np.array([len(x.split()) > len(y.split()) + 2 for x, y in zip(a, b)])
    pick = np.flatnonzero(longer)
    prompts, a, b = [prompts[i] for i in pick], [a[i] for i in pick], [b[i] for i in pick]
    ann = world.annotate_detailed(prompts, a, b, rng)
    flip = np.array([world.pool[k].flip for k in ann.annotator])
    unbiased = flip + (1 - 2 * flip) * world.true_preference(prompts, a, b)
    return float(np.mean(ann.labels - unbiased)), float(np.sqrt(0.25 / len(pick)))


def test_length_bias_is_measurable():
    excess, se = _length_excess(make_world("noisy"), 20000, 0)
    assert excess > 0.05 and excess > 6 * se
    excess, se = _length_excess(make_world("transitive", annotators="clean"), 20000, 0)
    assert abs(excess) < 4 * se


def test_custom_annotator_pool():
    pool = (Annotator("always_flips", flip=0.5), Annotator("careful", weight=3.0))
    world = make_world("transitive", annotators=pool)
    ann = world.annotate_detailed(["explain reefs"] * 4000, ["water"] * 4000, ["ugh"] * 4000,
                                  np.random.default_rng(0))
    assert abs((ann.annotator == 1).mean() - 0.75) < 0.03
    with pytest.raises(ValueError, match="unique"):
        make_world("transitive", annotators=(Annotator("x"), Annotator("x")))
    with pytest.raises(ValueError, match="flip"):
        Annotator("x", flip=0.7)


def test_pairs_records():
    world = make_world("transitive", annotators="clean")
    rng = np.random.default_rng(0)
    records = world.pairs(400, rng)
    assert len(records) == 400 and all(isinstance(r, PairRecord) for r in records)
    assert all(r.chosen != r.rejected and r.annotator == "truth" for r in records)
    train = set(world.prompts("train"))
    assert all(r.prompt in train for r in records)
    assert all(r.prompt in set(world.prompts("eval")) for r in world.pairs(20, rng, split="eval"))

    def agreement(recs):
        u_c = world.utility([r.prompt for r in recs], [r.chosen for r in recs])
        u_r = world.utility([r.prompt for r in recs], [r.rejected for r in recs])
        return np.mean(u_c > u_r), np.mean(u_c - u_r)

    agree2, gap2 = agreement(records)
    agree4, gap4 = agreement(world.pairs(400, rng, responses_per_prompt=4))
    assert agree2 > 0.7 and agree4 > agree2
    assert gap4 > gap2  # best-vs-worst of 4 spreads the pair further apart


def test_lists_scores_are_lipo_win_fractions():
    world = make_world("cyclic")
    records = world.lists(50, 5, np.random.default_rng(0))
    assert all(isinstance(r, ListRecord) and len(r.responses) == 5 for r in records)
    for r in records:
        # (1/K) * sum_i (wins_i + 1/2) = (K(K-1)/2 + K/2) / K = K/2
        assert sum(r.scores) == pytest.approx(2.5)
        assert all(0.1 <= s <= 0.9 for s in r.scores)
        assert all(round(s * 10) == s * 10 for s in r.scores)  # multiples of 1/(2K)
    with pytest.raises(ValueError, match="k must be"):
        world.lists(2, 1, np.random.default_rng(0))


def test_bad_inputs_are_clear_errors():
    world = make_world("transitive")
    with pytest.raises(ValueError, match="equal length"):
        world.true_preference(["explain reefs"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match=r"prompts\[0\] must be a string"):
        world.utility([[{"role": "user", "content": "explain reefs"}]], ["water"])
    with pytest.raises(ValueError, match=r"responses\[0\] must be a string"):
        world.utility(["explain reefs"], [None])
    with pytest.raises(ValueError, match="style"):
        world.base_responses(["explain reefs"], 1, np.random.default_rng(0), style="rude")
    with pytest.raises(ValueError, match="class_probs"):
        GeneratorConfig(class_probs=(0.5, 0.5, 0.5, 0.0, 0.0))


def test_describe_names_the_preference_and_pool():
    text = make_world("noisy").describe()
    assert "P*(a>b|x)" in text and "length_biased" in text and "flip 0.25" in text
