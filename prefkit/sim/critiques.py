"""Language feedback from a world: templated critiques, an imperfect refiner, and a selector.

A critique names what is wrong with a response in terms of the world's features (docs/worlds.md):

=================  =====================================================================
issue              when                                                       (words named)
=================  =====================================================================
``off_topic``      body words of another topic                                 those words
``bad``            rude or wrong words                                         those words
``unknown``        words outside the response lexicon (prompt words, ...)      those words
``repeats``        a body word used more than once                             the repeats
``missing_topic``  fewer than half of the body words are on topic              up to 3 topic words it could use
``too_long``       ``len - L*(x) >= 2``                                        (length, L*)
``too_short``      ``L*(x) - len >= 2``                                        (length, L*)
=================  =====================================================================

Each issue is reported with probability ``recall`` (an annotator that notices only some of
them); a response with no issue gets :data:`NO_ISSUES` (never an empty critique). The text is one
templated sentence per issue, e.g. ``"It drifts off topic with galaxy, oven. It is too long: 11
words where about 4 are wanted."``.

:func:`refine` applies a critique imperfectly (ILF's refinement step, Scheurer et al. 2023, arXiv
2303.16755; algorithms.md §11b): each issue is fixed with probability ``skill`` (named words
removed, suggested topic words added, the length moved to the target), and with probability
``slip`` a random off-topic word is inserted (a refiner's own mistake). :func:`incorporation` is
the world's ground truth for ILF's selection ("does this refinement incorporate the feedback?"):
the fraction of the critique's issues that are gone from the refinement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prefkit.sim import lexicon as lx
from prefkit.sim import text

ISSUE_KINDS = ("off_topic", "bad", "unknown", "repeats", "missing_topic", "too_long", "too_short")
NO_ISSUES = "No changes needed: it is on topic, clean and of the right length."
LENGTH_SLACK = 2
"""A body this many words away from the preferred length is too long or too short."""


@dataclass(frozen=True)
class Issue:
    """One thing wrong with a response: its kind, the words it concerns, and lengths for verbosity."""

    kind: str
    words: tuple[str, ...] = ()
    length: int | None = None
    target: int | None = None

    def sentence(self) -> str:
        listed = ", ".join(self.words)
        return {
            "off_topic": f"It drifts off topic with {listed}.",
            "bad": f"It uses rude or wrong words: {listed}.",
            "unknown": f"It uses words that do not belong in the answer: {listed}.",
            "repeats": f"It repeats {listed}.",
            "missing_topic": f"It should say more about the topic, for example {listed}.",
            "too_long": f"It is too long: {self.length} words where about {self.target} are wanted.",
            "too_short": f"It is too short: {self.length} words where about {self.target} are wanted.",
        }[self.kind]


@dataclass(frozen=True)
class Critique:
    """A critique: its text and the issues it names (empty: :data:`NO_ISSUES`)."""

    text: str
    issues: tuple[Issue, ...]

    @property
    def kinds(self) -> list[str]:
        return [i.kind for i in self.issues]


def _split(response: str) -> tuple[str | None, list[str]]:
    words = response.split()
    body = text.body_words(response)
    opener = words[0] if len(words) > len(body) else None
    return opener, body


def find_issues(world, prompt: str, response: str) -> list[Issue]:
    """Every issue of ``response`` (all of them, in :data:`ISSUE_KINDS` order)."""
    topic, target = world.prompt_info(prompt)
    _, body = _split(response)
    topic_words = set(lx.TOPICS[topic].words) if topic >= 0 else set()
    classes = []
    for w in body:
        if w in topic_words:
            classes.append("on_topic")
        elif text.WORD_TOPIC[text.WORD_ID.get(w, text.V)] >= 0:
            classes.append("off_topic")
        else:
            cls = int(text.BODY_CLASS[text.WORD_ID.get(w, text.V)])
            classes.append({lx.QUALITY: "quality", lx.FILLER: "filler", lx.BAD: "bad"}.get(cls, "unknown"))
    issues: list[Issue] = []
    for kind in ("off_topic", "bad", "unknown"):
        words = tuple(dict.fromkeys(w for w, c in zip(body, classes) if c == kind))
        if words:
            issues.append(Issue(kind, words))
    seen: set[str] = set()
    repeats = []
    for w in body:
        if w in seen and w not in repeats:
            repeats.append(w)
        seen.add(w)
    if repeats:
        issues.append(Issue("repeats", tuple(repeats)))
    on_topic = sum(c == "on_topic" for c in classes)
    if topic >= 0 and on_topic * 2 < max(len(body), 1):
        unused = [w for w in lx.TOPICS[topic].words if w not in body]
        issues.append(Issue("missing_topic", tuple(unused[:3])))
    if len(body) - target >= LENGTH_SLACK:
        issues.append(Issue("too_long", length=len(body), target=target))
    elif target - len(body) >= LENGTH_SLACK:
        issues.append(Issue("too_short", length=len(body), target=target))
    return issues


def critique(world, prompt: str, response: str, rng: np.random.Generator | None = None, *,
             recall: float = 1.0) -> Critique:
    """The templated critique of one response (each issue kept with probability ``recall``)."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    issues = find_issues(world, prompt, response)
    if recall < 1.0:
        if rng is None:
            raise ValueError("recall < 1 draws which issues are noticed: pass rng")
        issues = [i for i in issues if rng.random() < recall]
    if not issues:
        return Critique(NO_ISSUES, ())
    return Critique(" ".join(i.sentence() for i in issues), tuple(issues))


