"""Serving tasks and recording votes: one short write transaction each.

``next_task`` gives an annotator their open assignment if they have one (two tabs or the back
button show the same task), else the best open pair they have not seen whose live assignments
(labelled, or issued and not expired) number fewer than the project's ``overlap_k``; "best" is
the active-selection score of the latest refit (highest first), then a random key fixed at
import (random order, the control). Left/right is randomised in blocks of two per annotator
and recorded on the assignment.

``vote`` stores the canonical verdict (the side clicked, translated through ``left_is_a``) and
commits before it returns, so a served next task always follows a durable vote. A repeated
submission (double click, resubmitted form) with the same nonce is acknowledged once. A vote on
another annotator's assignment, an expired one whose slot was taken, or a field over its limit
is refused (:class:`TaskRefused`, with the HTTP status the app answers with).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefkit.studio.errors import TaskRefused
from prefkit.studio.security import MAX_CRITIQUE_CHARS, MAX_DURATION_MS, NONCE_PATTERN
from prefkit.studio.store import Store, utcnow

CHOICES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class Task:
    """What the labelling page shows: never a checkpoint name (identities stay hidden)."""

    assignment_id: int
    pair_id: int
    prompt: str
    left: str
    right: str
    origin: str


@dataclass(frozen=True)
class VoteResult:
    label_id: int
    verdict: str
    duplicate: bool
    pair_closed: bool


def _live_counts(session: Any, now: Any) -> Any:
    from sqlalchemy import func, or_, select

    from prefkit.studio.schema import Assignment

    return (select(Assignment.pair_id, func.count().label("n"))
            .where(or_(Assignment.status == "done",
                       (Assignment.status == "issued") & (Assignment.expires_at > now)))
            .group_by(Assignment.pair_id).subquery())


def _live_count(session: Any, pair_id: int, now: Any, *, excluding: int | None = None) -> int:
    from sqlalchemy import func, or_, select

    from prefkit.studio.schema import Assignment

    query = select(func.count()).select_from(Assignment).where(
        Assignment.pair_id == pair_id,
        or_(Assignment.status == "done", (Assignment.status == "issued") & (Assignment.expires_at > now)))
    if excluding is not None:
        query = query.where(Assignment.id != excluding)
    return int(session.scalar(query) or 0)


def _task(session: Any, assignment: Any) -> Task:
    from prefkit.studio.schema import Pair, Prompt, Response

    pair = session.get(Pair, assignment.pair_id)
    a, b = session.get(Response, pair.resp_a_id), session.get(Response, pair.resp_b_id)
    left, right = (a, b) if assignment.left_is_a else (b, a)
    return Task(assignment.id, pair.id, session.get(Prompt, pair.prompt_id).text, left.text, right.text, pair.origin)


def _side(session: Any, annotator_id: int) -> bool:
    """``left_is_a`` for the annotator's next task: randomised in blocks of two (a coin flip, then
    the other order), so each annotator sees A on the left exactly as often as on the right, up
    to one task, and position bias cannot masquerade as preference."""
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment

    count = int(session.scalar(select(func.count()).select_from(Assignment)
                               .where(Assignment.annotator_id == annotator_id)) or 0)
    if count % 2:
        previous = session.scalar(select(Assignment.left_is_a).where(Assignment.annotator_id == annotator_id)
                                  .order_by(Assignment.id.desc()).limit(1))
        if previous is not None:
            return not previous
    return bool(secrets.randbelow(2))


def next_task(store: Store, annotator_id: int) -> Task | None:
    """The annotator's current task, or a new one, or None when nothing is left for them."""
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment, Pair, Project

    with store.write() as s:
        project = s.get(Project, store.project_id)
        now = utcnow()
        lock = timedelta(minutes=project.lock_minutes)
        own = s.scalars(
            select(Assignment).join(Pair, Pair.id == Assignment.pair_id)
            .where(Assignment.annotator_id == annotator_id, Assignment.status == "issued", Pair.origin != "arena")
            .order_by(Assignment.issued_at.desc(), Assignment.id.desc())).all()
        for assignment in own:
            if assignment.expires_at > now or _live_count(s, assignment.pair_id, now,
                                                          excluding=assignment.id) < project.overlap_k:
                assignment.expires_at = now + lock
                return _task(s, assignment)
            assignment.status = "expired"
        live = _live_counts(s, now)
        seen = select(Assignment.pair_id).where(Assignment.annotator_id == annotator_id)
        query = (select(Pair).outerjoin(live, live.c.pair_id == Pair.id)
                 .where(Pair.project_id == store.project_id, Pair.status == "open", Pair.origin != "arena",
                        Pair.id.not_in(seen), (live.c.n.is_(None)) | (live.c.n < project.overlap_k))
                 .order_by(Pair.score.is_(None), Pair.score.desc(), Pair.random_key, Pair.id).limit(1))
        pair = s.scalar(query)
        if pair is None:
            return None
        for stale in s.scalars(select(Assignment).where(Assignment.pair_id == pair.id, Assignment.status == "issued",
                                                         Assignment.expires_at <= now)):
            stale.status = "expired"  # its slot goes to this annotator; a late vote on it is refused
        assignment = Assignment(pair_id=pair.id, annotator_id=annotator_id, left_is_a=_side(s, annotator_id),
                                issued_at=now, expires_at=now + lock, status="issued")
        s.add(assignment)
        s.flush()
        return _task(s, assignment)


