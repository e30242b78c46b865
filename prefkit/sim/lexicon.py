"""The words of the built-in worlds: prompt templates, topics, response word classes, styles.

Every world shares this lexicon (about 150 lowercase words, no punctuation), so a word-level
tokenizer fitted on :func:`vocabulary` covers every prompt and every base response.

- A prompt is ``TEMPLATE SUBJECT [MODIFIER]``, e.g. ``"tell me about reefs briefly"``: the subject
  names one of eight topics, the modifier (none, ``briefly``, ``thoroughly``) sets the preferred
  response length.
- A response is an optional opener word (its *style*: formal, casual or playful) followed by a
  body of words from five classes: words of the prompt's topic (good), generic quality words
  (good), filler (neutral), words of another topic (slightly bad) and rude or wrong words (bad).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    subjects: tuple[str, ...]
    """Words a prompt uses to ask about the topic."""
    words: tuple[str, ...]
    """Words a good response on the topic uses."""


TOPICS: tuple[Topic, ...] = (
    Topic("ocean", ("ocean", "sea", "beaches", "reefs"),
          ("water", "salt", "waves", "fish", "coral", "tide", "shore", "deep")),
    Topic("space", ("space", "stars", "planets", "moon"),
          ("orbit", "rocket", "galaxy", "gravity", "comet", "astronaut", "telescope", "sun")),
    Topic("cooking", ("cooking", "baking", "recipes", "kitchens"),
          ("flour", "oven", "spice", "butter", "taste", "bread", "boil", "sugar")),
    Topic("music", ("music", "songs", "guitars", "concerts"),
          ("melody", "rhythm", "chord", "drum", "tune", "singer", "piano", "beat")),
    Topic("forest", ("forests", "trees", "woods", "jungles"),
          ("leaf", "moss", "oak", "branch", "roots", "bark", "pine", "deer")),
    Topic("city", ("cities", "streets", "towns", "buildings"),
          ("traffic", "tower", "bridge", "subway", "market", "crowd", "park", "lights")),
    Topic("sport", ("sport", "football", "running", "tennis"),
          ("team", "goal", "ball", "coach", "score", "race", "match", "training")),
    Topic("weather", ("weather", "rain", "storms", "winter"),
          ("cloud", "wind", "snow", "thunder", "sunny", "cold", "forecast", "humid")),
)

TEMPLATES: tuple[str, ...] = ("explain {}", "describe {}", "tell me about {}", "what about {}", "discuss {}")
"""Prompt templates; ``{}`` is the subject word."""

MODIFIERS: dict[str, int] = {"": 7, "briefly": 4, "thoroughly": 10}
"""Prompt modifier -> preferred body length in words (no modifier: 7)."""

QUALITY_WORDS: tuple[str, ...] = (
    "clear", "accurate", "helpful", "detailed", "because",
    "example", "specifically", "useful", "important", "precise",
)
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "and", "is", "it", "of", "to", "with", "this", "that", "very", "really",
)
BAD_WORDS: tuple[str, ...] = (
    "stupid", "wrong", "boring", "whatever", "nonsense", "dunno", "ugh", "lazy", "useless", "hate",
)

STYLES: tuple[str, ...] = ("formal", "casual", "playful")
"""Response styles, in the order of the cyclic matrix: formal beats casual beats playful beats
formal. A response whose first word is not an opener has no style (index ``len(STYLES)``)."""
NO_STYLE = len(STYLES)
OPENERS: dict[str, tuple[str, ...]] = {
    "formal": ("certainly", "indeed", "surely"),
    "casual": ("sure", "okay", "yeah"),
    "playful": ("imagine", "wow", "behold"),
}

# Word classes of a response body, relative to the prompt's topic.
ON_TOPIC, QUALITY, FILLER, OFF_TOPIC, BAD, OTHER = range(6)
CLASS_NAMES: tuple[str, ...] = ("on_topic", "quality", "filler", "off_topic", "bad", "other")
GENERATED_CLASSES = (ON_TOPIC, QUALITY, FILLER, OFF_TOPIC, BAD)
"""The classes the base generator draws from (``other`` covers every word it never writes)."""


def prompt_words() -> list[str]:
    words: list[str] = []
    for template in TEMPLATES:
        words += template.replace("{}", " ").split()
    for topic in TOPICS:
        words += topic.subjects
    words += [m for m in MODIFIERS if m]
    return list(dict.fromkeys(words))


def response_words() -> list[str]:
    words: list[str] = [w for family in OPENERS.values() for w in family]
    for topic in TOPICS:
        words += topic.words
    words += QUALITY_WORDS + FILLER_WORDS + BAD_WORDS
    return list(dict.fromkeys(words))


def vocabulary() -> list[str]:
    """Every word a world prompt or base response can contain, sorted."""
    return sorted(set(prompt_words()) | set(response_words()))


def check_lexicon() -> None:
    """Raise ``AssertionError`` if two word lists overlap (a word must have exactly one role)."""
    groups: dict[str, list[str]] = {
        "prompt": prompt_words(),
        "openers": [w for family in OPENERS.values() for w in family],
        "quality": list(QUALITY_WORDS),
        "filler": list(FILLER_WORDS),
        "bad": list(BAD_WORDS),
    }
    for topic in TOPICS:
        groups[f"topic:{topic.name}"] = list(topic.words)
    seen: dict[str, str] = {}
    for group, words in groups.items():
        for word in words:
            assert word == word.lower() and word.isalpha(), f"{word!r} is not a lowercase word"
            assert word not in seen, f"{word!r} is in both {seen[word]} and {group}"
            seen[word] = group