def critiques(world, prompts: Sequence[str], responses: Sequence[str], rng: np.random.Generator, *,
              recall: float = 1.0) -> list[Critique]:
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have equal length, got {len(prompts)} and {len(responses)}")
    return [critique(world, p, y, rng, recall=recall) for p, y in zip(prompts, responses)]


def critique_rows(world, n: int, rng: np.random.Generator, *, split: str = "train", recall: float = 1.0,
                  annotator: str = "critic") -> list[dict[str, object]]:
    """``n`` rows ``{"prompt", "completion", "critique", "issues", "annotator"}`` on base responses
    (``prefkit.data.critiques.read_critiques`` reads them)."""
    prompts = world.prompts(split, n, rng=rng)
    responses = [r[0] for r in world.base_responses(prompts, 1, rng)]
    out = []
    for p, y, c in zip(prompts, responses, critiques(world, prompts, responses, rng, recall=recall)):
        out.append({"prompt": p, "completion": y, "critique": c.text, "issues": c.kinds, "annotator": annotator})
    return out


def refine(world, prompt: str, response: str, feedback: Critique, rng: np.random.Generator, *,
           skill: float = 0.8, slip: float = 0.1) -> str:
    """Apply ``feedback`` to ``response`` imperfectly (see the module doc)."""
    if not (0.0 <= skill <= 1.0 and 0.0 <= slip <= 1.0):
        raise ValueError(f"skill and slip must be in [0, 1], got {skill}, {slip}")
    topic, _ = world.prompt_info(prompt)
    opener, body = _split(response)
    fixes = [i for i in feedback.issues if rng.random() < skill]
    for issue in fixes:
        if issue.kind in ("off_topic", "bad", "unknown"):
            body = [w for w in body if w not in issue.words]
        elif issue.kind == "repeats":
            body = list(dict.fromkeys(body))
        elif issue.kind == "missing_topic":
            body = body + [w for w in issue.words if w not in body]
    for issue in fixes:
        if issue.kind == "too_long" and issue.target is not None:
            while len(body) > issue.target:
                fillers = [k for k, w in enumerate(body) if w in lx.FILLER_WORDS]
                body.pop(fillers[-1] if fillers else int(rng.integers(len(body))))
        elif issue.kind == "too_short" and issue.target is not None:
            pool = [w for w in (lx.TOPICS[topic].words if topic >= 0 else ()) + lx.QUALITY_WORDS if w not in body]
            while len(body) < issue.target and pool:
                body.append(pool.pop(int(rng.integers(len(pool)))))
    if rng.random() < slip:
        others = [w for t, tp in enumerate(lx.TOPICS) if t != topic for w in tp.words]
        body.insert(int(rng.integers(len(body) + 1)), others[int(rng.integers(len(others)))])
    return " ".join([opener, *body] if opener else body)


def incorporation(world, prompt: str, refinement: str, feedback: Critique) -> float:
    """Fraction of ``feedback``'s issues absent from ``refinement`` (1.0 for a critique without
    issues when the refinement has none either, else 0.0)."""
    now = find_issues(world, prompt, refinement)
    if not feedback.issues:
        return 1.0 if not now else 0.0
    remaining = {i.kind: set(i.words) for i in now}
    fixed = 0
    for issue in feedback.issues:
        if issue.kind not in remaining or (issue.words and issue.kind != "missing_topic" and not set(issue.words) & remaining[issue.kind]):
            fixed += 1
    return fixed / len(feedback.issues)
