"""Tasks into the store: pairs files, prompts answered by one or two policies, a simulated world.

A task is a prompt with two responses. Files go through prefkit's readers (``read_pairs``,
``read_prompts``: every bad row is ``file:line [field]: reason``) and then the studio's own
checks: plain-text rows only, the size limits of ``prefkit.studio.security``, and no duplicate
task (the same prompt and the same two responses, in either order) within the file or against
the project. Every problem is found before anything is written, and the import is one
transaction, so a refused file leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.data.records import PairRecord
from prefkit.errors import InputError
from prefkit.studio.security import MAX_PROMPT_CHARS, MAX_RESPONSE_CHARS
from prefkit.studio.store import Store, utcnow

MAX_LISTED = 5


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ImportSummary:
    """What an import wrote (and what it left out, with why)."""

    source: str
    pairs: int = 0
    prompts: int = 0
    responses: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.source}: {self.pairs} tasks ({self.prompts} new prompts, {self.responses} new responses)"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


@dataclass(frozen=True)
class TaskRow:
    """One task before it is stored: texts, optional checkpoints, and where it came from."""

    prompt: str
    response_a: str
    response_b: str
    source: tuple[str, int]
    checkpoint_a: str | None = None
    checkpoint_b: str | None = None
    gen_params: dict[str, Any] | None = None


class TaskProblems(InputError):
    """Several bad rows: the message is the first one plus how many more (all in ``problems``)."""

    def __init__(self, problems: list[InputError]) -> None:
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more: {'; '.join(str(p) for p in problems[1:MAX_LISTED])})" \
            if len(problems) > 1 else ""
        super().__init__(first.reason + more, file=first.file, line=first.line, field=first.field)


def check_rows(rows: Sequence[TaskRow], existing: dict[tuple[str, frozenset[str]], str]) -> list[InputError]:
    """Plain text, size limits, duplicates; ``existing`` maps task keys already in the store to
    where they came from."""
    problems: list[InputError] = []
    first_line: dict[tuple[str, frozenset[str]], int] = {}
    for row in rows:
        file, line = row.source
        for name, value, limit in (("prompt", row.prompt, MAX_PROMPT_CHARS), ("chosen", row.response_a, MAX_RESPONSE_CHARS),
                                   ("rejected", row.response_b, MAX_RESPONSE_CHARS)):
            if not isinstance(value, str):
                problems.append(InputError("studio tasks must be plain text; conversations (message lists) "
                                           "are not supported", file=file, line=line, field=name))
            elif len(value) > limit:
                problems.append(InputError(f"is {len(value)} characters, over the studio's limit of {limit}",
                                           file=file, line=line, field=name))
        if not all(isinstance(v, str) for v in (row.prompt, row.response_a, row.response_b)):
            continue
        key = task_key(row.prompt, row.response_a, row.response_b)
        if key in first_line:
            problems.append(InputError(f"duplicate task: the same prompt and responses as line {first_line[key]}",
                                       file=file, line=line))
        elif key in existing:
            problems.append(InputError(f"duplicate task: already in the project (from {existing[key]})",
                                       file=file, line=line))
        else:
            first_line[key] = line
    return problems


def task_key(prompt: str, a: str, b: str) -> tuple[str, frozenset[str]]:
    return content_hash(prompt), frozenset((content_hash(a), content_hash(b)))


def existing_tasks(session: Any, project_id: int) -> dict[tuple[str, frozenset[str]], str]:
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from prefkit.studio.schema import Pair, Prompt, Response

    ra, rb = aliased(Response), aliased(Response)
    query = (select(Prompt.content_hash, ra.content_hash, rb.content_hash, Pair.source, Pair.id)
             .join(Pair, Pair.prompt_id == Prompt.id).join(ra, Pair.resp_a_id == ra.id)
             .join(rb, Pair.resp_b_id == rb.id).where(Pair.project_id == project_id))
    return {(p, frozenset((a, b))): source or f"pair {pid}" for p, a, b, source, pid in session.execute(query)}


def store_rows(store: Store, rows: Sequence[TaskRow], *, origin: str, source: str) -> ImportSummary:
    """Check every row, then write them all in one transaction (or nothing). A file whose every
    row is already in the project (a restart with the same ``--tasks``) imports nothing and says
    so; one that is only partly in the project is refused, naming the duplicate lines."""
    from prefkit.studio.schema import Pair

    summary = ImportSummary(source)
    rng = random.Random()
    with store.write() as s:
        existing = existing_tasks(s, store.project_id)
        if rows and all(task_key(r.prompt, r.response_a, r.response_b) in existing for r in rows
                        if isinstance(r.prompt, str) and isinstance(r.response_a, str) and isinstance(r.response_b, str)) \
                and not check_rows(rows, {}):
            summary.notes.append("already imported: every task of this file is in the project")
            return summary
        problems = check_rows(rows, existing)
        if problems:
            raise TaskProblems(problems)
        cache = _Lookup(s, store.project_id, summary)
        now = utcnow()
        for row in rows:
            prompt_id = cache.prompt(row.prompt)
            a = cache.response(prompt_id, row.response_a, row.checkpoint_a, row.gen_params)
            b = cache.response(prompt_id, row.response_b, row.checkpoint_b, row.gen_params)
            low, high = sorted((a, b))
            s.add(Pair(project_id=store.project_id, prompt_id=prompt_id, resp_a_id=low, resp_b_id=high,
                       origin=origin, source=f"{row.source[0]}:{row.source[1]}", random_key=rng.random(),
                       status="open", created_at=now))
            summary.pairs += 1
    return summary


class _Lookup:
    """Get-or-create prompts, responses and checkpoints inside one transaction."""

    def __init__(self, session: Any, project_id: int, summary: ImportSummary) -> None:
        self.s, self.project_id, self.summary = session, project_id, summary
        self.prompts: dict[str, int] = {}
        self.responses: dict[tuple[int, str, int | None], int] = {}
        self.checkpoints: dict[str, int] = {}

    def prompt(self, text: str) -> int:
        from sqlalchemy import select

        from prefkit.studio.schema import Prompt

        digest = content_hash(text)
        if digest not in self.prompts:
            found = self.s.scalar(select(Prompt.id).where(Prompt.project_id == self.project_id,
                                                          Prompt.content_hash == digest))
            if found is None:
                row = Prompt(project_id=self.project_id, text=text, content_hash=digest)
                self.s.add(row)
                self.s.flush()
                found = row.id
                self.summary.prompts += 1
            self.prompts[digest] = found
        return self.prompts[digest]

    def checkpoint(self, uri: str | None) -> int | None:
        if uri is None:
            return None
        if uri not in self.checkpoints:
            self.checkpoints[uri] = checkpoint_id(self.s, uri)
        return self.checkpoints[uri]

    def response(self, prompt_id: int, text: str, checkpoint: str | None, params: dict[str, Any] | None) -> int:
        from sqlalchemy import select

        from prefkit.studio.schema import Response

        ckpt = self.checkpoint(checkpoint)
        digest = content_hash(text)
        key = (prompt_id, digest, ckpt)
        if key not in self.responses:
            found = self.s.scalar(select(Response.id).where(
                Response.prompt_id == prompt_id, Response.content_hash == digest,
                Response.checkpoint_id.is_(None) if ckpt is None else Response.checkpoint_id == ckpt))
            if found is None:
                row = Response(prompt_id=prompt_id, checkpoint_id=ckpt, text=text, content_hash=digest,
                               gen_params_json=json.dumps(params, sort_keys=True) if params else None)
                self.s.add(row)
                self.s.flush()
                found = row.id
                self.summary.responses += 1
            self.responses[key] = found
        return self.responses[key]


def checkpoint_id(session: Any, uri: str) -> int:
    """The checkpoint row for ``uri`` (created with a unique display name on first use)."""
    from sqlalchemy import select

    from prefkit.studio.schema import Checkpoint

    found = session.scalar(select(Checkpoint.id).where(Checkpoint.uri == uri))
    if found is not None:
        return found
    base = Path(uri.rstrip("/")).name or uri
    name, n = base, 1
    while session.scalar(select(Checkpoint.id).where(Checkpoint.name == name)) is not None:
        n += 1
        name = f"{base}-{n}"
    row = Checkpoint(name=name, uri=uri)
    session.add(row)
    session.flush()
    return row.id


def import_pairs_file(store: Store, path: str) -> ImportSummary:
    """Tasks from a pairs file (``prompt``, ``chosen``, ``rejected``); the file's labels, if any,
    are not votes and are not imported (the summary says so)."""
    from prefkit.data import read_pairs

    records, report = read_pairs(path)
    return import_records(store, records, source=str(path), origin="import",
                          labelled=any(r.label != 1.0 for r in records) or "label" in report.ignored_columns)


def import_records(store: Store, records: Sequence[PairRecord], *, source: str, origin: str = "import",
                   labelled: bool = False) -> ImportSummary:
    rows = [TaskRow(r.prompt, r.chosen, r.rejected, r.source or (source, i + 1))  # type: ignore[arg-type]
            for i, r in enumerate(records)]
    summary = store_rows(store, rows, origin=origin, source=source)
    summary.notes.append("which response is 'chosen' in the file is not shown to annotators and is not a vote")
    if labelled:
        summary.notes.append("the file's labels were not imported")
    return summary


def generate_tasks(store: Store, prompts_path: str, policies: Sequence[str], *, max_new_tokens: int = 48,
                   temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16) -> ImportSummary:
    """Answer each prompt of ``prompts_path`` with two samples of one policy, or one sample of
    each of two policies (the responses remember their checkpoint, so the leaderboard can rate
    them). A pair of identical or empty responses carries no preference: skipped and counted."""
    import torch

    from prefkit.data import read_prompts
    from prefkit.policy import Policy

    if len(policies) not in (1, 2):
        raise InputError(f"--policy takes one or two checkpoints, got {len(policies)}", field="policy")
    records, _ = read_prompts(prompts_path)
    for r in records:
        if not isinstance(r.prompt, str):
            raise InputError("studio tasks must be plain text; conversations are not supported",
                             file=r.source[0] if r.source else prompts_path, line=r.source[1] if r.source else None,
                             field="prompt")
    loaded = [Policy.load(p, device="cpu") for p in policies]
    params = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    texts: list[list[str]] = []
    for policy in loaded:
        generator = torch.Generator().manual_seed(seed)
        n = 2 if len(loaded) == 1 else 1
        out: list[list[str]] = []
        for start in range(0, len(records), batch_size):
            chunk = [r.prompt for r in records[start:start + batch_size]]
            samples = policy.sample(chunk, n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    generator=generator)
            out.extend(samples.texts)
        texts.append(out)
    rows: list[TaskRow] = []
    skipped = {"identical": 0, "empty": 0}
    for i, record in enumerate(records):
        if len(loaded) == 1:
            a, b = texts[0][i]
            ckpt_a = ckpt_b = str(policies[0])
        else:
            a, b = texts[0][i][0], texts[1][i][0]
            ckpt_a, ckpt_b = str(policies[0]), str(policies[1])
        if not a.strip() or not b.strip():
            skipped["empty"] += 1
            continue
        if a.strip() == b.strip():
            skipped["identical"] += 1
            continue
        source = record.source or (str(prompts_path), i + 1)
        rows.append(TaskRow(record.prompt, a, b, source, ckpt_a, ckpt_b, params))  # type: ignore[arg-type]
    if not rows:
        raise InputError(f"no usable task: every prompt got identical or empty responses ({skipped})",
                         file=str(prompts_path))
    summary = store_rows(store, rows, origin="generated", source=str(prompts_path))
    summary.skipped = {f"{why} responses": n for why, n in skipped.items() if n}
    return summary


def seed_from_world(store: Store, world: str = "transitive", *, n: int = 200, seed: int = 0) -> ImportSummary:
    """``n`` pairs of base responses on the train prompts of a simulated world (a demo project)."""
    import numpy as np

    from prefkit.sim import make_world

    sim = make_world(world, seed=seed)
    records = sim.pairs(n, np.random.default_rng(seed))
    rows = []
    for i, r in enumerate(records):
        rows.append(TaskRow(r.prompt, r.chosen, r.rejected, (f"sim:{world}", i + 1)))  # type: ignore[arg-type]
    seen: set[tuple[str, frozenset[str]]] = set()
    unique = []
    for row in rows:  # a world can draw the same pair twice; a task is stored once
        key = task_key(row.prompt, row.response_a, row.response_b)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    summary = store_rows(store, unique, origin="world", source=f"sim:{world}")
    if len(unique) < len(rows):
        summary.skipped["repeated draws"] = len(rows) - len(unique)
    return summary
