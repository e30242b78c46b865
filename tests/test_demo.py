import json

import pytest

from prefkit.config import EvalConfig, TinyConfig
from prefkit.demo import OFFLINE, DemoSettings, run_demo

SMALL = DemoSettings(
    tiny=TinyConfig(hidden_size=16, layers=1, heads=2),
    sft_sequences_per_prompt=1,
    sft_steps=10,
    pairs=64,
    lists=16,
    steps=3,
    batch_size=8,
    eval=EvalConfig(prompts=6, samples=2, max_new_tokens=6),
)


@pytest.mark.slow
@pytest.mark.parametrize("world", ["transitive", "cyclic"])
def test_demo_writes_the_leaderboard_files(tmp_path, world):
    from dataclasses import replace

    out = tmp_path / "demo"
    rows = run_demo(world, out=out, settings=replace(SMALL, world=world), methods=["dpo", "lipo_lambda"],
                    progress=False, log=lambda _: None)
    board = json.loads((out / "leaderboard.json").read_text())
    assert {r["method"] for r in board} == {"reference (SFT)", "DPO", "LiPO-lambda (K=4)"}
    for row in board:
        assert {"method", "win_rate", "win_rate_se", "kl", "seconds", "queries"} <= set(row)
        assert 0.0 <= row["win_rate"] <= 1.0
        assert ("exploitability" in row) == (world == "cyclic")
    assert [r["win_rate"] for r in board] == sorted((r["win_rate"] for r in board), reverse=True)
    assert (out / "leaderboard.md").read_text().startswith("# prefkit demo")
    assert (out / "leaderboard.png").stat().st_size > 1000
    assert len(rows) == 3
    with pytest.raises(ValueError, match="--overwrite"):
        run_demo(world, out=out, settings=replace(SMALL, world=world), methods=["dpo"], progress=False,
                 log=lambda _: None)
    assert (out / "leaderboard.json").read_text() == json.dumps(board, indent=2)  # refused before touching it
    again = run_demo(world, out=out, settings=replace(SMALL, world=world), methods=["dpo"], progress=False,
                     log=lambda _: None, overwrite=True)
    assert {r["method"] for r in again} == {"reference (SFT)", "DPO"}
    assert not (out / "runs" / "lipo_lambda").exists()


def test_demo_never_clears_a_directory_that_is_not_a_demo(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"no demo\.yaml"):
        run_demo(out=tmp_path, settings=SMALL, methods=["dpo"], progress=False, log=lambda _: None, overwrite=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_fast_demo_keeps_the_issue_methods():
    fast = {e.method for e in OFFLINE if e.fast}
    assert {"dpo", "ipo", "cdpo", "robust", "simpo", "lipo_lambda", "adpo"} <= fast


@pytest.mark.parametrize(("annotators", "prefix"), [(None, "af_"), ("clean", "truth")])
def test_demo_feedback_comes_from_the_chosen_annotator_pool(tmp_path, annotators, prefix):
    from dataclasses import replace

    from prefkit.demo import prepare

    ctx = prepare(replace(SMALL, annotators=annotators), tmp_path, log=lambda _: None, progress=False)
    assert ctx.pairs and all(p.annotator.startswith(prefix) for p in ctx.pairs)


def test_demo_refuses_an_unknown_annotator_pool(tmp_path):
    with pytest.raises(ValueError, match="unknown annotator pool"):
        run_demo(out=tmp_path / "demo", annotators="bogus", fast=True, progress=False, log=lambda _: None)


@pytest.mark.slow
def test_an_interrupted_demo_resumes_to_the_uninterrupted_leaderboard(tmp_path):
    from dataclasses import replace

    quiet = {"progress": False, "log": lambda _: None}
    settings = replace(SMALL, world="transitive")
    whole = run_demo(out=tmp_path / "whole", settings=settings, methods=["dpo", "ipo"], **quiet)

    out = tmp_path / "interrupted"
    run_demo(out=out, settings=settings, methods=["dpo"], **quiet)  # "killed" after the first method ...
    (out / "runs" / "ipo" / "checkpoints").mkdir(parents=True)  # ... in the middle of the second
    (out / "leaderboard.json").unlink()
    messages: list[str] = []
    resumed = run_demo(out=out, settings=settings, methods=["dpo", "ipo"], resume=True, progress=False,
                       log=messages.append)
    assert any("SFT model finished earlier" in m for m in messages)
    assert any("DPO: finished earlier" in m for m in messages)

    def strip_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip_time(resumed) == strip_time(whole)
    assert {r["method"] for r in json.loads((out / "leaderboard.json").read_text())} == {
        "reference (SFT)", "DPO", "IPO"}


def test_resume_refuses_other_settings_or_a_missing_demo(tmp_path):
    from dataclasses import replace

    with pytest.raises(ValueError, match="no demo to resume"):
        run_demo(out=tmp_path / "nothing", settings=SMALL, resume=True, progress=False, log=lambda _: None)
    (tmp_path / "demo").mkdir()
    from prefkit.config import save_yaml

    save_yaml(SMALL, tmp_path / "demo" / "demo.yaml")
    with pytest.raises(ValueError, match="other settings"):
        run_demo(out=tmp_path / "demo", settings=replace(SMALL, seed=1), resume=True, progress=False,
                 log=lambda _: None)
