"""Rubrics (OpenRubrics): contrastive rubric generation, label-consistency filtering, a rubric judge.

OpenRubrics (Liu et al. 2025, arXiv 2510.07743; algorithms.md §17) writes a rubric for a prompt
from a preferred and a rejected response (*Contrastive Rubric Generation*): **hard rules**
(explicit constraints the prompt sets) and **principles** (implicit qualities that separate good
answers from bad ones). A rubric is kept only when a judge that reads it reproduces the original
preference (*preference-label-consistency* rejection sampling): up to ``tries`` rubrics are drawn
per pair and the first consistent one is kept; pairs with none are counted, never kept.

:class:`RubricJudge` is a pairwise LLM judge (an :class:`~prefkit.preference.llm_judge.LLMJudge`,
so position-debiased, any backend, configurable labels) whose prompt contains the prompt's rubric;
prompts without a rubric of their own use the *general* rubric (the principles shared by most kept
rubrics) or are an error when there is none. It implements ``PreferenceModel``, so it works in
``prefkit rm eval --model rubric:FILE`` and as ``online.judge=rubric:FILE``.

Rubric file (JSON, written atomically by ``prefkit rubrics``)::

    {"format": "prefkit.rubrics", "version": 1, "judge": "SPEC", "labels": ["A", "B"],
     "general": {"hard_rules": [...], "principles": [...]} | null,
     "rubrics": [{"prompt": ..., "hard_rules": [...], "principles": [...]}, ...],
     "stats": {"pairs", "kept", "rejected", "unparsed", "tries"}}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.data.records import PairRecord, Text
from prefkit.errors import InputError
from prefkit.llm.base import ChatRequest, Messages
from prefkit.preference.llm_judge import LLMJudge, as_text

FORMAT, VERSION = "prefkit.rubrics", 1


def prompt_key(prompt: Text) -> str:
    """What rubrics are looked up by: the prompt with its whitespace normalised."""
    return " ".join(as_text(prompt).split())

GENERATE_PROMPT = (
    "Write a grading rubric for answers to the instruction below, by contrasting a preferred answer "
    "with a rejected one.\n\nInstruction: {prompt}\n\nPreferred answer: {chosen}\n\nRejected answer: "
    "{rejected}\n\nThe rubric has hard rules (explicit requirements stated in the instruction) and "
    "principles (general qualities that make the preferred answer better). Answer with JSON only: "
    '{{"hard_rules": ["..."], "principles": ["..."]}}'
)

RUBRIC_TEMPLATE = (
    "Grade two responses to the instruction with this rubric.\n\n{rubric}\n\n"
    "Instruction: {prompt}\n\n"
    "Response {first_label}: {first}\n\n"
    "Response {second_label}: {second}\n\n"
    "Which response satisfies the rubric better? Answer with {first_label} or {second_label}.\nAnswer:"
)


@dataclass(frozen=True)
class Rubric:
    hard_rules: tuple[str, ...] = ()
    principles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.hard_rules or self.principles):
            raise ValueError("a rubric needs at least one hard rule or principle")

    def render(self) -> str:
        parts = []
        if self.hard_rules:
            parts.append("Hard rules:\n" + "\n".join(f"- {r}" for r in self.hard_rules))
        if self.principles:
            parts.append("Principles:\n" + "\n".join(f"- {p}" for p in self.principles))
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"hard_rules": list(self.hard_rules), "principles": list(self.principles)}

    @classmethod
    def from_json(cls, row: Any, where: str = "rubric") -> Rubric:
        if not isinstance(row, dict):
            raise ValueError(f"{where} must be an object with hard_rules and principles")
        lists = []
        for name in ("hard_rules", "principles"):
            value = row.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{where}.{name} must be a list of non-empty strings")
            lists.append(tuple(v.strip() for v in value))
        return cls(*lists)


def parse_rubric(text: str) -> Rubric | None:
    """A rubric from an LLM answer (a JSON object with ``hard_rules``/``principles``), else ``None``."""
    match = re.search(r"\{.*\}", text, flags=re.S)
    if not match:
        return None
    try:
        return Rubric.from_json(json.loads(match.group(0)))
    except ValueError:
        return None


class RubricJudge(LLMJudge):
    """A pairwise judge that grades with the rubric of each prompt (see the module doc)."""

    kind = "rubric"
    template_fields = ("rubric",)

    def __init__(self, backend: Any, rubrics: dict[str, Rubric] | None = None, *, general: Rubric | None = None,
                 template: str = RUBRIC_TEMPLATE, labels: tuple[str, str] | None = None, batch_size: int = 8,
                 name: str | None = None, spec: str | None = None) -> None:
        super().__init__(backend, template=template, labels=labels, batch_size=batch_size, name=name)
        self.rubrics = dict(rubrics or {})
        self.general = general
        self.spec = spec
        if not self.rubrics and general is None:
            raise ValueError("a rubric judge needs rubrics, a general rubric, or both")

    def rubric_for(self, prompt: Text) -> Rubric:
        rubric = self.rubrics.get(prompt_key(prompt), self.general)
        if rubric is None:
            raise ValueError(f"no rubric for the prompt {as_text(prompt)[:80]!r} and no general rubric; write "
                             "rubrics for these prompts (`prefkit rubrics`) or give a general one")
        return rubric

    def messages(self, prompt: Text, first: Text, second: Text) -> Messages:
        text = self.template.format(rubric=self.rubric_for(prompt).render(), prompt=as_text(prompt),
                                    first=as_text(first), second=as_text(second), first_label=self.labels[0],
                                    second_label=self.labels[1])
        return [{"role": "user", "content": text}]

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "auto", trust_remote_code: bool = False,
                  judge: str | None = None, **kwargs: Any) -> RubricJudge:
        """The judge a rubric file describes (its ``judge`` spec unless ``judge`` is given)."""
        data = read_rubric_file(path)
        spec = judge or data["judge"]
        if not spec:
            raise InputError("the rubric file names no judge (field 'judge'); give one", file=str(path), field="judge")
        from prefkit.llm.config import LLMConfig, make_backend

        backend = make_backend(spec, LLMConfig.from_env(device=device), trust_remote_code=trust_remote_code)
        if "labels" not in kwargs and data.get("labels"):
            kwargs["labels"] = tuple(data["labels"])
        return cls(backend, data["rubrics"], general=data["general"], name=f"rubric:{path}", spec=spec, **kwargs)


def read_rubric_file(path: str | Path) -> dict[str, Any]:
    """The contents of a rubric file, checked (``InputError`` naming the file and field)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read the rubric file: {err.strerror or err}", file=str(path)) from None
    except ValueError as err:
        raise InputError(f"not JSON: {err}", file=str(path)) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"not a prefkit rubric file (format must be {FORMAT!r})", file=str(path), field="format")
    if raw.get("version") != VERSION:
        raise InputError(f"unsupported rubric file version {raw.get('version')!r}", file=str(path), field="version")
    rubrics: dict[str, Rubric] = {}
    try:
        for i, row in enumerate(raw.get("rubrics") or []):
            if not isinstance(row, dict) or "prompt" not in row:
                raise ValueError(f"rubrics[{i}] needs a prompt")
            rubrics[prompt_key(row["prompt"])] = Rubric.from_json(row, f"rubrics[{i}]")
        general = Rubric.from_json(raw["general"], "general") if raw.get("general") else None
    except ValueError as err:
        raise InputError(str(err), file=str(path)) from None
    labels = raw.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != 2):
        raise InputError("labels must be a list of two strings", file=str(path), field="labels")
    return {"judge": raw.get("judge"), "labels": labels, "rubrics": rubrics, "general": general,
            "stats": raw.get("stats", {})}


