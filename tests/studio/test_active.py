"""Active selection: features, ensemble fits, BALD / variance, refit rounds, task order."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.studio import active, queue
from prefkit.studio.annotators import add_annotator


def test_features_are_deterministic_and_length_aware():
    f = active.TextFeatures()
    a = f("tell me briefly", "the cat sat on the mat")
    assert np.array_equal(a, f("tell me briefly", "the cat sat on the mat"))
    assert a.shape == (f.dim,) and a[-1] == 1.0
    assert a[-4] == pytest.approx(0.6) and a[-3] == pytest.approx(0.36)  # 6 words: length/10 and its square
    assert a[-2] == pytest.approx(1 / 6)  # one repeated word ("the")
    assert f("x", "")[: f.words].sum() == 0


def _synthetic(n, rng, dim=5):
    w = np.array([2.0, -1.0, 0.5, 0.0, 0.0])
    phi_a, phi_b = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    p = 1 / (1 + np.exp(-(phi_a - phi_b) @ w))
    return phi_a, phi_b, (rng.random(n) < p).astype(float), w


@pytest.mark.parametrize("kind", ["bt", "gpm"])
def test_ensembles_learn_a_bradley_terry_preference(kind):
    rng = np.random.default_rng(0)
    phi_a, phi_b, y, w = _synthetic(600, rng)
    ones = np.ones((600, 1))
    phi_a, phi_b = np.hstack([phi_a, ones]), np.hstack([phi_b, ones])  # the constant a GPM needs
    ensemble = active.fit_ensemble(active.Votes(phi_a, phi_b, y), kind=kind, members=4, seed=0, l2=0.1)
    ta, tb, _, _ = _synthetic(400, rng)
    ta, tb = np.hstack([ta, np.ones((400, 1))]), np.hstack([tb, np.ones((400, 1))])
    truth = ((ta - tb)[:, :5] @ w) > 0
    accuracy = ((ensemble.mean_probability(ta, tb) > 0.5) == truth).mean()
    assert accuracy > 0.9
    assert ensemble.probabilities(ta, tb).shape == (4, 400)


def test_bt_members_are_bootstrap_replicas_and_the_fit_is_the_mle():
    from scipy.optimize import check_grad

    rng = np.random.default_rng(1)
    phi_a, phi_b, y, _ = _synthetic(200, rng)
    votes = active.Votes(phi_a, phi_b, y)
    ensemble = active.fit_ensemble(votes, members=3, seed=0)
    assert not np.allclose(ensemble.members[0], ensemble.members[1])  # different replicas
    objective = active.bt_objective(votes, np.ones(200), 1.0)
    w = active._bt_member(votes, np.ones(200), 1.0)
    assert np.linalg.norm(objective(w)[1]) < 1e-3  # a stationary point of the regularised likelihood
    d = phi_a - phi_b
    x = rng.normal(size=5)
    z = d @ x
    by_hand = -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 / (1 + np.exp(z)))).sum() + 0.5 * x @ x
    assert objective(x)[0] == pytest.approx(by_hand)
    assert check_grad(lambda v: objective(v)[0], lambda v: objective(v)[1], x) < 1e-4


def test_gpm_gradient_is_exact():
    from scipy.optimize import check_grad

    rng = np.random.default_rng(2)
    phi_a, phi_b, y, _ = _synthetic(30, rng)
    objective = active.gpm_objective(active.Votes(phi_a, phi_b, y), rng.random(30), 0.3, 2)
    x = rng.normal(size=2 * 2 * 5)
    assert check_grad(lambda v: objective(v)[0], lambda v: objective(v)[1], x) < 1e-4


def test_gpm_score_matches_prefkit_losses():
    import torch

    from prefkit.losses import gpm_score

    rng = np.random.default_rng(3)
    W = rng.normal(size=(4, 6))
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    ours = active._gpm_scores(W, a, b, 2)
    theirs = gpm_score(torch.tensor(a @ W.T), torch.tensor(b @ W.T)).numpy()
    assert np.allclose(ours, theirs)


def test_bald_is_high_where_confident_members_disagree():
    probabilities = np.array([[0.99, 0.5, 0.9], [0.01, 0.5, 0.9], [0.99, 0.5, 0.9], [0.01, 0.5, 0.9]])
    bald = active.selection_scores(probabilities, "bald")
    assert bald[0] > 0.6 and bald[1] == pytest.approx(0, abs=1e-9) and bald[2] == pytest.approx(0, abs=1e-9)
    # log 2 minus the mean entropy of 0.99 / 0.01
    h = -(0.99 * np.log(0.99) + 0.01 * np.log(0.01))
    assert bald[0] == pytest.approx(np.log(2) - h, rel=1e-6)
    variance = active.selection_scores(probabilities, "variance")
    assert variance[0] == pytest.approx(0.98**2 / 4) and variance[1] == 0
    with pytest.raises(ValueError, match="bald"):
        active.selection_scores(probabilities, "entropy")


def _vote_all(store, person, n, rng):
    for i in range(n):
        task = queue.next_task(store, person.id)
        if task is None:
            return
        choice = "left" if ("good" in task.left) == (rng.random() < 0.9) else "right"
        queue.vote(store, person.id, task.assignment_id, choice, nonce=f"{person.handle}-{i:05d}")


def test_refit_scores_open_pairs_and_the_queue_follows_the_scores(make_store):
    from sqlalchemy import select

    from prefkit.studio.schema import Pair, SelectionRound
    from prefkit.studio.tasks import import_pairs_file
    from tests.studio.conftest import write_jsonl

    store, directory = make_store(0, selection="bald", refit_every=5, ensemble_size=4)
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(30)]
    rows = [{"prompt": f"p{i}", "chosen": "good " + " ".join(rng.choice(words, 3)),
             "rejected": "bad " + " ".join(rng.choice(words, int(rng.integers(1, 6))))} for i in range(40)]
    import_pairs_file(store, str(write_jsonl(directory.parent / "varied.jsonl", rows)))
    alice, _ = add_annotator(store, "alice")
    assert active.refit(store) is None  # fewer than MIN_LABELS votes: random order
    _vote_all(store, alice, active.MIN_LABELS, np.random.default_rng(0))
    assert active.refit_due(store)
    result = active.refit(store)
    assert result is not None and result.n_labels == active.MIN_LABELS and result.scored == 30
    assert not active.refit_due(store)
    with store.read() as s:
        scores = dict(s.execute(select(Pair.id, Pair.score).where(Pair.status == "open")).all())
        assert s.scalar(select(SelectionRound.method)) == "bald"
    served = queue.next_task(store, alice.id).pair_id
    assert scores[served] == max(scores.values())  # ties go by the random key
    assert len(set(scores.values())) > 1


def test_random_selection_never_fits(make_store):
    store, _ = make_store(12, selection="random")
    alice, _ = add_annotator(store, "alice")
    _vote_all(store, alice, 12, np.random.default_rng(0))
    assert not active.refit_due(store) and active.refit(store) is None


def test_the_background_refitter_catches_up(make_store):
    import time

    store, _ = make_store(30, selection="variance", refit_every=5, ensemble_size=3)
    alice, _ = add_annotator(store, "alice")
    _vote_all(store, alice, 12, np.random.default_rng(1))
    refitter = active.Refitter(store, log=lambda m: None)
    refitter.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and refitter.state()["last_round_labels"] != 12:
            time.sleep(0.05)
        assert refitter.state()["last_round_labels"] == 12 and refitter.state()["error"] is None
    finally:
        refitter.stop()
    assert not refitter.thread.is_alive()


def test_a_gpm_ensemble_refits_too(make_store):
    from prefkit.studio.tasks import import_pairs_file
    from tests.studio.conftest import write_jsonl

    store, directory = make_store(0, selection="variance", ensemble_kind="gpm", ensemble_size=2)
    rows = [{"prompt": f"p{i}", "chosen": f"good w{i % 7} w{i % 5}", "rejected": f"bad w{i % 3}"} for i in range(20)]
    import_pairs_file(store, str(write_jsonl(directory.parent / "g.jsonl", rows)))
    alice, _ = add_annotator(store, "alice")
    _vote_all(store, alice, active.MIN_LABELS, np.random.default_rng(2))
    result = active.refit(store)
    assert result is not None and result.scored == 10
