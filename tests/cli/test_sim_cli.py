import json
import os

import pytest

from prefkit.cli import sim as sim_cli
from prefkit.cli.main import main
from prefkit.sim import POOLS, WORLDS, make_world


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_cli_names_match_the_registry():
    assert set(sim_cli.WORLD_NAMES) == set(WORLDS)
    assert set(sim_cli.POOL_NAMES) == set(POOLS)


def test_export_pairs_in_trl_format(tmp_path, capsys):
    out = tmp_path / "sub" / "pairs.jsonl"
    assert main(["sim", "export", "--world", "noisy", "--n", "40", "--out", str(out), "--seed", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"out": str(out), "rows": 40, "kind": "pairs", "world": "noisy", "seed": 3,
                       "split": "train", "annotators": "length_biased"}
    rows = read_rows(out)
    assert len(rows) == 40
    world = make_world("noisy", seed=3)
    train = set(world.prompts("train"))
    names = {a.name for a in world.pool}
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected", "annotator"}
        assert row["prompt"] in train and row["annotator"] in names
        assert isinstance(row["chosen"], str) and row["chosen"] != row["rejected"]
    assert os.listdir(out.parent) == ["pairs.jsonl"]  # no temporary file left behind
    # Same seed, same bytes; the file is replaced, not appended to.
    first = out.read_bytes()
    assert main(["sim", "export", "--world", "noisy", "--n", "40", "--out", str(out), "--seed", "3"]) == 0
    assert out.read_bytes() == first


def test_export_loads_as_a_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "pairs.jsonl"
    assert main(["sim", "export", "--world", "transitive", "--n", "8", "--out", str(out)]) == 0
    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 8 and {"prompt", "chosen", "rejected"} <= set(ds.column_names)


def test_export_lists_and_annotator_override(tmp_path, capsys):
    out = tmp_path / "lists.jsonl"
    assert main(["sim", "export", "--world", "cyclic", "--n", "5", "--lists", "4", "--out", str(out),
                 "--annotators", "alpacafarm", "--split", "eval"]) == 0
    assert "wrote 5 lists" in capsys.readouterr().out
    rows = read_rows(out)
    evals = set(make_world("cyclic").prompts("eval"))
    for row in rows:
        assert set(row) == {"prompt", "responses", "scores"} and row["prompt"] in evals
        assert len(row["responses"]) == 4 and sum(row["scores"]) == pytest.approx(2.0)


def test_bad_options_exit_2_with_a_message(tmp_path, capsys):
    out = str(tmp_path / "x.jsonl")
    assert main(["sim", "export", "--world", "cyclc", "--n", "2", "--out", out]) == 2
    assert "did you mean 'cyclic'" in capsys.readouterr().err
    assert main(["sim", "export", "--world", "cyclic", "--n", "0", "--out", out]) == 2
    assert main(["sim", "export", "--world", "cyclic", "--n", "2", "--lists", "1", "--out", out]) == 2
    assert main(["sim", "describe", "--world", "cyclic", "--annotators", "humans", "--json"]) == 2
    assert "unknown annotator pool" in json.loads(capsys.readouterr().out)["error"]
    assert not os.path.exists(out)


def test_describe_json(capsys):
    assert main(["sim", "describe", "--world", "cyclic", "--examples", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["world"] == "cyclic" and "P*(a>b|x)" in info["description"]
    assert len(info["examples"]) == 2
    example = info["examples"][0]
    assert example["ideal"]["utility"] >= max(r["utility"] for r in example["base"])
    assert sum(example["style_nash"].values()) == pytest.approx(1.0, abs=2e-3)
    assert info["headroom"]["best_of_16_vs_base"] > 0.75


def test_describe_text(capsys):
    assert main(["sim", "describe", "--world", "transitive", "--examples", "1"]) == 0
    text = capsys.readouterr().out
    assert "annotator pool 'alpacafarm'" in text and "headroom" in text and "ideal u=" in text
