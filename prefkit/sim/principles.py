"""Annotator pools with planted principles: pairwise labels whose causes are known exactly.

Inverse Constitutional AI (Findeis et al. 2024, arXiv 2406.06560; algorithms.md §16) looks for a
short list of principles that explains a dataset's labels. To check that it finds the right ones,
this pool plants them: each vote is cast by principle ``i`` with probability ``share_i`` (the rule
picks the response it prefers; when the rule cannot decide, the vote falls back to P*), and by the
world's true preference otherwise (a Bernoulli draw from P*, as the ``clean`` pool).

Planted rules (:data:`PLANTED_RULES`):

- ``longer`` — "prefers the longer answer": more whitespace-separated words;
- ``shorter`` — "prefers the shorter answer";
- ``subject`` — "prefers answers that mention the prompt's subject word" (e.g. ``reefs`` for
  "describe reefs briefly"). The base generator never writes prompt words, so the pairs of this
  pool get the subject word with probability ``subject_rate`` per response, in place of a random
  body word that is not on topic (the length is unchanged, so ``subject`` and ``longer`` are
  independent; replacing a mostly low-value word keeps the utility change small);
- ``opener`` — "prefers answers that open with a greeting word" (any style's opener).

Why the shares are recoverable: on the pairs where rule ``i`` decides, its votes agree with it
always and the other votes agree half the time when they are independent of the rule, so
``(for - against) / (for + against) = share_i`` — ICAI's net support among relevant pairs. Length
is nearly independent of P* in the built-in worlds; the subject word costs a little utility (a
word of class ``other``, value -1, replaces a word worth -0.73 on average), so P*'s votes lean
slightly against it and its measured support is a little below its share
(benchmarks/RESULTS.md has the numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prefkit.data.records import PairRecord
from prefkit.sim import lexicon as lx
from prefkit.sim import text

Rule = Callable[[str, str, str], int]
"""``rule(prompt, a, b)``: +1 prefers a, -1 prefers b, 0 cannot decide."""


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def _subject(prompt: str) -> str | None:
    return next((w for w in prompt.split() if w in text.SUBJECT_TOPIC), None)


def _mentions(prompt: str, response: str) -> int:
    subject = _subject(prompt)
    return int(subject is not None and subject in response.split())


def _opens(response: str) -> int:
    words = response.split()
    return int(bool(words) and text.OPENER_STYLE[text.WORD_ID.get(words[0], text.V)] != lx.NO_STYLE)


PLANTED_RULES: dict[str, tuple[str, Rule]] = {
    "longer": ("prefers the longer answer", lambda p, a, b: _sign(len(a.split()) - len(b.split()))),
    "shorter": ("prefers the shorter answer", lambda p, a, b: _sign(len(b.split()) - len(a.split()))),
    "subject": ("prefers answers that mention the prompt's subject word",
                lambda p, a, b: _sign(_mentions(p, a) - _mentions(p, b))),
    "opener": ("prefers answers that open with a greeting word", lambda p, a, b: _sign(_opens(a) - _opens(b))),
}

DEFAULT_PLANTED: tuple[tuple[str, float], ...] = (("longer", 0.4), ("subject", 0.3))
"""The default pool: 40% of votes prefer the longer answer, 30% the one naming the subject,
30% follow P*."""


@dataclass(frozen=True)
class PlantedPrinciple:
    name: str
    description: str
    share: float


def resolve_planted(principles: Sequence[tuple[str, float]] | str) -> tuple[PlantedPrinciple, ...]:
    """``[("longer", 0.4), ...]`` or ``"longer:0.4,subject:0.3"`` (``"default"``: the default pool)."""
    if isinstance(principles, str):
        if principles == "default":
            principles = DEFAULT_PLANTED
        else:
            parsed = []
            for part in principles.split(","):
                name, _, share = part.partition(":")
                try:
                    parsed.append((name.strip(), float(share)))
                except ValueError:
                    raise ValueError(f"planted principles are NAME:SHARE,... (e.g. longer:0.4,subject:0.3), "
                                     f"got {part!r}") from None
            principles = parsed
    out = []
    for name, share in principles:
        if name not in PLANTED_RULES:
            raise ValueError(f"unknown planted principle {name!r}; known: {', '.join(PLANTED_RULES)}")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"planted principle {name!r}: share must be in (0, 1], got {share}")
        out.append(PlantedPrinciple(name, PLANTED_RULES[name][0], float(share)))
    if len({p.name for p in out}) != len(out):
        raise ValueError("each planted principle may appear once")
    if sum(p.share for p in out) > 1.0 + 1e-9:
        raise ValueError(f"planted shares sum to {sum(p.share for p in out):g} > 1")
    return tuple(out)


def with_subject(world, prompts: Sequence[str], responses: Sequence[str], rng: np.random.Generator,
                 rate: float) -> list[str]:
    """Each response gets the prompt's subject word with probability ``rate``, replacing a random
    body word (the opener, if any, is kept; the length is unchanged)."""
    out = []
    for prompt, response in zip(prompts, responses):
        subject = _subject(prompt)
        topic, _ = world.prompt_info(prompt)
        on_topic = set(lx.TOPICS[topic].words) if topic >= 0 else set()
        words = response.split()
        body_start = len(words) - len(text.body_words(response))
        if subject is not None and len(words) > body_start and rng.random() < rate:
            slots = [k for k in range(body_start, len(words)) if words[k] not in on_topic] or \
                list(range(body_start, len(words)))
            words[slots[int(rng.integers(len(slots)))]] = subject
        out.append(" ".join(words))
    return out


def planted_pairs(world, n: int, rng: np.random.Generator, *,
                  principles: Sequence[tuple[str, float]] | str = DEFAULT_PLANTED, subject_rate: float = 0.5,
                  split: str = "train") -> list[PairRecord]:
    """``n`` labelled pairs from the planted pool; ``annotator`` names who cast each vote (a
    principle's name, or ``truth``)."""
    planted = resolve_planted(principles)
    if not 0.0 <= subject_rate <= 1.0:
        raise ValueError(f"subject_rate must be in [0, 1], got {subject_rate}")
    prompts = world.prompts(split, n, rng=rng)
    drawn = world.base_responses(prompts, 2, rng)
    a = with_subject(world, prompts, [d[0] for d in drawn], rng, subject_rate)
    b = with_subject(world, prompts, [d[1] for d in drawn], rng, subject_rate)
    for i in range(n):  # identical pairs carry no preference
        while a[i] == b[i]:
            b[i] = with_subject(world, [prompts[i]], world.base_responses([prompts[i]], 1, rng)[0], rng,
                                subject_rate)[0]
    shares = np.array([p.share for p in planted] + [1.0 - sum(p.share for p in planted)])
    who = rng.choice(len(shares), size=n, p=shares / shares.sum())
    truth = rng.random(n) < world.true_preference(prompts, a, b)
    records = []
    for i in range(n):
        label = bool(truth[i])
        if who[i] < len(planted):
            vote = PLANTED_RULES[planted[who[i]].name][1](prompts[i], a[i], b[i])
            if vote:
                label = vote > 0
        name = planted[who[i]].name if who[i] < len(planted) else "truth"
        chosen, rejected = (a[i], b[i]) if label else (b[i], a[i])
        records.append(PairRecord(prompt=prompts[i], chosen=chosen, rejected=rejected, annotator=name))
    return records
