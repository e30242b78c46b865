"""What the admin page reports: agreement between annotators, label shares, position bias, time.

- Cohen's kappa (Cohen 1960) for each two annotators over the pairs both labelled:
  ``(p_o - p_e) / (1 - p_e)`` with ``p_e`` from each annotator's own verdict shares.
- Fleiss' kappa (Fleiss 1971) over the pairs with exactly ``n`` labels (``n`` the most common
  count >= 2): ``(P_bar - P_e) / (1 - P_e)``.
- Position bias: the share of decisive votes (A or B) that went to the side shown on the left,
  with its binomial standard error; 0.5 means none.
- Time per vote: the median of the page's measured ``duration_ms``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from prefkit.studio.schema import VERDICTS


def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen's kappa of two label lists over the same items (None when undefined)."""
    n = len(x)
    if n == 0 or n != len(y):
        return None
    observed = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    expected = sum(cx[c] * cy[c] for c in set(cx) | set(cy)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: list[list[str]], categories: tuple[str, ...] = VERDICTS) -> float | None:
    """Fleiss' kappa of items that each have the same number (>= 2) of labels."""
    if not items:
        return None
    n = len(items[0])
    if n < 2 or any(len(i) != n for i in items):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of labels per item")
    counts = [[Counter(i)[c] for c in categories] for i in items]
    agreement = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    p_bar = sum(agreement) / len(items)
    shares = [sum(row[j] for row in counts) / (len(items) * n) for j in range(len(categories))]
    p_e = sum(p * p for p in shares)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


@dataclass
class AnnotatorStats:
    handle: str
    role: str
    active: bool
    votes: int
    median_ms: float | None
    left_share: float | None


@dataclass
class Report:
    votes: int
    pairs: int
    closed: int
    distribution: dict[str, int]
    left_share: float | None
    left_share_se: float | None
    decisive: int
    median_ms: float | None
    annotators: list[AnnotatorStats]
    cohen: list[tuple[str, str, int, float | None]] = field(default_factory=list)
    fleiss: float | None = None
    fleiss_items: int = 0
    fleiss_raters: int = 0
    selection_rounds: int = 0
    last_round_labels: int | None = None


def report(store: Any) -> Report:
    from sqlalchemy import func, select

    from prefkit.studio.schema import Annotator, Assignment, Label, Pair, SelectionRound

    with store.read() as s:
        rows = s.execute(
            select(Annotator.handle, Assignment.pair_id, Assignment.left_is_a, Label.verdict, Label.duration_ms)
            .join(Assignment, Assignment.annotator_id == Annotator.id).join(Label, Label.assignment_id == Assignment.id)
            .join(Pair, Pair.id == Assignment.pair_id).where(Pair.project_id == store.project_id)
            .order_by(Label.id)).all()
        people = s.execute(select(Annotator.handle, Annotator.role, Annotator.active).order_by(Annotator.id)).all()
        base = select(func.count()).select_from(Pair).where(Pair.project_id == store.project_id, Pair.origin != "arena")
        pairs = int(s.scalar(base) or 0)
        closed = int(s.scalar(base.where(Pair.status == "closed")) or 0)
        rounds = s.execute(select(func.count(), func.max(SelectionRound.n_labels))
                           .where(SelectionRound.project_id == store.project_id)).one()
    distribution = {v: 0 for v in VERDICTS}
    by_pair: dict[int, dict[str, str]] = defaultdict(dict)
    per: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"ms": [], "left": []})
    for handle, pair_id, left_is_a, verdict, ms in rows:
        distribution[verdict] += 1
        by_pair[pair_id][handle] = verdict
        if ms is not None:
            per[handle]["ms"].append(ms)
        if verdict in ("a", "b"):
            per[handle]["left"].append((verdict == "a") == bool(left_is_a))
    left = [x for p in per.values() for x in p["left"]]
    share = sum(left) / len(left) if left else None
    se = math.sqrt(share * (1 - share) / len(left)) if left else None
    all_ms = [x for p in per.values() for x in p["ms"]]
    annotators = []
    for handle, role, active in people:
        p = per.get(handle, {"ms": [], "left": []})
        n = sum(1 for votes in by_pair.values() if handle in votes)
        annotators.append(AnnotatorStats(handle, role, bool(active), n,
                                         statistics.median(p["ms"]) if p["ms"] else None,
                                         sum(p["left"]) / len(p["left"]) if p["left"] else None))
    out = Report(len(rows), pairs, closed, distribution, share, se, len(left),
                 statistics.median(all_ms) if all_ms else None, annotators,
                 selection_rounds=int(rounds[0] or 0), last_round_labels=rounds[1])
    handles = [a.handle for a in annotators]
    for h1, h2 in itertools.combinations(handles, 2):
        shared = [(v[h1], v[h2]) for v in by_pair.values() if h1 in v and h2 in v]
        if shared:
            out.cohen.append((h1, h2, len(shared), cohen_kappa([a for a, _ in shared], [b for _, b in shared])))
    sizes = Counter(len(v) for v in by_pair.values() if len(v) >= 2)
    if sizes:
        n, _ = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))
        items = [list(v.values()) for v in by_pair.values() if len(v) == n]
        out.fleiss, out.fleiss_items, out.fleiss_raters = fleiss_kappa(items), len(items), n
    return out
