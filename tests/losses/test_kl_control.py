"""KL controllers: the proportional update, its clipping, state round trips, bad state."""

from __future__ import annotations

import math

import pytest

from prefkit.losses import AdaptiveKLController, FixedKLController


def test_adaptive_controller_worked_numbers():
    c = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    # KL 7.5: error = 7.5/6 - 1 = 0.25, clipped to 0.2; beta *= 1 + 0.2 * 512/10000
    assert math.isclose(c.update(7.5, n_steps=512), 0.1 * (1 + 0.2 * 0.0512))
    # KL 5.4: error -0.1; beta *= 1 - 0.1 * 0.0512
    assert math.isclose(c.update(5.4, n_steps=512), 0.1 * 1.01024 * (1 - 0.00512))
    before = c.value
    c.update(6.0, n_steps=512)  # on target: unchanged
    assert c.value == before


def test_adaptive_controller_steers_towards_the_target():
    c = AdaptiveKLController(0.05, target=2.0, horizon=100)
    for _ in range(20):
        c.update(10.0, n_steps=10)
    assert c.value > 0.05 * 1.01**20  # raised while the KL is above target
    high = c.value
    for _ in range(20):
        c.update(0.0, n_steps=10)
    assert c.value < high


def test_state_dict_round_trip_resumes_the_same_coefficient():
    a = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    a.update(9.0, n_steps=64)
    b = AdaptiveKLController(1.0, target=1.0, horizon=1)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert b.update(3.0, n_steps=64) == a.update(3.0, n_steps=64)
    f = FixedKLController(0.0067)
    g = FixedKLController(1.0)
    g.load_state_dict(f.state_dict())
    assert g.update(100.0, n_steps=1) == 0.0067


def test_bad_settings_and_states_are_refused():
    with pytest.raises(ValueError, match="target must be a finite number > 0"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="current_kl must be a finite number"):
        AdaptiveKLController(0.1, target=1.0, horizon=10).update(float("nan"), n_steps=1)
    with pytest.raises(ValueError, match="from a 'fixed' KL controller, not a 'adaptive' one"):
        AdaptiveKLController(0.1, 1.0, 10).load_state_dict(FixedKLController(0.1).state_dict())
    with pytest.raises(ValueError, match=r"lacks \['horizon'\]"):
        AdaptiveKLController(0.1, 1.0, 10).load_state_dict(
            {"kind": "adaptive", "value": 1.0, "target": 1.0}
        )
