import json

import pytest

from prefkit.config import EvalConfig, TinyConfig
from prefkit.demo import OFFLINE, DemoSettings, run_demo


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFKIT_CACHE", str(tmp_path / "cache"))


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

    rows = run_demo(world, out=tmp_path, settings=replace(SMALL, world=world), methods=["dpo", "lipo_lambda"],
                    progress=False, log=lambda _: None)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert {r["method"] for r in board} == {"reference (SFT)", "DPO", "LiPO-lambda (K=4)"}
    for row in board:
        assert {"method", "win_rate", "win_rate_se", "kl", "seconds", "queries"} <= set(row)
        assert 0.0 <= row["win_rate"] <= 1.0
        assert ("exploitability" in row) == (world == "cyclic")
    assert [r["win_rate"] for r in board] == sorted((r["win_rate"] for r in board), reverse=True)
    assert (tmp_path / "leaderboard.md").read_text().startswith("# prefkit demo")
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000
    assert len(rows) == 3


def test_fast_demo_keeps_the_issue_methods():
    fast = {e.method for e in OFFLINE if e.fast}
    assert {"dpo", "ipo", "cdpo", "robust", "simpo", "lipo_lambda", "adpo"} <= fast
