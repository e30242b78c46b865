"""The online entries of ``prefkit demo``: the issue's --fast set, budgets, the leaderboard rows."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from prefkit.demo import ONLINE, DemoSettings, online_config, run_demo
from prefkit.engine.online.methods import ONLINE_METHODS, feedback_per_step
from tests.test_demo import SMALL as OFFLINE_SMALL

SMALL = replace(OFFLINE_SMALL, pairs=96, lists=8, online_prompts_per_step=4)


def test_fast_demo_keeps_the_issue_online_methods_and_every_method_has_an_entry():
    fast = {e.method for e in ONLINE if e.fast}
    assert {"online_dpo", "nash_md", "egpo", "p3o", "best_of_n"} <= fast
    assert {m.name for m in ONLINE_METHODS} <= {e.method for e in ONLINE}
    assert len({e.label for e in ONLINE}) == len(ONLINE)


@pytest.mark.parametrize("label", [e.label for e in ONLINE if e.method != "best_of_n"])
def test_each_online_entry_gets_the_label_budget_in_steps(tmp_path, label):
    entry = next(e for e in ONLINE if e.label == label)
    settings = DemoSettings.preset("transitive", fast=True)
    cfg, recipe = online_config(settings, entry, tmp_path)
    queries, evals = feedback_per_step(recipe, cfg.online, scalar_reward=cfg.online.judge == "bt")
    spent = (queries + evals) * cfg.train.steps
    assert cfg.train.steps == settings.online_max_steps or abs(spent - settings.pairs) <= queries + evals
    assert cfg.online.prompts_per_step == settings.online_prompts_per_step


@pytest.mark.slow
@pytest.mark.parametrize("world, methods", [("transitive", ["dpo", "online_dpo", "best_of_n"]),
                                            ("cyclic", ["online_dpo", "nash_md"])])
def test_online_rows_join_the_leaderboard(tmp_path, world, methods):
    rows = run_demo(world, out=tmp_path, settings=replace(SMALL, world=world), methods=methods, progress=False,
                    log=lambda _: None)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    for row in board:
        assert {"method", "win_rate", "win_rate_se", "kl", "seconds", "queries"} <= set(row)
        assert ("exploitability" in row) == (world == "cyclic")
    online = {r["method"]: r for r in rows if r.get("online")}
    assert online["online DPO"]["queries"] == online["online DPO"]["steps"] * SMALL.online_prompts_per_step
    if world == "transitive":
        assert {"DPO", "best-of-4 (BT reward)", "best-of-4 (annotator win-rate)"} <= {r["method"] for r in board}
        assert online["best-of-4 (BT reward)"]["queries"] == SMALL.pairs  # the reward model's labels
        assert online["best-of-4 (BT reward)"]["reward_evals"] == 6 * 2 * 4  # prompts x samples x n
    else:
        assert "Nash-MD-PG (mixture 0.125)" in online
