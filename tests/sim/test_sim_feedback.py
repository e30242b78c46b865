"""The world's other feedback: ordinal ratings, thumbs, critiques, the refiner, planted principles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from prefkit.cli.main import main
from prefkit.data.critiques import read_critiques
from prefkit.data.ratings import read_ratings
from prefkit.sim import make_world
from prefkit.sim.critiques import NO_ISSUES, critique, find_issues, incorporation, refine
from prefkit.sim.principles import PLANTED_RULES, planted_pairs, resolve_planted
from prefkit.sim.ratings import Rater, base_thresholds, rate, rated_lists, thumbs, unpaired


@pytest.fixture(scope="module")
def world():
    return make_world("transitive", seed=0)


@pytest.fixture(scope="module")
def sample(world):
    rng = np.random.default_rng(0)
    prompts = world.prompts("train", 3000, rng=rng)
    return prompts, [r[0] for r in world.base_responses(prompts, 1, rng)]


def test_an_exact_rater_is_a_monotone_step_function_of_the_utility(world, sample):
    prompts, responses = sample
    drawn = rate(world, prompts, responses, np.random.default_rng(1), levels=5, pool="exact")
    order = np.argsort(drawn.utility)
    assert np.all(np.diff(drawn.ratings[order]) >= 0)
    counts = np.bincount(drawn.ratings, minlength=6)[1:]
    assert counts.min() > 0.15 * len(prompts)  # thresholds at utility quintiles: every level used ~1/5


def test_noisy_ratings_follow_the_cumulative_logit_model(world, sample):
    prompts, responses = sample
    rater = Rater("r", noise=1.5)
    drawn = rate(world, prompts * 20, responses * 20, np.random.default_rng(2), levels=10, pool=[rater])
    thresholds, _ = base_thresholds(world, 10)
    expected = expit((thresholds[4] - drawn.utility) / 1.5).mean()  # P(rating <= 5)
    assert (drawn.ratings <= 5).mean() == pytest.approx(expected, abs=0.01)
    assert drawn.ratings.min() >= 1 and drawn.ratings.max() <= 10


def test_harsh_raters_rate_lower_and_lists_use_one_rater_per_prompt(world, sample):
    prompts, responses = sample
    harsh = rate(world, prompts, responses, np.random.default_rng(3), pool=[Rater("h", shift=1.0)])
    lenient = rate(world, prompts, responses, np.random.default_rng(3), pool=[Rater("l", shift=-1.0)])
    assert harsh.ratings.mean() < lenient.ratings.mean() - 0.3
    rows = rated_lists(world, 20, 4, np.random.default_rng(4), levels=10)
    assert all(len(r.completions) == len(r.ratings) == 4 and r.annotator.startswith("rater_") for r in rows)
    assert all(1 <= v <= 10 for r in rows for v in r.ratings)


def test_thumbs_up_means_better_than_a_typical_base_response(world, sample):
    prompts, responses = sample
    labels, _ = thumbs(world, prompts, responses, np.random.default_rng(5), pool="exact")
    _, median = base_thresholds(world, 2)
    assert np.array_equal(labels, world.utility(prompts, responses) > median)
    assert 0.4 < labels.mean() < 0.6
    rows = unpaired(world, 5, np.random.default_rng(6))
    assert all(set(r) == {"prompt", "completion", "label"} and isinstance(r["label"], bool) for r in rows)


def test_critiques_name_what_is_wrong_in_the_worlds_terms(world):
    prompt = "describe reefs briefly"  # topic ocean, preferred length 4
    issues = {i.kind: i for i in find_issues(world, prompt, "certainly water galaxy stupid stupid oven the the")}
    assert set(issues) == {"off_topic", "bad", "repeats", "missing_topic", "too_long"}
    assert issues["off_topic"].words == ("galaxy", "oven") and issues["bad"].words == ("stupid",)
    assert issues["too_long"].length == 7 and issues["too_long"].target == 4
    text = critique(world, prompt, "certainly water galaxy stupid stupid oven the the").text
    assert "galaxy, oven" in text and "7 words where about 4" in text
    good = critique(world, prompt, "water salt waves fish")
    assert good.issues == () and good.text == NO_ISSUES
    assert critique(world, prompt, "water", np.random.default_rng(0)).kinds == ["too_short"]
    noticed = [len(critique(world, prompt, "galaxy oven stupid the the", np.random.default_rng(s), recall=0.5).issues)
               for s in range(200)]
    assert 1.5 < np.mean(noticed) < 3.0  # about half of the 5 issues


def test_a_perfect_refiner_fixes_everything_and_improves_the_utility(world, sample):
    prompts, responses = sample
    rng = np.random.default_rng(7)
    gains, rates = [], []
    for p, y in zip(prompts[:300], responses[:300]):
        c = critique(world, p, y)
        if not c.issues:
            continue
        better = refine(world, p, y, c, rng, skill=1.0, slip=0.0)
        rates.append(incorporation(world, p, better, c))
        gains.append(world.utility([p], [better])[0] - world.utility([p], [y])[0])
    assert np.mean(rates) > 0.9 and np.mean(gains) > 3.0
    y = responses[0]
    assert refine(world, prompts[0], y, critique(world, prompts[0], y), rng, skill=0.0, slip=0.0) == y


def test_an_imperfect_refiner_fixes_part_of_the_critique(world, sample):
    prompts, responses = sample
    rng = np.random.default_rng(8)
    rates = []
    for p, y in zip(prompts[:300], responses[:300]):
        c = critique(world, p, y)
        if c.issues:
            rates.append(incorporation(world, p, refine(world, p, y, c, rng, skill=0.5, slip=0.3), c))
    assert 0.3 < np.mean(rates) < 0.8


def test_planted_pools_cast_their_shares_of_the_votes(world):
    pairs = planted_pairs(world, 6000, np.random.default_rng(9))
    who = np.array([r.annotator for r in pairs])
    assert (who == "longer").mean() == pytest.approx(0.4, abs=0.02)
    assert (who == "subject").mean() == pytest.approx(0.3, abs=0.02)
    longer = PLANTED_RULES["longer"][1]
    votes = np.array([longer(r.prompt, r.chosen, r.rejected) for r in pairs])
    assert (votes[who == "longer"] >= 0).all()  # a planted voter never votes against its rule
    decided = votes != 0
    assert votes[decided].mean() == pytest.approx(0.4, abs=0.04)  # net support among decided pairs = share
    with pytest.raises(ValueError, match="sum to"):
        resolve_planted("longer:0.7,subject:0.5")
    with pytest.raises(ValueError, match="unknown planted principle"):
        resolve_planted("verbose:0.2")


def test_sim_export_writes_every_kind_in_readable_formats(tmp_path, capsys):
    def export(*extra):
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl"
        assert main(["sim", "export", "--world", "transitive", "--n", "6", "--out", str(out), "--json", *extra]) == 0
        return out, json.loads(capsys.readouterr().out)

    out, summary = export("--kind", "ratings", "--levels", "10")
    assert summary["scale"] == [1, 10] and len(read_ratings(out, scale=(1, 10), integer=True)[0]) == 6
    out, _ = export("--kind", "ratings", "--completions", "1")
    assert set(json.loads(out.read_text().splitlines()[0])) == {"prompt", "completion", "rating", "annotator"}
    out, _ = export("--kind", "unpaired")
    assert set(json.loads(out.read_text().splitlines()[0])) == {"prompt", "completion", "label"}
    out, _ = export("--kind", "critiques", "--recall", "0.8")
    assert len(read_critiques(out)[0]) == 6
    out, summary = export("--planted", "longer:0.5")
    assert summary["planted"] == {"longer": 0.5} and summary["annotators"] == "planted"
    for bad in (["--kind", "ratings", "--planted", "default"], ["--kind", "critiques", "--levels", "5"],
                ["--kind", "ratings", "--annotators", "clean"], ["--subject-rate", "0.2"]):
        assert main(["sim", "export", "--world", "transitive", "--n", "2", "--out", str(tmp_path / "x.jsonl"),
                     *bad]) == 2