@dataclass
class RubricSet:
    """Kept rubrics (one per pair that got a consistent one), the general rubric, and the counts."""

    rubrics: list[tuple[Text, Rubric]]
    general: Rubric | None
    stats: dict[str, int] = field(default_factory=dict)

    def to_json(self, *, judge: str | None, labels: Sequence[str] | None) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "judge": judge, "labels": list(labels) if labels else None,
                "general": self.general.to_json() if self.general else None,
                "rubrics": [{"prompt": p, **r.to_json()} for p, r in self.rubrics], "stats": self.stats}


def general_rubric(rubrics: Sequence[Rubric], *, size: int = 5, min_count: int = 2) -> Rubric | None:
    """The principles written in at least ``min_count`` kept rubrics (most frequent first, at most
    ``size``), as a rubric for prompts that have none; ``None`` when no principle recurs."""
    counts = Counter(p for r in rubrics for p in dict.fromkeys(r.principles))
    shared = [p for p, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_count][:size]
    return Rubric(principles=tuple(shared)) if shared else None


def generate_rubrics(pairs: Sequence[PairRecord], backend: Any, *, judge: LLMJudge | None = None, tries: int = 3,
                     temperature: float = 1.0, max_tokens: int = 384, seed: int = 0,
                     template: str = GENERATE_PROMPT) -> RubricSet:
    """Contrastive rubric generation with label-consistency rejection sampling (module doc).

    ``judge`` (default: an ``LLMJudge`` on ``backend``) checks each candidate: a rubric is
    consistent when the rubric judge's ``P(chosen beats rejected) > 1/2``. Ties are skipped.
    """
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    base = judge or LLMJudge(backend)
    decided = [p if p.label > 0.5 else PairRecord(p.prompt, p.rejected, p.chosen, 1 - p.label) for p in pairs
               if p.label != 0.5]
    if not decided:
        raise ValueError("no decided pairs (every pair is a tie): rubrics are written from a preference")
    kept: list[tuple[Text, Rubric]] = []
    pending = list(range(len(decided)))
    unparsed = rejected = 0
    for attempt in range(tries):
        if not pending:
            break
        requests = [ChatRequest(messages=({"role": "user", "content": template.format(
            prompt=as_text(decided[i].prompt), chosen=as_text(decided[i].chosen),
            rejected=as_text(decided[i].rejected))},), temperature=temperature, max_tokens=max_tokens,
            seed=seed + attempt) for i in pending]
        candidates = [parse_rubric(r.texts[0]) for r in backend.chat(requests)]
        unparsed += sum(c is None for c in candidates)
        still = []
        for i, rubric in zip(pending, candidates):
            if rubric is None:
                still.append(i)
                continue
            pair = decided[i]
            check = RubricJudge(base.backend, {prompt_key(pair.prompt): rubric}, labels=base.labels)
            if float(check.prob([pair.prompt], [pair.chosen], [pair.rejected])[0]) > 0.5:
                kept.append((pair.prompt, rubric))
            else:
                rejected += 1
                still.append(i)
        pending = still
    rubrics = [r for _, r in kept]
    stats = {"pairs": len(decided), "kept": len(kept), "without_rubric": len(pending), "rejected": rejected,
             "unparsed": unparsed, "tries": tries}
    return RubricSet(kept, general_rubric(rubrics), stats)
