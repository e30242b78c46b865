"""The base generator: a simple stochastic process with an exact log-probability.

It writes responses of mixed quality (what the SFT reference learns): an optional opener, then
a body of i.i.d. words from the five generated classes of ``lexicon``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prefkit.sim import lexicon as lx
from prefkit.sim import text


@dataclass(frozen=True)
class GeneratorConfig:
    """The base generator's parameters.

    A response is: with probability ``opener_prob`` an opener word (style drawn from
    ``style_probs``, then one of the style's three openers uniformly); then a body length drawn
    uniformly from ``[min_length, max_length]``; then each body word i.i.d.: a class from
    ``class_probs`` (on-topic, quality, filler, off-topic, bad) and a word uniformly within the
    class (off-topic: uniformly among the other topics' words).
    """

    opener_prob: float = 0.6
    style_probs: tuple[float, float, float] = (0.5, 0.3, 0.2)
    min_length: int = 3
    max_length: int = 11
    class_probs: tuple[float, float, float, float, float] = (0.30, 0.10, 0.20, 0.15, 0.25)

    def __post_init__(self) -> None:
        if not 0.0 <= self.opener_prob <= 1.0:
            raise ValueError(f"opener_prob must be in [0, 1], got {self.opener_prob}")
        for name in ("style_probs", "class_probs"):
            probs = np.asarray(getattr(self, name), dtype=float)
            expected = len(lx.STYLES) if name == "style_probs" else len(lx.GENERATED_CLASSES)
            if probs.shape != (expected,) or (probs < 0).any() or abs(probs.sum() - 1) > 1e-9:
                raise ValueError(f"{name} must be {expected} probabilities summing to 1, got {probs}")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"need 1 <= min_length <= max_length, got {self.min_length}, {self.max_length}"
            )

    def word_probs(self) -> np.ndarray:
        """Probability of one particular body word of each class (``lexicon.CLASS_NAMES``)."""
        n_topics, per_topic = text.TOPIC_WORD_IDS.shape
        return np.array([
            self.class_probs[0] / per_topic,
            self.class_probs[1] / len(lx.QUALITY_WORDS),
            self.class_probs[2] / len(lx.FILLER_WORDS),
            self.class_probs[3] / ((n_topics - 1) * per_topic),
            self.class_probs[4] / len(lx.BAD_WORDS),
            0.0,
        ])


def sample(config: GeneratorConfig, topics: np.ndarray, rng: np.random.Generator,
           style: str | None = None) -> list[str]:
    """One response per entry of ``topics``; ``style`` forces the opener (``"none"``: no opener)."""
    count = len(topics)
    n_topics, per_topic = text.TOPIC_WORD_IDS.shape
    has_opener = rng.random(count) < config.opener_prob
    styles = rng.choice(len(lx.STYLES), size=count, p=np.asarray(config.style_probs))
    if style is not None:
        has_opener[:] = style != "none"
        styles[:] = lx.STYLES.index(style) if style != "none" else 0
    opener = text.OPENER_IDS[styles, rng.integers(0, text.OPENER_IDS.shape[1], size=count)]
    length = rng.integers(config.min_length, config.max_length + 1, size=count)
    shape = (count, config.max_length)
    cls = rng.choice(len(lx.GENERATED_CLASSES), size=shape, p=np.asarray(config.class_probs))
    slot = rng.integers(0, per_topic, size=shape)
    other_topic = (topics[:, None] + rng.integers(1, n_topics, size=shape)) % n_topics
    quality, filler, bad = (text.CLASS_WORD_IDS[c] for c in (lx.QUALITY, lx.FILLER, lx.BAD))
    words = np.select(
        [cls == lx.ON_TOPIC, cls == lx.OFF_TOPIC, cls == lx.QUALITY, cls == lx.FILLER],
        [
            text.TOPIC_WORD_IDS[topics[:, None], slot],
            text.TOPIC_WORD_IDS[other_topic, slot],
            quality[rng.integers(0, len(quality), size=shape)],
            filler[rng.integers(0, len(filler), size=shape)],
        ],
        default=bad[rng.integers(0, len(bad), size=shape)],
    )
    texts = text.WORD_ARRAY[words]
    out: list[str] = []
    for i in range(count):
        body = " ".join(texts[i, : length[i]])
        out.append(f"{text.WORDS[opener[i]]} {body}" if has_opener[i] else body)
    return out


def logprob(config: GeneratorConfig, parsed: text.Parsed, topics: np.ndarray) -> np.ndarray:
    """Exact ``log p(y | x)`` of parsed responses (``-inf`` where the generator cannot write y)."""
    first, repeats = text.class_counts(parsed, topics)
    counts = first + repeats
    with np.errstate(divide="ignore", invalid="ignore"):
        log_word = np.log(config.word_probs())
        words_lp = np.where(counts > 0, counts * log_word, 0.0).sum(axis=1)
        has = parsed.style != lx.NO_STYLE
        style_p = np.asarray(config.style_probs)[np.minimum(parsed.style, len(lx.STYLES) - 1)]
        opener_lp = np.where(has, np.log(config.opener_prob * style_p / text.OPENER_IDS.shape[1]),
                             np.log(1.0 - config.opener_prob))
    in_range = (parsed.length >= config.min_length) & (parsed.length <= config.max_length)
    length_lp = np.where(in_range, -math.log(config.max_length - config.min_length + 1), -np.inf)
    return opener_lp + length_lp + words_lp
