"""Votes out of the store: TRL-format pairs (a file, or rows for ``--data studio:DIR``).

One row per vote, ordered by vote id, so the same votes always give the same file. Columns:
``prompt``, ``chosen``, ``rejected`` (for a tie or "both bad", response A then B), ``label``
(1.0, or 0.5 for a tie and for "both bad", as Chatbot Arena counts it), ``annotator``, and the
studio's own ``verdict`` (a, b, tie, both_bad), ``critique``, ``confidence``, ``position`` (the
side the chosen response was shown on; for a tie the side of A), ``duration_ms``, ``pair_id``,
``vote_id``, ``created_at``, ``origin``. prefkit's readers keep the TRL columns and list the rest
as ignored columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefkit.data.records import PairRecord
from prefkit.studio.errors import StudioError

STUDIO_COLUMNS = ("prompt", "chosen", "rejected", "label", "annotator", "verdict", "critique", "confidence",
                  "position", "duration_ms", "pair_id", "vote_id", "created_at", "origin")


def vote_rows(store: Any, *, ties: bool = True, include_arena: bool = True) -> list[dict[str, Any]]:
    """Every vote as a row (see the module docstring); ``ties=False`` leaves ties and "both bad"
    out."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from prefkit.studio.schema import Annotator, Assignment, Label, Pair, Prompt, Response

    ra, rb = aliased(Response), aliased(Response)
    query = (select(Label, Assignment.left_is_a, Annotator.handle, Pair.id, Pair.origin, Prompt.text, ra.text, rb.text)
             .join(Assignment, Assignment.id == Label.assignment_id)
             .join(Annotator, Annotator.id == Assignment.annotator_id)
             .join(Pair, Pair.id == Assignment.pair_id).join(Prompt, Prompt.id == Pair.prompt_id)
             .join(ra, ra.id == Pair.resp_a_id).join(rb, rb.id == Pair.resp_b_id)
             .where(Pair.project_id == store.project_id).order_by(Label.id))
    if not include_arena:
        query = query.where(Pair.origin != "arena")
    rows = []
    with store.read() as s:
        for label, left_is_a, handle, pair_id, origin, prompt, text_a, text_b in s.execute(query):
            if label.verdict in ("tie", "both_bad") and not ties:
                continue
            a_wins = label.verdict != "b"
            chosen, rejected = (text_a, text_b) if a_wins else (text_b, text_a)
            chosen_left = bool(left_is_a) == a_wins
            rows.append({
                "prompt": prompt, "chosen": chosen, "rejected": rejected,
                "label": 1.0 if label.verdict in ("a", "b") else 0.5,
                "annotator": handle, "verdict": label.verdict, "critique": label.critique,
                "confidence": label.confidence, "position": "left" if chosen_left else "right",
                "duration_ms": label.duration_ms, "pair_id": pair_id, "vote_id": label.id,
                "created_at": label.created_at.isoformat(timespec="seconds"), "origin": origin,
            })
    return rows


def pair_records(store: Any, *, ties: bool = True) -> list[PairRecord]:
    """The votes as prefkit ``PairRecord`` s (source: ``("studio:DIR", vote id)``)."""
    name = f"studio:{store.files.root}" if store.files is not None else "studio"
    return [PairRecord(prompt=r["prompt"], chosen=r["chosen"], rejected=r["rejected"], label=r["label"],
                       annotator=r["annotator"], source=(name, r["vote_id"])) for r in vote_rows(store, ties=ties)]


def export_jsonl(store: Any, out: str | os.PathLike[str], *, ties: bool = True) -> int:
    """Write the votes to ``out`` (JSON Lines, atomically); returns the row count."""
    from prefkit._atomic import atomic_write_text

    rows = vote_rows(store, ties=ties)
    if not rows:
        raise StudioError("no votes to export yet" + ("" if ties else " (ties left out)"))
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    atomic_write_text(Path(out), text)
    return len(rows)


def studio_rows(directory: str) -> tuple[str, list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """``(name, columns, rows)`` of a studio project for prefkit's data readers
    (``read_pairs("studio:DIR")``): ``rows`` yields ``(vote id, row)``."""
    from prefkit.studio.store import open_project

    store, _ = open_project(directory)
    try:
        rows = vote_rows(store)
    finally:
        store.close()
    name = f"studio:{directory}"
    if not rows:
        raise StudioError("the studio project has no votes yet", file=name)
    return name, list(STUDIO_COLUMNS), iter([(r["vote_id"], r) for r in rows])
