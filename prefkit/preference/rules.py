"""Rule-based principles: text features that a principle can prefer more or less of.

Each :class:`RulePrinciple` is a sentence in ICAI's form ("Select the response that ...") bound
to a feature of a (prompt, response) and a direction, so it can be proposed and voted on with no
LLM (``prefkit.preference.icai``): a vote is *for* the response with the preferred feature value,
and *abstain* when both responses have the same value. The catalogue (:func:`catalogue`) covers
length, overlap with the prompt, formatting and lexical markers (questions, exclamations,
hedges, politeness, explanations, first person, numbers, an affirmation or greeting opener);
:func:`word_principle` adds "uses the word W" / "avoids the word W" for any word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from prefkit.data.records import Text

WORD = re.compile(r"[A-Za-z0-9']+")
STOP_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "with", "about", "is", "are", "was", "were", "be", "it", "this", "that", "me", "my", "i", "you", "your", "what", "how", "why", "when", "who", "which", "tell", "explain", "describe", "discuss", "please"]
)
MARKERS: dict[str, tuple[str, frozenset[str]]] = {
    "hedges": ("hedges (maybe, perhaps, might)", frozenset(["maybe", "perhaps", "might", "possibly", "probably", "seems", "likely", "unsure"])),
    "politeness": ("polite words (please, thanks, sorry)", frozenset(["please", "thank", "thanks", "sorry", "glad", "welcome", "kindly"])),
    "explanations": ("explanations (because, since, therefore)", frozenset(["because", "since", "therefore", "thus", "hence", "so", "why"])),
    "first_person": ("first-person words (I, me, my)", frozenset(["i", "me", "my", "mine", "we", "us", "our"])),
}
OPENERS = frozenset(["sure", "certainly", "okay", "ok", "yes", "hello", "hi", "hey", "indeed", "surely", "yeah", "absolutely", "great", "wow", "of"])


def as_text(value: Text) -> str:
    if isinstance(value, str):
        return value
    return "\n".join(m["content"] for m in value)


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


Feature = Callable[[str, str], float]
"""``feature(prompt, response) -> number``."""


@dataclass(frozen=True)
class RulePrinciple:
    """A principle with a rule: prefers the response with the higher (``more=True``) or lower
    value of ``feature``."""

    text: str
    name: str
    feature: Feature = field(compare=False, repr=False)
    more: bool = True

    def vote(self, prompt: Text, a: Text, b: Text) -> int:
        """+1 prefers ``a``, -1 prefers ``b``, 0 abstains (equal values)."""
        p, x, y = as_text(prompt), as_text(a), as_text(b)
        difference = self.feature(p, x) - self.feature(p, y)
        sign = (difference > 0) - (difference < 0)
        return sign if self.more else -sign


def _length(prompt: str, response: str) -> float:
    return len(response.split())


def _overlap(prompt: str, response: str) -> float:
    asked = {w for w in words(prompt) if w not in STOP_WORDS}
    return len(asked & set(words(response)))


def _formatting(prompt: str, response: str) -> float:
    lines = response.splitlines()
    listed = sum(bool(re.match(r"\s*([-*•]|\d+[.)])\s+", line)) for line in lines)
    return response.count("\n") + listed + response.count("**") + response.count("#") + response.count("`")


def _count(chars: str) -> Feature:
    return lambda prompt, response: float(response.count(chars))


def _marker(vocabulary: frozenset[str]) -> Feature:
    return lambda prompt, response: float(sum(w in vocabulary for w in words(response)))


def _digits(prompt: str, response: str) -> float:
    return float(len(re.findall(r"\d+", response)))


def _opener(prompt: str, response: str) -> float:
    first = words(response)[:1]
    return float(bool(first) and first[0] in OPENERS)


def _pair(name: str, more_text: str, less_text: str, feature: Feature) -> list[RulePrinciple]:
    return [RulePrinciple(more_text, f"{name}+", feature, True), RulePrinciple(less_text, f"{name}-", feature, False)]


def catalogue() -> list[RulePrinciple]:
    """Every built-in rule principle, each with its opposite."""
    rules = [
        *_pair("length", "Select the longer response.", "Select the shorter response.", _length),
        *_pair("prompt_overlap", "Select the response that repeats more words from the prompt.",
               "Select the response that repeats fewer words from the prompt.", _overlap),
        *_pair("formatting", "Select the response with more formatting (line breaks, lists, bold, headings).",
               "Select the response with less formatting.", _formatting),
        *_pair("questions", "Select the response that asks more questions.",
               "Select the response that asks fewer questions.", _count("?")),
        *_pair("exclamations", "Select the response with more exclamation marks.",
               "Select the response with fewer exclamation marks.", _count("!")),
        *_pair("numbers", "Select the response that gives more numbers.",
               "Select the response that gives fewer numbers.", _digits),
        *_pair("opener", "Select the response that opens with an affirmation or greeting (sure, certainly, hello).",
               "Select the response that does not open with an affirmation or greeting.", _opener),
    ]
    for name, (what, vocabulary) in MARKERS.items():
        rules += _pair(name, f"Select the response with more {what}.", f"Select the response with fewer {what}.",
                       _marker(vocabulary))
    return rules


def word_principle(word: str, *, uses: bool = True) -> RulePrinciple:
    """"Select the response that uses (avoids) the word 'W'."""
    w = word.lower()

    def feature(prompt: str, response: str) -> float:
        return float(w in words(response))

    verb = "uses" if uses else "avoids"
    return RulePrinciple(f"Select the response that {verb} the word '{w}'.", f"word:{w}{'+' if uses else '-'}",
                         feature, uses)
