"""Model cards (issue 10, item 11): every saved reward model gets a README.md a hub user reads."""

from __future__ import annotations

import json

import yaml

from prefkit.cards import card_text, write_model_card
from prefkit.cli.main import main
from prefkit.config import RunConfig, load
from prefkit.data import PairRecord, write_jsonl

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=64"]


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_rm_train_writes_a_card_with_method_data_settings_metrics_and_version(tmp_path):
    import prefkit

    data = tmp_path / "pairs.jsonl"
    write_jsonl([PairRecord(f"q {i}", f"good {i}", f"bad {i}") for i in range(8)], data)
    for kind in ("bt", "gpm"):
        out = tmp_path / kind
        assert main(["rm", "train", "--kind", kind, "--data", str(data), "--model", "tiny", "--out", str(out),
                     *TINY, "train.epochs=1", "rm.head_lr=0.01"]) == 0
        text = (out / "model" / "README.md").read_text()
        meta = front_matter(text)
        assert meta["pipeline_tag"] == "text-classification" and "prefkit" in meta["tags"]
        assert meta["library_name"] == ("transformers" if kind == "bt" else "prefkit")
        assert f"rm train --kind {kind}" in text and str(data) in text and prefkit.__version__ in text
        assert "| `train.steps` | 2 |" in text and "| `rm.head_lr` | 0.01 |" in text  # epochs resolved
        metrics = json.loads((out / "metrics.json").read_text())
        assert f"| `final_loss` | {metrics['final_loss']:.4g} |" in text
        assert ("AutoModelForSequenceClassification" in text) == (kind == "bt")


def test_a_policy_card_names_the_method_and_a_hub_base_model(tmp_path):
    cfg = load(RunConfig, None, ["method=ipo", "model=org/base-model", "loss.beta=0.3", f"out={tmp_path / 'run'}"])
    text = card_text(cfg, {"final_loss": 0.5, "steps": 200, "ok": True}, role="policy")
    meta = front_matter(text)
    assert meta == {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["prefkit", "ipo"],
                    "base_model": "org/base-model"}
    assert "| `loss.beta` | 0.3 |" in text and "| `final_loss` | 0.5 |" in text and "`ok`" not in text
    (tmp_path / "policy").mkdir()
    assert write_model_card(tmp_path / "policy", cfg, {}, role="policy").read_text() == card_text(cfg, {}, role="policy")
