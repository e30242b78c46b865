"""Losses the offline step cannot feed are refused clearly, not run half-fed."""

from __future__ import annotations

import pytest

from prefkit.config import LossConfig
from prefkit.engine.methods import get_method
from prefkit.engine.steps import resolve_loss


@pytest.mark.parametrize(("name", "words"), [("ld_dpo", "chosen_tail_logps"), ("wpo", "chosen_wpo_logps"),
                                             ("tpo", "gold_logps"), ("kto", "a unpaired loss")])
def test_loss_name_refuses_losses_whose_inputs_the_step_does_not_compute(name, words):
    with pytest.raises(ValueError, match=f"loss.name={name}: .*{words}"):
        resolve_loss(get_method("dpo"), LossConfig(name=name))


def test_cpo_and_alphapo_are_methods_and_ld_dpo_is_not():
    assert get_method("cpo").loss == "cpo" and get_method("alphapo").loss == "alphapo"
    assert get_method("fdpo").step == "pairwise"
    with pytest.raises(ValueError, match="unknown method 'ld_dpo'"):
        get_method("ld_dpo")


@pytest.mark.parametrize("method", ["cpo", "alphapo", "fdpo"])
def test_the_new_pairwise_methods_train_through_the_engine(tmp_path, method):
    from prefkit.engine import train
    from prefkit.engine.loop import TrainData
    from tests.engine.conftest import make_pairs, tiny_config

    cfg = tiny_config(tmp_path, method, "train.steps=8", "train.batch_size=8")
    losses = [h["loss"] for h in train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False).history]
    assert all(v == v for v in losses) and losses[-1] < losses[0]
