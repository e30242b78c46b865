"""Chain of Hindsight data: preference pairs as feedback-conditioned sequences (Liu et al. 2023).

Chain of Hindsight (Liu, Sferrazza & Abbeel 2023, arXiv 2302.02676; official code
``lhao499/chain-of-hindsight``, ``coh/data/pack_hf.py``; algorithms.md §11a) turns a pair into
sequences in which each response follows a feedback phrase, and trains with next-token
cross-entropy **on the response fields only**. The four templates, with ``x`` the prompt, ``y+``
the chosen and ``y-`` the rejected response::

    p  : "User: {x} A helpful answer: {y+}"
    n  : "User: {x} An unhelpful answer: {y-}"
    np : "User: {x} An unhelpful answer: {y-} A helpful answer: {y+}"
    pn : "User: {x} A helpful answer: {y+} An unhelpful answer: {y-}"

and the same with other feedback phrase pairs (:data:`PHRASES`, after the code's DIALOGUE list).
At inference the model is conditioned on the positive phrase (:func:`hindsight_prompt`, or the
:class:`InferenceFormat` a trained policy carries in ``prefkit_inference.json``). Ties
(label 1/2) carry no hindsight and are skipped (counted). A sequence is a tuple of
:class:`Segment` s, each marked trainable or not, so the SFT step masks the loss exactly (the
engine's CoH step, ``prefkit.engine.offline.hindsight``, builds the loss mask from them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data.records import PairRecord, Source, Text

TEMPLATES = ("p", "n", "np", "pn")
PHRASES: tuple[tuple[str, str], ...] = (
    ("A helpful answer:", "An unhelpful answer:"),
    ("The following is a better response:", "The following is a worse response:"),
    ("A good answer:", "A bad answer:"),
    ("Generate a more helpful response:", "Generate a less helpful response:"),
)
"""(positive, negative) feedback phrases; the first pair is the paper's main one."""


@dataclass(frozen=True)
class Segment:
    text: str
    train: bool
    """Whether the next-token loss covers this segment (response fields only)."""


@dataclass(frozen=True)
class HindsightExample:
    """One CoH sequence: its segments (joined with single spaces) and the template that made it."""

    segments: tuple[Segment, ...]
    template: str
    phrase: int
    source: Source | None = field(default=None, compare=False)
    """The (file, line) of the pair it was built from."""

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _as_text(value: Text) -> str:
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


def hindsight_prompt(prompt: Text, phrase: int = 0) -> str:
    """The inference prompt: ``"User: {x} A helpful answer:"`` (the positive phrase)."""
    return f"User: {_as_text(prompt)} {PHRASES[phrase][0]}"


def hindsight_examples(pairs: Sequence[PairRecord], rng: np.random.Generator, *,
                       templates: Sequence[str] = TEMPLATES, phrases: Sequence[int] = (0,),
                       per_pair: int = 1) -> tuple[list[HindsightExample], int]:
    """``per_pair`` CoH sequences per decided pair (template and phrase pair drawn uniformly from
    ``templates`` and ``phrases``); returns ``(examples, skipped ties)``. A label below 1/2 swaps
    the roles of the two responses."""
    bad = [t for t in templates if t not in TEMPLATES]
    if bad or not templates:
        raise ValueError(f"templates must be among {TEMPLATES}, got {list(templates)}")
    if not phrases or any(not 0 <= i < len(PHRASES) for i in phrases):
        raise ValueError(f"phrases are indices into PHRASES (0..{len(PHRASES) - 1}), got {list(phrases)}")
    if per_pair < 1:
        raise ValueError(f"per_pair must be >= 1, got {per_pair}")
    out, ties = [], 0
    for pair in pairs:
        if pair.label == 0.5:
            ties += 1
            continue
        good, worse = (pair.chosen, pair.rejected) if pair.label > 0.5 else (pair.rejected, pair.chosen)
        user = Segment(f"User: {_as_text(pair.prompt)}", False)
        for _ in range(per_pair):
            template = templates[int(rng.integers(len(templates)))]
            k = phrases[int(rng.integers(len(phrases)))]
            positive, negative = PHRASES[k]
            parts = {"p": [(positive, good)], "n": [(negative, worse)], "np": [(negative, worse), (positive, good)],
                     "pn": [(positive, good), (negative, worse)]}[template]
            segments = [user]
            for phrase, response in parts:
                segments += [Segment(phrase, False), Segment(_as_text(response), True)]
            out.append(HindsightExample(tuple(segments), template, k, pair.source))
    return out, ties


INFERENCE_FILE = "prefkit_inference.json"
"""Written into a trained policy's directory when it must be prompted in a special way."""


def _phrase_pattern(phrase: str) -> str:
    """A regex for ``phrase`` that tolerates the spacing a tokenizer's decoder may add around
    punctuation (a word-level tokenizer decodes "answer:" as "answer :")."""
    parts = re.findall(r"\w+|[^\w\s]+", phrase)
    out = ""
    for i, part in enumerate(parts):
        if i:
            out += r"\s*" if not part[0].isalnum() or not parts[i - 1][-1].isalnum() else r"\s+"
        out += re.escape(part)
    return r"(?<!\w)" + out


@dataclass(frozen=True)
class InferenceFormat:
    """How a policy is prompted and where its answer stops: Chain of Hindsight conditions on the
    positive phrase (``template`` is ``"User: {prompt} A helpful answer:"``) and cuts a sample at the
    first feedback phrase it goes on to write (``stops``; the "pn" template teaches the model to
    continue with a negative answer after the positive one)."""

    template: str
    stops: tuple[str, ...] = ()
    method: str = "coh"

    def apply(self, prompt: Text) -> str:
        return self.template.format(prompt=_as_text(prompt))

    def cut(self, text: str) -> str:
        """``text`` up to the first stop phrase (whitespace-tolerant), stripped."""
        end = len(text)
        for stop in self.stops:
            match = re.search(_phrase_pattern(stop), text)
            if match is not None:
                end = min(end, match.start())
        return text[:end].strip()

    def to_json(self) -> dict[str, Any]:
        return {"format": "prefkit.inference", "version": 1, "method": self.method, "prompt_template": self.template,
                "stops": list(self.stops)}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, where: str = "inference format") -> InferenceFormat:
        if data.get("format") != "prefkit.inference" or data.get("version") != 1:
            raise ValueError(f"{where}: not a prefkit inference format (version 1)")
        template, stops = data.get("prompt_template"), data.get("stops", [])
        if not isinstance(template, str) or "{prompt}" not in template:
            raise ValueError(f"{where}: prompt_template must be a string with {{prompt}}")
        if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops):
            raise ValueError(f"{where}: stops must be a list of non-empty strings")
        return cls(template, tuple(stops), str(data.get("method", "")))


def hindsight_format(phrase: int = 0, phrases: Sequence[int] = (0,)) -> InferenceFormat:
    """CoH's inference format: the positive phrase of pair ``phrase``; every phrase of the pairs
    trained with is a stop."""
    stops = tuple(dict.fromkeys(x for k in phrases for x in PHRASES[k]))
    return InferenceFormat("User: {prompt} " + PHRASES[phrase][0], stops, "coh")


def read_inference_format(directory: str | os.PathLike[str]) -> InferenceFormat | None:
    """The inference format saved beside a policy (``None`` when it has none)."""
    path = Path(directory) / INFERENCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the inference format: {err}") from None
    return InferenceFormat.from_json(data, where=str(path))
