"""The method registry: every pairwise, listwise and unpaired loss the offline steps can feed is a
method; losses that need inputs no step computes are refused clearly, not run half-fed."""

from __future__ import annotations

import pytest

from prefkit.config import LossConfig
from prefkit.engine.losses import resolve_loss
from prefkit.engine.methods import STEP_INPUTS, get_method
from prefkit.losses import LOSSES


@pytest.mark.parametrize(("method", "name", "words"), [
    ("dpo", "tpo", "needs gold_logps, gold_lengths, which the pairwise step does not compute"),
    ("dpo", "kto", "a unpaired loss, and --method dpo trains on the pairwise step"),
    ("kto", "dpo", "a pairwise loss, and --method kto trains on the unpaired step"),
    ("dpo", "lipo_lambda", "a listwise loss"),
])
def test_loss_name_refuses_a_loss_the_step_cannot_feed(method, name, words):
    with pytest.raises(ValueError, match=f"loss.name={name}: .*{words}"):
        resolve_loss(get_method(method), LossConfig(name=name))


def test_every_feedable_loss_is_a_method_of_its_own_step():
    for name, spec in LOSSES.items():
        feedable = spec.kind in STEP_INPUTS and set(spec.inputs) <= STEP_INPUTS[spec.kind]
        if feedable:
            assert get_method(name).step == spec.kind, name
        elif spec.kind in STEP_INPUTS:
            with pytest.raises(ValueError, match=f"unknown method '{name}'"):
                get_method(name)
    assert {get_method(n).step for n in ("kto", "bco_unpaired", "apo_zero_unpaired")} == {"unpaired"}
    assert {get_method(n).step for n in ("ld_dpo", "wpo", "cpo", "alphapo", "fdpo")} == {"pairwise"}


def test_engine_fed_inputs_are_not_settable_as_loss_params():
    with pytest.raises(ValueError, match=r"loss.params.kl: kto has no such setting"):
        resolve_loss(get_method("kto"), LossConfig(params={"kl": 0.3}))
    with pytest.raises(ValueError, match=r"loss.params.chosen_tail_logps: ld_dpo has no such setting"):
        resolve_loss(get_method("ld_dpo"), LossConfig(params={"chosen_tail_logps": 1.0}))
    assert resolve_loss(get_method("kto"), LossConfig(params={"desirable_weight": 1.33})).kwargs == {
        "desirable_weight": 1.33}
