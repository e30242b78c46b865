"""Simulated annotators: noisy, biased views of a world's true preference (AlpacaFarm style).

AlpacaFarm (Dubois et al. 2023, arXiv 2305.14387, section 3.2) trains on labels from a pool of
simulated annotators, each a different prompt/model, and flips every training label with
probability 0.25 to match the variability of human annotators; evaluation uses the pool without
noise. Here an annotator ``k`` judges a pair with its own preference

    P_k(a > b | x) = sigmoid(sharpness_k * (u_k(x, a) - u_k(x, b) + c * S(style(a), style(b)))
                             + length_bias_k * (len(a) - len(b)))

where ``u_k`` is the world's utility with the word-class values multiplied by the annotator's
``class_weights``, ``c * S`` the world's cyclic term and ``len`` the body length in words. Its
label is a Bernoulli draw from ``P_k`` that is then flipped with probability ``flip_k``. With
``class_weights = 1``, ``sharpness = 1`` and no bias or flip, ``P_k`` is exactly the world's P*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefkit.sim.lexicon import CLASS_NAMES


@dataclass(frozen=True)
class Annotator:
    """One simulated annotator (see the module docstring for its preference)."""

    name: str
    flip: float = 0.0
    """Probability that a label is flipped after it is drawn (AlpacaFarm's training pool: 0.25)."""
    length_bias: float = 0.0
    """Logits added in favour of ``a`` per body word by which ``a`` is longer than ``b``."""
    class_weights: tuple[float, ...] = (1.0,) * len(CLASS_NAMES)
    """Multiplies the world's value of each word class (order of ``lexicon.CLASS_NAMES``)."""
    sharpness: float = 1.0
    """Multiplies the preference logit: below 1 the annotator is less decisive than P*."""
    weight: float = 1.0
    """Relative share of the pool's labels this annotator writes."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip <= 0.5:
            raise ValueError(f"annotator {self.name!r}: flip must be in [0, 0.5], got {self.flip}")
        if len(self.class_weights) != len(CLASS_NAMES):
            raise ValueError(
                f"annotator {self.name!r}: class_weights needs {len(CLASS_NAMES)} values "
                f"({', '.join(CLASS_NAMES)}), got {len(self.class_weights)}"
            )
        if self.sharpness < 0 or self.weight <= 0:
            raise ValueError(f"annotator {self.name!r}: sharpness must be >= 0 and weight > 0")


_AF_FLIP = 0.25

POOLS: dict[str, tuple[Annotator, ...]] = {
    # Labels drawn from P* itself: the noise is only the preference's own randomness.
    "clean": (Annotator("truth"),),
    # AlpacaFarm's training pool in miniature: four annotators that weigh the word classes
    # differently, mildly prefer longer answers (AlpacaFarm's and AlpacaEval's judges do), and
    # flip every label with probability 0.25.
    "alpacafarm": (
        Annotator("af_balanced", flip=_AF_FLIP, length_bias=0.05),
        Annotator("af_topical", flip=_AF_FLIP, length_bias=0.1,
                  class_weights=(1.3, 0.7, 1.0, 1.0, 1.0, 1.0)),
        Annotator("af_stylist", flip=_AF_FLIP, length_bias=0.1,
                  class_weights=(0.8, 1.4, 1.0, 0.6, 1.0, 1.0)),
        Annotator("af_lenient", flip=_AF_FLIP, length_bias=0.15, sharpness=0.7,
                  class_weights=(1.0, 1.0, 1.0, 1.0, 0.6, 1.0)),
    ),
    # The same pool with a strong length bias: half a logit per extra word on average, enough
    # to make a typical 3-word length difference outweigh a real quality difference.
    "length_biased": (
        Annotator("lb_balanced", flip=_AF_FLIP, length_bias=0.3),
        Annotator("lb_topical", flip=_AF_FLIP, length_bias=0.5,
                  class_weights=(1.3, 0.7, 1.0, 1.0, 1.0, 1.0)),
        Annotator("lb_stylist", flip=_AF_FLIP, length_bias=0.5,
                  class_weights=(0.8, 1.4, 1.0, 0.6, 1.0, 1.0)),
        Annotator("lb_lenient", flip=_AF_FLIP, length_bias=0.7, sharpness=0.7,
                  class_weights=(1.0, 1.0, 1.0, 1.0, 0.6, 1.0)),
    ),
}


def resolve_pool(annotators: str | Sequence[Annotator]) -> tuple[Annotator, ...]:
    """A pool preset name (``clean``, ``alpacafarm``, ``length_biased``) or annotators."""
    if isinstance(annotators, str):
        if annotators not in POOLS:
            raise ValueError(
                f"unknown annotator pool {annotators!r}; choose one of {', '.join(POOLS)}"
            )
        return POOLS[annotators]
    pool = tuple(annotators)
    if not pool or not all(isinstance(a, Annotator) for a in pool):
        raise ValueError("annotators must be a pool name or a non-empty sequence of Annotator")
    names = [a.name for a in pool]
    if len(set(names)) != len(names):
        raise ValueError(f"annotator names must be unique, got {names}")
    return pool
