import math

import numpy as np
import pytest

from prefkit.sim import GeneratorConfig, make_world
from prefkit.sim import lexicon as lx
from prefkit.sim.evaluation import (
    best_of_n,
    candidate_pool,
    evaluate,
    evaluate_policy,
    style_mixture,
    win_matrix,
)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_policy_equal_to_reference_wins_exactly_half():
    world = make_world("cyclic")
    prompts = world.prompts("eval", 10)
    samples = world.base_responses(prompts, 6, np.random.default_rng(0))
    ev = evaluate(world, prompts, samples, samples)
    assert ev.win_rate == pytest.approx(0.5, abs=1e-12)
    assert ev.win_rate_se == pytest.approx(0.0, abs=1e-12)
    assert ev.kl is None and ev.exploitability is None


def test_win_rate_kl_and_their_standard_errors_by_hand():
    world = make_world("transitive")
    prompts = ["describe reefs briefly", "explain storms"]
    # Utilities (a=5, gamma=0.3, no opener so no bonus):
    #   reefs briefly (L*=4): "water salt waves fish" 5; "the the" -2.5-0.6 = -3.1;
    #                         "fish coral tide stupid lazy" -1-0.3 = -1.3
    #   storms (L*=7): "cloud wind snow" 5-1.2 = 3.8; "cloud" 5-1.8 = 3.2; "ugh" -10-1.8 = -11.8
    policy = [["water salt waves fish"], ["cloud wind snow"]]
    ref = [["the the", "fish coral tide stupid lazy"], ["cloud", "ugh"]]
    np.testing.assert_allclose(world.utility(prompts * 2, ["water salt waves fish", "cloud wind snow",
                                                           "the the", "cloud"]), [5, 3.8, -3.1, 3.2])
    w1 = (sigmoid(8.1) + sigmoid(6.3)) / 2
    w2 = (sigmoid(0.6) + sigmoid(15.6)) / 2
    ev = evaluate(world, prompts, policy, ref, policy_logps=[[-1.0], [-2.0]],
                  ref_logps_of_policy_samples=[[-3.0], [-2.5]])
    assert ev.win_rate == pytest.approx((w1 + w2) / 2, abs=1e-12)
    assert ev.win_rate_se == pytest.approx(abs(w1 - w2) / 2, abs=1e-12)
    assert ev.kl == pytest.approx(1.25) and ev.kl_se == pytest.approx(0.75)
    assert ev.mean_utility == pytest.approx(4.4) and ev.mean_length == pytest.approx(3.5)
    assert ev.n_prompts == 2 and ev.n_samples == 2


def test_kl_estimator_is_unbiased_on_known_generators():
    p_gen = GeneratorConfig()
    q_gen = GeneratorConfig(opener_prob=0.8, style_probs=(0.2, 0.3, 0.5),
                            class_probs=(0.5, 0.2, 0.2, 0.05, 0.05))
    ref_world = make_world("transitive", generator=p_gen)
    policy_world = make_world("transitive", generator=q_gen)
    # Exact KL(q || p): opener categorical + E[L] * KL of the word class (same length law;
    # the word given its class is uniform under both, so it cancels).
    o_q, o_p = q_gen.opener_prob, p_gen.opener_prob
    kl_opener = (1 - o_q) * math.log((1 - o_q) / (1 - o_p)) + sum(
        o_q * sq * math.log(o_q * sq / (o_p * sp)) for sq, sp in zip(q_gen.style_probs, p_gen.style_probs)
    )
    kl_class = sum(qc * math.log(qc / pc) for qc, pc in zip(q_gen.class_probs, p_gen.class_probs))
    exact = kl_opener + (p_gen.min_length + p_gen.max_length) / 2 * kl_class

    rng = np.random.default_rng(0)
    prompts = ref_world.prompts("eval")
    samples = policy_world.base_responses(prompts, 30, rng)
    flat_p = [p for p, row in zip(prompts, samples) for _ in row]
    flat_y = [y for row in samples for y in row]
    lq = policy_world.base_logprob(flat_p, flat_y).reshape(len(prompts), 30)
    lp = ref_world.base_logprob(flat_p, flat_y).reshape(len(prompts), 30)
    ref = ref_world.base_responses(prompts, 4, rng)
    ev = evaluate(ref_world, prompts, samples, ref, policy_logps=lq, ref_logps_of_policy_samples=lp)
    assert abs(ev.kl - exact) < 4 * ev.kl_se
    assert ev.kl_se < 0.1 * exact
    same = evaluate(ref_world, prompts, samples, ref, policy_logps=lq, ref_logps_of_policy_samples=lq)
    assert same.kl == 0.0