def task_for(store: Store, annotator_id: int, assignment_id: int) -> Task:
    """One of the annotator's own assignments (for the arena's battle page)."""
    from prefkit.studio.schema import Assignment

    with store.read() as s:
        assignment = s.get(Assignment, assignment_id)
        if assignment is None or assignment.annotator_id != annotator_id:
            raise TaskRefused("no such task for you", status=404)
        return _task(s, assignment)


def check_vote_fields(project: Any, choice: Any, critique: Any, confidence: Any, duration_ms: Any,
                      nonce: Any) -> tuple[str, str | None, int | None, int | None, str]:
    """Validated ``(choice, critique, confidence, duration_ms, nonce)``."""
    if choice not in CHOICES:
        raise TaskRefused(f"choice must be one of {', '.join(CHOICES)}", field="choice")
    if choice == "tie" and not project.allow_tie:
        raise TaskRefused("this project does not allow ties", field="choice")
    if choice == "both_bad" and not project.allow_both_bad:
        raise TaskRefused("this project does not allow 'both bad'", field="choice")
    if critique is not None and not isinstance(critique, str):
        raise TaskRefused("critique must be text", field="critique")
    critique = (critique or "").strip() or None
    if critique is not None and len(critique) > MAX_CRITIQUE_CHARS:
        raise TaskRefused(f"critique is {len(critique)} characters, over the limit of {MAX_CRITIQUE_CHARS}",
                          field="critique", status=413)
    if project.critique == "required" and critique is None:
        raise TaskRefused("a critique is required in this project", field="critique")
    if project.critique == "off":
        critique = None
    if confidence in ("", None):
        confidence = None
    else:
        try:
            confidence = int(confidence)
        except (TypeError, ValueError):
            raise TaskRefused("confidence must be an integer from 1 to 5", field="confidence") from None
        if not 1 <= confidence <= 5:
            raise TaskRefused("confidence must be an integer from 1 to 5", field="confidence")
    if duration_ms in ("", None):
        duration_ms = None
    else:
        try:
            duration_ms = min(max(int(duration_ms), 0), MAX_DURATION_MS)
        except (TypeError, ValueError):
            raise TaskRefused("duration_ms must be an integer", field="duration_ms") from None
    if not isinstance(nonce, str) or not NONCE_PATTERN.match(nonce):
        raise TaskRefused("nonce must be 8-64 characters of A-Z a-z 0-9 _ -", field="nonce")
    return choice, critique, confidence, duration_ms, nonce


def verdict_of(choice: str, left_is_a: bool) -> str:
    """The canonical verdict of a clicked side: left means A exactly when A was shown left."""
    if choice == "left":
        return "a" if left_is_a else "b"
    if choice == "right":
        return "b" if left_is_a else "a"
    return choice


def vote(store: Store, annotator_id: int, assignment_id: Any, choice: Any, *, critique: Any = None,
         confidence: Any = None, duration_ms: Any = None, nonce: Any) -> VoteResult:
    """Record one vote (committed on return); see the module docstring for what is refused."""
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment, Label, Pair, Project

    try:
        assignment_id = int(assignment_id)
    except (TypeError, ValueError):
        raise TaskRefused("assignment must be an integer id", field="assignment") from None
    with store.write() as s:
        project = s.get(Project, store.project_id)
        choice, critique, confidence, duration_ms, nonce = check_vote_fields(
            project, choice, critique, confidence, duration_ms, nonce)
        assignment = s.get(Assignment, assignment_id)
        if assignment is None or assignment.annotator_id != annotator_id:
            raise TaskRefused("this task is not yours", status=403)
        earlier = s.scalar(select(Label).where(Label.client_nonce == nonce))
        if earlier is not None:
            if earlier.assignment_id != assignment.id:
                raise TaskRefused("this nonce was used for another vote", status=409, field="nonce")
            pair = s.get(Pair, assignment.pair_id)
            return VoteResult(earlier.id, earlier.verdict, True, pair.status == "closed")
        if assignment.status == "done":
            raise TaskRefused("this task already has your vote", status=409)
        now = utcnow()
        if assignment.status == "expired" or (
                assignment.expires_at <= now
                and _live_count(s, assignment.pair_id, now, excluding=assignment.id) >= project.overlap_k):
            assignment.status = "expired"
            raise TaskRefused("this task expired and went to someone else; here is a new one", status=409)
        verdict = verdict_of(choice, assignment.left_is_a)
        label = Label(assignment_id=assignment.id, verdict=verdict, critique=critique, confidence=confidence,
                      duration_ms=duration_ms, client_nonce=nonce, created_at=now)
        s.add(label)
        assignment.status = "done"
        s.flush()
        pair = s.get(Pair, assignment.pair_id)
        done = int(s.scalar(select(func.count()).select_from(Assignment)
                            .where(Assignment.pair_id == pair.id, Assignment.status == "done")) or 0)
        if done >= project.overlap_k or pair.origin == "arena":
            pair.status = "closed"
        return VoteResult(label.id, verdict, False, pair.status == "closed")


