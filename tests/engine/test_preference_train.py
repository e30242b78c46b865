"""Training: the objective per kind (by hand and against prefkit.losses), ties, orientation,
margins, exact resume through the engine, loss histories, learning a separable task."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from prefkit.config import RunConfig, load
from prefkit.data.records import PairRecord
from prefkit.engine.preference.data import pair_data, read_strength_column, tensor_pair_data
from prefkit.engine.preference.shape import pair_objective
from prefkit.engine.preference.train import fit, train_preference_model
from prefkit.errors import InputError
from prefkit.losses import bradley_terry
from prefkit.preference import FeatureBackbone, build_head, build_model
from tests.preference.conftest import example_records, make_model


def _cfg(tmp_path, *overrides: str) -> RunConfig:
    return load(RunConfig, None, [f"out={tmp_path / 'run'}", "train.steps=30", "train.batch_size=8",
                                  "train.lr=0.01", "train.log_every=1000", "rm.dropout=0.0", *overrides])


def _feature_model(kind: str, in_dim: int = 6, seed: int = 0, **head):
    torch.manual_seed(seed)
    backbone = FeatureBackbone(in_dim, hidden=16, layers=1)
    return build_model(kind, backbone, build_head(kind, 16, **head))


def _features(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = torch.zeros(n, 0)
    a, b = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    better = (a[:, 0] > b[:, 0])[:, None]
    return prompts, torch.where(better, a, b), torch.where(better, b, a)


def test_bt_objective_is_bradley_terry_with_soft_targets():
    model = _feature_model("bt")
    prompts, c, r = _features(8)
    labels = torch.tensor([1.0, 1.0, 0.5, 0.8, 1.0, 0.5, 1.0, 0.9])
    data = tensor_pair_data(model.backbone, prompts, c, r, labels)
    data.margins = torch.full((8,), 0.3)
    rm = load(RunConfig, None, ["rm.label_smoothing=0.1"]).rm
    per, logit, _, _ = pair_objective(model, data, list(range(8)), rm)
    e = model.embed(prompts, torch.cat([c, r])[:8]).detach()  # chosen rewards
    r_c, r_r = model.embed(prompts, c)[:, 0], model.embed(prompts, r)[:, 0]
    target = labels * 0.9 + (1 - labels) * 0.1
    margin = 0.3 * (labels == 1).float()
    d = r_c - r_r - margin
    by_hand = -target * F.logsigmoid(d) - (1 - target) * F.logsigmoid(-d)
    torch.testing.assert_close(per.detach(), by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per.detach(), bradley_terry(r_c, r_r, margin=margin, label_smoothing=1 - target))
    torch.testing.assert_close(logit, r_c - r_r)
    assert e.shape == (8, 1)


def test_a_tie_is_minimised_at_equal_rewards():
    model = _feature_model("bt")
    prompts, c, r = _features(1)
    data = tensor_pair_data(model.backbone, prompts, c, r, torch.tensor([0.5]))
    rm = RunConfig().rm
    per, logit, _, _ = pair_objective(model, data, [0], rm)
    d = logit
    torch.testing.assert_close(per.detach(), -0.5 * F.logsigmoid(d) - 0.5 * F.logsigmoid(-d))
    # d/dd of the tie loss is sigmoid(d) - 1/2: zero exactly at d = 0
    d0 = torch.zeros(1, requires_grad=True)
    bradley_terry(d0, torch.zeros(1), label_smoothing=torch.tensor([0.5])).sum().backward()
    assert float(d0.grad) == 0.0


def test_gpm_objective_by_hand():
    model = _feature_model("gpm", dim=4, tau=0.5)
    prompts, c, r = _features(4)
    labels = torch.tensor([1.0, 0.5, 0.7, 1.0])
    data = tensor_pair_data(model.backbone, prompts, c, r, labels)
    data.margins = torch.tensor([0.2, 0.2, 0.2, 0.0])
    per, logit, _, _ = pair_objective(model, data, [0, 1, 2, 3], RunConfig().rm)
    e_c, e_r = model.embed(prompts, c), model.embed(prompts, r)
    s = model.scores_from_embeddings(e_c, e_r)
    m = data.margins * (labels == 1).float()
    z = (s - m) / 0.5
    torch.testing.assert_close(per.detach(), -labels * F.logsigmoid(z) - (1 - labels) * F.logsigmoid(-z),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logit, s / 0.5)


def test_pairpm_objective_is_the_two_order_cross_entropy():
    model = _feature_model("pairpm", in_dim=12)
    prompts, c, r = _features(4)
    labels = torch.tensor([1.0, 0.5, 0.7, 1.0])
    data = tensor_pair_data(model.backbone, prompts, c, r, labels)
    per, logit, _, _ = pair_objective(model, data, [0, 1, 2, 3], RunConfig().rm)
    f, g = model.ordered_logits(prompts, c, r)
    expected = 0.5 * (F.binary_cross_entropy_with_logits(f, labels, reduction="none")
                      + F.binary_cross_entropy_with_logits(g, 1 - labels, reduction="none"))
    torch.testing.assert_close(per.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.sigmoid(logit), model.prob(prompts, c, r), rtol=1e-5, atol=1e-6)


def test_pair_data_orients_labels_excludes_ties_and_adds_margins():
    model = make_model("bt")
    records = [
        PairRecord(prompt="hello", chosen="there", rejected="no joke", label=0.0, margin=1.0),
        PairRecord(prompt="hello", chosen="there", rejected="a joke", label=0.5),
        PairRecord(prompt="hello", chosen="no joke", rejected="a joke", weight=2.0),
    ]
    rm = load(RunConfig, None, ["rm.margin=0.25"]).rm
    data = pair_data(model.backbone, records, rm)
    assert data.labels.tolist() == [1.0, 0.5, 1.0] and data.swapped == 1
    assert data.margins.tolist() == [1.25, 0.25, 0.25] and data.weights.tolist() == [1.0, 1.0, 2.0]
    tok = model.backbone.tokenizer
    assert tok.decode(data.rows[0][1]) == "no joke" and tok.decode(data.rows[0][2]) == "there"
    excluded = pair_data(model.backbone, records, replace(rm, ties="exclude"))
    assert len(excluded) == 2 and excluded.ties_excluded == 1
    with pytest.raises(InputError, match="every pair is a tie"):
        pair_data(model.backbone, records[1:2], replace(rm, ties="exclude"))


def test_config_refuses_meaningless_combinations():
    with pytest.raises(ValueError, match="pairpm has none"):
        load(RunConfig, None, ["rm.kind=pairpm", "rm.margin=1"])
    with pytest.raises(ValueError, match="even"):
        load(RunConfig, None, ["rm.dim=3"])
    with pytest.raises(ValueError, match="did you mean"):
        load(RunConfig, None, ["rm.eigenvalue=prompt"])


def test_fit_learns_a_separable_task_and_records_loss_histories(tmp_path):
    model = _feature_model("bt")
    prompts, c, r = _features(128)
    data = tensor_pair_data(model.backbone, prompts, c, r)
    result = fit(_cfg(tmp_path, "train.steps=160"), model, data)
    tp, tc, tr = _features(400, seed=1)
    assert float((model.prob(tp, tc, tr) > 0.5).float().mean()) >= 0.9  # held out; chance is 0.5
    assert result.losses.count.tolist() == [10] * 128  # 160 steps x 8 = 10 epochs of 128 pairs
    assert (tmp_path / "run" / "metrics.jsonl").exists() and (tmp_path / "run" / "checkpoints").exists()


def test_resume_continues_exactly(tmp_path):
    prompts, c, r = _features(48)

    def run(out, steps, resume=False):
        model = _feature_model("gpm", dim=4)
        data = tensor_pair_data(model.backbone, prompts, c, r)
        cfg = replace(_cfg(tmp_path, f"out={out}", f"train.steps={steps}"))
        result = fit(cfg, model, data, resume=resume)
        return model, result

    full, full_result = run(tmp_path / "full", 20)
    run(tmp_path / "part", 10)
    resumed, resumed_result = run(tmp_path / "part", 20, resume=True)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(full_result.losses.total, resumed_result.losses.total)


def test_train_preference_model_writes_the_run(tmp_path):
    records = example_records()
    cfg = _cfg(tmp_path, "train.steps=4", "train.batch_size=3", "tiny.hidden_size=16", "tiny.layers=1",
               "tiny.heads=2", "rm.kind=gpm", "rm.dim=4")
    result = train_preference_model(cfg, records=records, eval_records=records)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"model", "metrics.json", "metrics.jsonl", "config.yaml",
                                                "checkpoints", "training_dynamics.jsonl"}
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["pairs"] == 3 and summary["eval/ties"] == 1 and summary["eval/n"] == 2
    lines = [json.loads(x) for x in (run / "training_dynamics.jsonl").read_text().splitlines()]
    assert [x["visits"] for x in lines] == [4, 4, 4]
    assert result.model.kind == "gpm"
    with pytest.raises(InputError, match="already holds a run"):
        train_preference_model(cfg, records=records)


def test_adaptive_margin_reads_the_strength_column(tmp_path):
    records = example_records()
    path = tmp_path / "pairs.jsonl"
    rows = [{**r.to_json(), "strength_mean": s} for r, s in zip(records, (0.5, -1.0, 2.0))]
    path.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    from prefkit.data import read_pairs

    read, _ = read_pairs(path)
    assert read_strength_column(str(path), read) == [0.5, -1.0, 2.0]
    rows[1]["strength_mean"] = "high"
    path.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    with pytest.raises(InputError, match=r"pairs.jsonl:2 \[strength_mean\]"):
        read_strength_column(str(path), read)
    del rows[2]["strength_mean"]
    rows[1]["strength_mean"] = 1.0
    path.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    with pytest.raises(InputError, match="missing column 'strength_mean'"):
        read_strength_column(str(path), read)