def test_exploitability_of_the_style_nash_mixture_and_of_a_pure_style():
    world = make_world("cyclic")
    rng = np.random.default_rng(0)
    prompts = world.prompts("eval", 20)
    # Same body for every style, so the game between them is exactly world.style_game.
    pool = {s: [[world.ideal_response(p, s)] for p in prompts] for s in lx.STYLES}
    ref = [[world.ideal_response(p, "none")] for p in prompts]
    nash = []
    for p in prompts:
        pi = world.style_nash(p)
        styles = rng.choice(4, size=400, p=pi)
        nash.append([world.ideal_response(p, "none" if s == lx.NO_STYLE else lx.STYLES[s]) for s in styles])
    ev = evaluate(world, prompts, nash, ref, pool=pool)
    # For any mixture some pure style wins at least 1/2 (the symmetric game's value is 0).
    assert -1e-12 <= ev.exploitability < 0.02
    formal = pool["formal"]
    ev = evaluate(world, prompts, formal, ref, pool=pool)
    expected = np.mean([world.style_game(p)[2, 0] for p in prompts]) - 0.5  # playful beats formal
    assert ev.exploiter == "playful"
    assert ev.exploitability == pytest.approx(expected, abs=1e-12) and ev.exploitability > 0.4


def test_candidate_pool_exploits_a_committed_policy_not_the_mixture():
    world = make_world("cyclic")
    rng = np.random.default_rng(1)
    prompts = world.prompts("eval", 40)
    pool = candidate_pool(world, prompts, 6, rng)
    assert set(pool) == {"base", "best_of_16", "style_formal", "style_casual", "style_playful", "style_nash"}
    ref = world.base_responses(prompts, 6, rng)
    committed = evaluate(world, prompts, best_of_n(world, prompts, 6, 16, rng, style="casual"), ref, pool=pool)
    assert committed.exploiter == "style_formal" and committed.exploitability > 0.3
    mixed = evaluate(world, prompts, style_mixture(world, prompts, 6, 16, rng), ref, pool=pool)
    assert mixed.exploitability < 0.06
    assert mixed.win_rate > 0.8  # good bodies still beat the base generator


def test_best_of_n_raises_utility_and_win_matrix_is_consistent():
    world = make_world("transitive")
    rng = np.random.default_rng(2)
    prompts = world.prompts("eval", 30)
    samples = {
        "base": world.base_responses(prompts, 4, rng),
        "bo4": best_of_n(world, prompts, 4, 4, rng),
        "bo16": best_of_n(world, prompts, 4, 16, rng),
    }
    names, m = win_matrix(world, prompts, samples)
    assert names == ["base", "bo4", "bo16"]
    np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)
    assert (np.diag(m) == 0.5).all()
    assert m[2, 1] > 0.5 and m[1, 0] > 0.5
    ev = evaluate(world, prompts, samples["bo16"], samples["base"])
    assert ev.win_rate == pytest.approx(m[2, 0], abs=1e-12)


def test_evaluate_policy_drives_callables():
    world = make_world("transitive")
    prompts = world.prompts("eval", 12)

    def sampler(seed):
        return lambda ps, n: world.base_responses(ps, n, np.random.default_rng(seed))

    ev = evaluate_policy(world, prompts, sampler(0), sampler(1), 5,
                         logprob_fn=world.base_logprob, ref_logprob_fn=world.base_logprob)
    direct = evaluate(world, prompts, sampler(0)(prompts, 5), sampler(1)(prompts, 5),
                      policy_logps=[[0.0] * 5] * 12, ref_logps_of_policy_samples=[[0.0] * 5] * 12)
    assert ev.win_rate == direct.win_rate and ev.kl == 0.0


def test_bad_inputs_are_clear_errors():
    world = make_world("transitive")
    prompts = ["explain reefs", "explain storms"]
    good = [["water"], ["snow"]]
    with pytest.raises(ValueError, match="rows for 2 prompts"):
        evaluate(world, prompts, [["water"]], good)
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate(world, prompts, [["water"], []], good)
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate(world, prompts, ["water", "snow"], good)
    with pytest.raises(ValueError, match="both"):
        evaluate(world, prompts, good, good, policy_logps=[[0.0], [0.0]])
    with pytest.raises(ValueError, match="one value per policy sample"):
        evaluate(world, prompts, good, good, policy_logps=[[0.0], [0.0, 1.0]],
                 ref_logps_of_policy_samples=[[0.0], [0.0]])
    with pytest.raises(ValueError, match="at least one prompt"):
        evaluate(world, [], [], [])
