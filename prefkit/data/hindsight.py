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
At inference the model is conditioned on the positive phrase (:func:`hindsight_prompt`). Ties
(label 1/2) carry no hindsight and are skipped (counted). A sequence is a tuple of
:class:`Segment` s, each marked trainable or not, so the SFT step masks the loss exactly (the
engine's CoH step, issue 12 part 2, consumes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prefkit.data.records import PairRecord, Text

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
            out.append(HindsightExample(tuple(segments), template, k))
    return out, ties