def undo_last(store: Store, annotator_id: int) -> int | None:
    """Take back the annotator's latest labelling vote (arena votes, whose identities were shown,
    cannot be undone): the label is deleted, its task becomes the current one again, and the task
    they were looking at goes back to the queue. Returns the reopened assignment id or None."""
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment, Label, Pair, Project

    with store.write() as s:
        project = s.get(Project, store.project_id)
        row = s.execute(
            select(Label, Assignment).join(Assignment, Assignment.id == Label.assignment_id)
            .join(Pair, Pair.id == Assignment.pair_id)
            .where(Assignment.annotator_id == annotator_id, Pair.origin != "arena")
            .order_by(Label.id.desc()).limit(1)).first()
        if row is None:
            return None
        label, assignment = row
        for current in s.scalars(select(Assignment).join(Pair, Pair.id == Assignment.pair_id).where(
                Assignment.annotator_id == annotator_id, Assignment.status == "issued", Pair.origin != "arena")):
            s.delete(current)
        s.delete(label)
        now = utcnow()
        assignment.status, assignment.issued_at = "issued", now
        assignment.expires_at = now + timedelta(minutes=project.lock_minutes)
        s.get(Pair, assignment.pair_id).status = "open"
        return assignment.id


@dataclass(frozen=True)
class OwnVote:
    label_id: int
    prompt: str
    chose: str
    """What the annotator picked as they saw it: left, right, tie or both_bad."""
    critique: str | None
    confidence: int | None
    created_at: Any


def own_votes(store: Store, annotator_id: int, limit: int = 200) -> tuple[int, list[OwnVote]]:
    """The annotator's vote count and latest votes (nobody else's)."""
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment, Label, Pair, Prompt

    with store.read() as s:
        total = int(s.scalar(select(func.count()).select_from(Label).join(Assignment, Assignment.id == Label.assignment_id)
                             .where(Assignment.annotator_id == annotator_id)) or 0)
        rows = s.execute(
            select(Label, Assignment.left_is_a, Prompt.text).join(Assignment, Assignment.id == Label.assignment_id)
            .join(Pair, Pair.id == Assignment.pair_id).join(Prompt, Prompt.id == Pair.prompt_id)
            .where(Assignment.annotator_id == annotator_id).order_by(Label.id.desc()).limit(limit)).all()
    votes = []
    for label, left_is_a, prompt in rows:
        if label.verdict in ("a", "b"):
            chose = "left" if (label.verdict == "a") == bool(left_is_a) else "right"
        else:
            chose = label.verdict
        votes.append(OwnVote(label.id, prompt, chose, label.critique, label.confidence, label.created_at))
    return total, votes


@dataclass(frozen=True)
class Progress:
    pairs: int
    closed: int
    labels: int
    mine: int


def progress(store: Store, annotator_id: int | None = None) -> Progress:
    from sqlalchemy import func, select

    from prefkit.studio.schema import Assignment, Label, Pair

    with store.read() as s:
        base = select(func.count()).select_from(Pair).where(Pair.project_id == store.project_id, Pair.origin != "arena")
        pairs = int(s.scalar(base) or 0)
        closed = int(s.scalar(base.where(Pair.status == "closed")) or 0)
        labels = int(s.scalar(select(func.count()).select_from(Label)
                              .join(Assignment, Assignment.id == Label.assignment_id)
                              .join(Pair, Pair.id == Assignment.pair_id)
                              .where(Pair.project_id == store.project_id)) or 0)
        mine = 0
        if annotator_id is not None:
            mine = int(s.scalar(select(func.count()).select_from(Label).join(Assignment, Assignment.id == Label.assignment_id)
                                .where(Assignment.annotator_id == annotator_id)) or 0)
    return Progress(pairs, closed, labels, mine)
