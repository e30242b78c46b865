"""DRAGON's on-policy construction: the positive/negative split, both reward kinds move a toy policy
toward the exemplars' style and the set distance falls, the exemplar judge, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.engine import TrainData, train
from prefkit.engine.online.judge import OnlineJudge, resolve_judge
from prefkit.engine.online.objectives import dragon_split
from prefkit.errors import InputError
from prefkit.preference.dragon import ExemplarJudge, ExemplarReward, read_exemplars

from .online_toys import PROMPT, MatrixJudge, one_token_policy, toy_config

ACTIONS = ["a0", "a1", "a2", "a3"]


def one_hot(texts):
    """A toy encoder: the action's one-hot vector (plus a little of every axis, so no norm is 0)."""
    out = np.full((len(texts), len(ACTIONS)), 0.05)
    for i, t in enumerate(texts):
        if t in ACTIONS:
            out[i, ACTIONS.index(t)] = 1.0
    return out


def toy_judge() -> ExemplarJudge:
    return ExemplarJudge(ExemplarReward(["a0", "a0", "a0", "a1"], embed=one_hot))


def test_the_split_pairs_the_best_positives_with_the_worst_negatives():
    rewards = [torch.tensor([3.0, 0.0, 2.0, 1.0]), torch.tensor([5.0, 4.0, 1.5, 1.5]), torch.tensor([0.5, 0.2])]
    # median of all ten rewards: 1.5 (values at it are in neither set)
    assert dragon_split(rewards) == [[(0, 1), (2, 3)], [], []]
    assert dragon_split([torch.tensor([1.0, 1.0])]) == [[]]
    # ties at the median, nothing below it: the median's samples are the negatives
    assert dragon_split([torch.tensor([0.0, 2.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])]) == [[(1, 0)],
                                                                                                   [(3, 0)]]


@pytest.mark.parametrize("method", ["dragon", "dragon_fd"])
def test_dragon_moves_the_policy_to_the_exemplars_and_the_distance_falls(tmp_path, method):
    policy, reference = one_token_policy(np.zeros(4)), one_token_policy(np.zeros(4))
    judge = toy_judge()
    before = judge.reward.set_distance(ACTIONS * 4)
    cfg = toy_config(tmp_path, method, "train.steps=10", "train.lr=0.1", "loss.beta=0.5",
                     "online.prompts_per_step=8")
    result = train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy, reference=reference, judge=judge,
                   progress=False)
    probs = policy.model.probs()
    assert probs[0] > 0.4 and probs[0] == probs.max(), probs
    m = result.metrics
    assert m["queries"] == 0 and m["reward_evals"] == 10 * 8 * 4
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    distances = [r["dragon/set_distance"] for r in rows if "dragon/set_distance" in r]
    assert len(distances) >= 8 and distances[-1] < distances[0] <= before + 0.5
    after = judge.reward.set_distance(list(np.random.default_rng(0).choice(ACTIONS, size=64, p=probs)))
    assert after < judge.reward.set_distance(list(np.random.default_rng(0).choice(ACTIONS, size=64)))


def test_dragon_fd_needs_an_exemplar_judge(tmp_path):
    policy, reference = one_token_policy(np.zeros(4)), one_token_policy(np.zeros(4))
    cfg = toy_config(tmp_path, "dragon_fd", "train.steps=1", "online.reward=win_rate")
    with pytest.raises(ValueError, match="exemplars:FILE"):
        train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy, reference=reference,
              judge=MatrixJudge(np.full((4, 4), 0.5)), progress=False)
    with pytest.raises(ValueError, match="needs a scalar reward"):
        train(toy_config(tmp_path / "b", "dragon"), data=TrainData(prompts=[PROMPT]), policy=policy,
              reference=reference, judge=MatrixJudge(np.full((4, 4), 0.5)), progress=False)


def test_the_exemplar_judge_is_a_scalar_reward_model():
    judge = toy_judge()
    online = OnlineJudge(judge)
    assert online.has_scalar_reward and online.uses_reward_model()
    (r,) = online.rewards([PROMPT], [ACTIONS])
    assert int(torch.argmax(r)) == 0 and online.reward_evals == 4
    p = judge.prob([PROMPT] * 2, ["a0", "a2"], ["a2", "a0"])
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    assert float(p[0]) > 0.99


def test_exemplar_files_are_read_and_checked(tmp_path):
    good = tmp_path / "ex.jsonl"
    good.write_text('{"text": "wow cake"}\n\n{"completion": "imagine oven"}\n', encoding="utf-8")
    assert read_exemplars(good) == ["wow cake", "imagine oven"]
    plain = tmp_path / "ex.txt"
    plain.write_text("one style\nanother one\n", encoding="utf-8")
    assert read_exemplars(plain) == ["one style", "another one"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": ""}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl:2 \[text\]"):
        read_exemplars(bad)
    one = tmp_path / "one.txt"
    one.write_text("only\n", encoding="utf-8")
    with pytest.raises(InputError, match="at least 2"):
        read_exemplars(one)


def test_online_judge_exemplars_spec_loads_the_minilm_reward(tmp_path):
    from prefkit.config import RunConfig, load

    path = tmp_path / "ex.txt"
    path.write_text("imagine a cake with flour\nwow an oven with spice\n", encoding="utf-8")
    cfg = load(RunConfig, None, ["method=dragon", f"online.judge=exemplars:{path}"])
    judge, name = resolve_judge(cfg, None)
    assert isinstance(judge, ExemplarJudge) and name == f"exemplars:{path}"
    r = judge.embed(["x", "x"], ["imagine a cake with butter", "the stock market fell"])[:, 0]
    assert r[0] > r[1]
