"""Serving tasks and votes: canonical verdicts, idempotency, ownership, overlap, expiry, undo,
concurrent annotators."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from prefkit.studio import queue
from prefkit.studio.annotators import add_annotator
from prefkit.studio.errors import TaskRefused


def _people(store, *handles):
    return [add_annotator(store, h)[0] for h in handles]


def test_the_current_task_is_served_again_until_voted(make_store):
    store, _ = make_store(4)
    (alice,) = _people(store, "alice")
    first = queue.next_task(store, alice.id)
    assert queue.next_task(store, alice.id) == first  # a second tab or the back button
    queue.vote(store, alice.id, first.assignment_id, "left", nonce="nonce-0001")
    assert queue.next_task(store, alice.id).pair_id != first.pair_id


@pytest.mark.parametrize("left_is_a", [True, False])
@pytest.mark.parametrize(("choice", "expected"), [("left", None), ("right", None), ("tie", "tie"),
                                                  ("both_bad", "both_bad")])
def test_clicked_side_becomes_the_canonical_verdict(make_store, left_is_a, choice, expected):
    from prefkit.studio.schema import Assignment

    store, _ = make_store(1)
    (alice,) = _people(store, "alice")
    task = queue.next_task(store, alice.id)
    with store.write() as s:
        s.get(Assignment, task.assignment_id).left_is_a = left_is_a
    task = queue.next_task(store, alice.id)
    result = queue.vote(store, alice.id, task.assignment_id, choice, nonce="nonce-0001")
    if expected is None:  # left is A exactly when A was shown on the left
        expected = "a" if (choice == "left") == left_is_a else "b"
    assert result.verdict == expected
    assert queue.verdict_of(choice, left_is_a) == expected


def test_left_right_order_is_randomised_and_balanced(make_store):
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment

    store, _ = make_store(40)
    (alice,) = _people(store, "alice")
    for i in range(40):
        task = queue.next_task(store, alice.id)
        queue.vote(store, alice.id, task.assignment_id, "left", nonce=f"nonce-{i:04d}")
    with store.read() as s:
        sides = list(s.scalars(select(Assignment.left_is_a).order_by(Assignment.id)))
    assert all(sides[i] != sides[i + 1] for i in range(0, 40, 2))
    assert sum(sides) == 20  # randomised in blocks of two: exactly balanced


def test_a_repeated_submission_is_one_vote(make_store):
    from prefkit.studio.export import vote_rows

    store, _ = make_store(2)
    (alice,) = _people(store, "alice")
    task = queue.next_task(store, alice.id)
    first = queue.vote(store, alice.id, task.assignment_id, "left", nonce="same-nonce")
    again = queue.vote(store, alice.id, task.assignment_id, "left", nonce="same-nonce")
    assert again.duplicate and again.label_id == first.label_id
    with pytest.raises(TaskRefused, match="already has your vote") as err:
        queue.vote(store, alice.id, task.assignment_id, "right", nonce="other-tab-nonce")
    assert err.value.status == 409
    assert len(vote_rows(store)) == 1


def test_another_annotators_task_is_refused(make_store):
    store, _ = make_store(2)
    alice, bob = _people(store, "alice", "bob")
    task = queue.next_task(store, alice.id)
    with pytest.raises(TaskRefused, match="not yours") as err:
        queue.vote(store, bob.id, task.assignment_id, "left", nonce="nonce-0001")
    assert err.value.status == 403


def test_overlap_k_annotators_then_the_pair_closes(make_store):
    store, _ = make_store(1, overlap_k=2)
    alice, bob, carol = _people(store, "alice", "bob", "carol")
    t1, t2 = queue.next_task(store, alice.id), queue.next_task(store, bob.id)
    assert t1.pair_id == t2.pair_id
    assert queue.next_task(store, carol.id) is None  # two live assignments fill the overlap
    queue.vote(store, alice.id, t1.assignment_id, "left", nonce="nonce-0001")
    assert queue.vote(store, bob.id, t2.assignment_id, "tie", nonce="nonce-0002").pair_closed
    assert queue.progress(store).closed == 1
    assert queue.next_task(store, carol.id) is None
    assert queue.next_task(store, alice.id) is None  # never the same pair twice


def test_expired_assignment_frees_its_slot_and_a_late_vote_is_refused(make_store):
    from prefkit.studio.schema import Assignment
    from prefkit.studio.store import utcnow

    store, _ = make_store(1, overlap_k=1)
    alice, bob = _people(store, "alice", "bob")
    stale = queue.next_task(store, alice.id)
    assert queue.next_task(store, bob.id) is None
    with store.write() as s:
        s.get(Assignment, stale.assignment_id).expires_at = utcnow() - timedelta(minutes=1)
    fresh = queue.next_task(store, bob.id)
    assert fresh is not None and fresh.pair_id == stale.pair_id
    with pytest.raises(TaskRefused, match="expired") as err:
        queue.vote(store, alice.id, stale.assignment_id, "left", nonce="nonce-0001")
    assert err.value.status == 409
    queue.vote(store, bob.id, fresh.assignment_id, "left", nonce="nonce-0002")
    assert queue.progress(store).labels == 1


def test_an_expired_but_untaken_task_still_accepts_its_vote(make_store):
    from prefkit.studio.schema import Assignment
    from prefkit.studio.store import utcnow

    store, _ = make_store(1)
    (alice,) = _people(store, "alice")
    task = queue.next_task(store, alice.id)
    with store.write() as s:
        s.get(Assignment, task.assignment_id).expires_at = utcnow() - timedelta(minutes=1)
    assert queue.vote(store, alice.id, task.assignment_id, "right", nonce="nonce-0001").verdict in ("a", "b")


def test_undo_takes_back_the_last_vote_and_shows_its_task_again(make_store):
    store, _ = make_store(3)
    (alice,) = _people(store, "alice")
    first = queue.next_task(store, alice.id)
    queue.vote(store, alice.id, first.assignment_id, "left", nonce="nonce-0001")
    second = queue.next_task(store, alice.id)
    assert queue.undo_last(store, alice.id) == first.assignment_id
    assert queue.progress(store, alice.id).mine == 0
    again = queue.next_task(store, alice.id)
    assert (again.assignment_id, again.left, again.right) == (first.assignment_id, first.left, first.right)
    queue.vote(store, alice.id, again.assignment_id, "right", nonce="nonce-0002")
    assert queue.next_task(store, alice.id).pair_id != first.pair_id
    assert second.pair_id != first.pair_id
    assert queue.undo_last(store, alice.id) == first.assignment_id
    total, votes = queue.own_votes(store, alice.id)
    assert total == 0 and votes == []


def test_undo_with_nothing_to_undo(make_store):
    store, _ = make_store(1)
    (alice,) = _people(store, "alice")
    assert queue.undo_last(store, alice.id) is None


@pytest.mark.parametrize(("settings", "kwargs", "message"), [
    ({"allow_tie": False}, {"choice": "tie"}, "does not allow ties"),
    ({"allow_both_bad": False}, {"choice": "both_bad"}, "does not allow 'both bad'"),
    ({"critique": "required"}, {"choice": "left"}, "critique is required"),
    ({}, {"choice": "left", "critique": "x" * 4001}, "over the limit of 4000"),
    ({}, {"choice": "sideways"}, "choice must be one of"),
    ({}, {"choice": "left", "confidence": 9}, "confidence must be an integer from 1 to 5"),
    ({}, {"choice": "left", "nonce": "<script>"}, "nonce must be"),
])
def test_bad_vote_fields_are_refused(make_store, settings, kwargs, message):
    store, _ = make_store(1, **settings)
    (alice,) = _people(store, "alice")
    task = queue.next_task(store, alice.id)
    kwargs = {"nonce": "nonce-0001", **kwargs}
    choice = kwargs.pop("choice")
    with pytest.raises(TaskRefused, match=message):
        queue.vote(store, alice.id, task.assignment_id, choice, **kwargs)
    assert queue.progress(store).labels == 0


def test_own_votes_are_only_ones_own(make_store):
    store, _ = make_store(4, overlap_k=2)
    alice, bob = _people(store, "alice", "bob")
    for person, choice in ((alice, "left"), (bob, "tie")):
        task = queue.next_task(store, person.id)
        queue.vote(store, person.id, task.assignment_id, choice, critique=f"from {person.handle}",
                   nonce=f"nonce-{person.handle}")
    total, votes = queue.own_votes(store, alice.id)
    assert total == 1 and [v.critique for v in votes] == ["from alice"] and votes[0].chose == "left"


def test_concurrent_annotators_never_exceed_the_overlap(make_store):
    """Eight annotators in threads ask and vote at once: every pair gets at most k votes, nobody
    sees a pair twice, no vote is lost, and the store stays consistent."""
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment, Label

    store, _ = make_store(12, overlap_k=3)
    people = _people(store, *[f"a{i}" for i in range(8)])
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(person, index):
        try:
            n = 0
            while True:
                task = queue.next_task(store, person.id)
                if task is None:
                    return
                result = queue.vote(store, person.id, task.assignment_id, "left", nonce=f"n-{index}-{n:04d}")
                n += 1
                with lock:
                    acknowledged.append(result.label_id)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p, i)) for i, p in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with store.read() as s:
        per_pair = s.execute(select(Assignment.pair_id, func.count()).join(Label, Label.assignment_id == Assignment.id)
                             .group_by(Assignment.pair_id)).all()
        labels = set(s.scalars(select(Label.id)))
    assert sorted(n for _, n in per_pair) == [3] * 12
    assert labels == set(acknowledged) and len(acknowledged) == 36
    assert queue.progress(store).closed == 12
