"""Agreement numbers against worked examples; the admin report on a small project."""

from __future__ import annotations

import pytest

from prefkit.studio import queue
from prefkit.studio.agreement import cohen_kappa, fleiss_kappa, report
from prefkit.studio.annotators import add_annotator


def test_cohen_kappa_worked_example():
    # 50 items: both yes 20, both no 15, A yes/B no 5, A no/B yes 10 (Wikipedia's example): kappa = 0.4
    x = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None


def test_fleiss_kappa_worked_example():
    # Fleiss (1971) / Wikipedia: 10 items, 14 raters, 5 categories, kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    cats = ("c1", "c2", "c3", "c4", "c5")
    items = [[c for c, n in zip(cats, row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items, cats) == pytest.approx(0.2099, abs=1e-4)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["a", "b"], ["a"]], cats)


def test_report_counts_position_bias_and_agreement(make_store):
    store, _ = make_store(6, overlap_k=2)
    people = [add_annotator(store, h)[0] for h in ("alice", "bob")]
    for person in people:
        for i in range(6):
            task = queue.next_task(store, person.id)
            queue.vote(store, person.id, task.assignment_id, "left", duration_ms=1000 * (i + 1),
                       nonce=f"{person.handle}-{i:04d}")
    r = report(store)
    assert r.votes == 12 and r.closed == 6 and r.pairs == 6
    assert r.left_share == 1.0 and r.decisive == 12  # everyone always clicked left
    assert r.distribution["a"] + r.distribution["b"] == 12
    assert r.median_ms == 3500
    assert [(a, b, n) for a, b, n, _ in r.cohen] == [("alice", "bob", 6)]
    assert r.fleiss_items == 6 and r.fleiss_raters == 2
    assert [a.votes for a in r.annotators] == [6, 6]
