"""The offline steps feed the losses that need more than four log-prob sums: KTO's reference
point on unpaired rows, LD-DPO's tails, WPO's weights. Each first training step is checked
against the loss computed by hand from the policy's and the reference's own log-probs."""

from __future__ import annotations

import copy

import pytest
import torch

from prefkit.data import UnpairedRecord, unpair
from prefkit.engine import train
from prefkit.engine.data import TrainData, batch_indices
from prefkit.engine.offline.examples import kl_partner_index
from prefkit.losses import dpo, kto, ld_dpo
from prefkit.policy import Policy, tail_logps, token_logps, wpo_weight_logps

from .conftest import make_pairs, tiny_config

BATCH = 4


@pytest.fixture
def pairs():
    return make_pairs(12)


def _models(tmp_path, pairs):
    """A tiny policy and a reference with other weights (so the log-ratios are not zero)."""
    cfg = tiny_config(tmp_path, "dpo")
    texts = TrainData(pairs=pairs).texts()
    policy = Policy.tiny(texts, cfg.tiny, seed=1)
    reference = Policy.tiny(texts, cfg.tiny, seed=2)
    return policy, reference


def _first_loss(tmp_path, method, policy, reference, data, *overrides):
    cfg = tiny_config(tmp_path, method, "train.steps=1", f"train.batch_size={BATCH}", "train.lr=1e-9",
                      "train.ref_cache=false", *overrides)
    result = train(cfg, data=data, policy=copy.deepcopy(policy), reference=reference, progress=False)
    return result.history[0]


def test_kto_step_is_the_kto_loss_with_trls_batch_kl_estimate(tmp_path, pairs):
    policy, reference = _models(tmp_path, pairs)
    rows_all = unpair(pairs)
    logged = _first_loss(tmp_path, "kto", policy, reference, TrainData(unpaired=rows_all),
                         "loss.params={desirable_weight: 1.5}")
    rows = batch_indices(len(rows_all), BATCH, 0, 0, True)
    partner = kl_partner_index(len(rows_all), BATCH)
    prompts = [rows_all[i].prompt for i in rows]
    completions = [rows_all[i].completion for i in rows]
    mismatched = [rows_all[partner[i]].completion for i in rows]
    z0 = (policy.logprob(prompts, mismatched) - reference.logprob(prompts, mismatched)).mean()
    expected = kto(policy.logprob(prompts, completions), reference.logprob(prompts, completions),
                   torch.tensor([rows_all[i].label for i in rows]), kl=z0, desirable_weight=1.5).mean()
    assert logged["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert logged["kl"] == pytest.approx(float(z0), rel=1e-5, abs=1e-6)


def test_kl_partners_are_the_previous_row_of_each_chunk_and_never_the_row_itself():
    assert kl_partner_index(6, 3) == [2, 0, 1, 5, 3, 4]
    assert kl_partner_index(7, 3) == [2, 0, 1, 6, 3, 4, 5]  # a last chunk of one joins the one before
    assert all(p != i for i, p in enumerate(kl_partner_index(10, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        kl_partner_index(1, 4)


def _pair_tensors(model: Policy, pairs, rows):
    prompts = [pairs[i].prompt for i in rows]
    batch = model.encode_pairs(prompts, [pairs[i].chosen for i in rows], [pairs[i].rejected for i in rows],
                               max_length=32)
    n = len(rows)
    lengths = batch.response_lengths
    shared = torch.minimum(lengths[:n], lengths[n:]).repeat(2)
    with torch.no_grad():
        sums, tails = tail_logps(model.model, batch, shared)
        weights = wpo_weight_logps(model.model, batch)
        per_token = token_logps(model.model, batch)
    assert torch.allclose(sums, (per_token * batch.response_mask).sum(1))
    return sums[:n], sums[n:], tails[:n], tails[n:], weights[:n], weights[n:]


def test_ld_dpo_step_uses_the_tails_past_the_shared_length(tmp_path, pairs):
    policy, reference = _models(tmp_path, pairs)
    logged = _first_loss(tmp_path, "ld_dpo", policy, reference, TrainData(pairs=pairs), "loss.params={ld_alpha: 0.3}")
    rows = batch_indices(len(pairs), BATCH, 0, 0, True)
    c, r, tc, tr, _, _ = _pair_tensors(policy, pairs, rows)
    rc, rr, rtc, rtr, _, _ = _pair_tensors(reference, pairs, rows)
    expected = ld_dpo(c, r, rc, rr, chosen_tail_logps=tc, rejected_tail_logps=tr, ref_chosen_tail_logps=rtc,
                      ref_rejected_tail_logps=rtr, ld_alpha=0.3).mean()
    assert logged["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert float((tc != 0).sum() + (tr != 0).sum()) > 0  # the data has unequal lengths: some tails exist
    assert logged["loss"] != pytest.approx(float(dpo(c, r, rc, rr).mean()), rel=1e-4)


def test_ld_dpo_with_alpha_one_trains_exactly_as_dpo(tmp_path, pairs):
    def history(method, *extra):
        cfg = tiny_config(tmp_path / method, method, "train.steps=3", *extra)
        return [h["loss"] for h in train(cfg, data=TrainData(pairs=pairs), progress=False).history]

    assert history("ld_dpo", "loss.params={ld_alpha: 1.0}") == pytest.approx(history("dpo"), rel=1e-6)


def test_wpo_step_weights_each_pair_by_the_policys_own_likelihood(tmp_path, pairs):
    policy, reference = _models(tmp_path, pairs)
    logged = _first_loss(tmp_path, "wpo", policy, reference, TrainData(pairs=pairs))
    rows = batch_indices(len(pairs), BATCH, 0, 0, True)
    c, r, _, _, wc, wr = _pair_tensors(policy, pairs, rows)
    rc, rr, _, _, _, _ = _pair_tensors(reference, pairs, rows)
    expected = (torch.exp(wc + wr) * dpo(c, r, rc, rr)).mean()
    assert logged["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_unpaired_methods_read_unpaired_rows_and_pairs_only_when_asked(tmp_path, pairs, capsys):
    from prefkit.cli.main import main
    from prefkit.data import write_jsonl

    paired, unpaired = tmp_path / "pairs.jsonl", tmp_path / "unpaired.jsonl"
    write_jsonl(pairs, paired)
    write_jsonl([UnpairedRecord(p.prompt, p.chosen, True) for p in pairs]
                + [UnpairedRecord(p.prompt, p.rejected, False) for p in pairs], unpaired)
    tiny = ["--model", "tiny", "tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.steps=2",
            "train.batch_size=4", "train.max_length=32"]
    assert main(["train", "--method", "kto", "--data", str(unpaired), "--out", str(tmp_path / "a"), *tiny]) == 0
    assert main(["train", "--method", "kto", "--data", str(paired), "--out", str(tmp_path / "b"), *tiny]) == 2
    assert "set data.unpair=true" in capsys.readouterr().err
    assert main(["train", "--method", "bco_unpaired", "--data", str(paired), "--out", str(tmp_path / "c"), *tiny,
                 "data.unpair=true"]) == 0
    assert main(["train", "--method", "dpo", "--data", str(unpaired), "--out", str(tmp_path / "d"), *tiny]) == 2
    assert "expected pairs" in capsys.readouterr().err
    assert main(["train", "--method", "dpo", "--data", str(paired), "--out", str(tmp_path / "e"), *tiny,
                 "data.unpair=true"]) == 2
    assert "data.unpair" in capsys.readouterr().err
