"""Feedback records: the unit every reader produces and every trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
"""A chat message ``{"role": ..., "content": ...}``."""
Text = str | list[Message]
"""Plain text, or a conversation as a list of messages (TRL's conversational format)."""
Source = tuple[str, int]
"""Where a record came from: (file, 1-based line or row number)."""


@dataclass(frozen=True)
class PairRecord:
    """One pairwise comparison in TRL's ``prompt``/``chosen``/``rejected`` format.

    ``label`` is the probability that ``chosen`` beats ``rejected`` (1.0 for a hard label,
    0.5 for a tie, anything in between for a soft label). ``margin`` is an optional preference
    strength, ``weight`` an optional per-example weight, ``annotator`` who labelled it.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    label: float = 1.0
    margin: float | None = None
    weight: float | None = None
    annotator: str | None = None
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.label != 1.0:
            row["label"] = self.label
        for name in ("margin", "weight", "annotator"):
            if getattr(self, name) is not None:
                row[name] = getattr(self, name)
        return row


@dataclass(frozen=True)
class PromptRecord:
    """A prompt alone (TRL's prompt-only format), for online training: sample, judge, update."""

    prompt: Text
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt}


@dataclass(frozen=True)
class ListRecord:
    """A prompt with K responses and a score each (higher is better), for listwise losses."""

    prompt: Text
    responses: list[Text]
    scores: list[float]
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "responses": self.responses, "scores": self.scores}


@dataclass(frozen=True)
class UnpairedRecord:
    """One response with a thumbs-up or thumbs-down: TRL's unpaired preference format
    (``prompt``, ``completion``, ``label``), as KTO, unpaired BCO and APO-zero (unpaired) use.

    ``label`` is True when the completion is desirable; ``weight`` an optional per-example
    weight, ``annotator`` who labelled it.
    """

    prompt: Text
    completion: Text
    label: bool
    weight: float | None = None
    annotator: str | None = None
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "completion": self.completion, "label": self.label}
        for name in ("weight", "annotator"):
            if getattr(self, name) is not None:
                row[name] = getattr(self, name)
        return row
