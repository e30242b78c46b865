"""The preference interface: anything that answers P(a beats b | x) for a batch.

A Bradley-Terry reward model, a general preference embedding model (GPM), a pairwise classifier,
an LLM judge and a simulated world's annotators or ground truth are all preference models.
Nash-style methods consume this interface, never a scalar reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from prefkit.data.records import Text


@runtime_checkable
class PreferenceModel(Protocol):
    """``prob(prompts, a, b)[i] = P(a[i] beats b[i] | prompts[i])``, a float tensor ``[N]`` in [0, 1].

    ``P(a, b) + P(b, a) = 1`` should hold; :func:`symmetrised` enforces it for models that do
    not guarantee it (a pairwise classifier that sees positions).
    """

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor: ...


@runtime_checkable
class ScoringPreferenceModel(PreferenceModel, Protocol):
    """A preference model with a per-response representation, so K responses cost K forwards.

    ``embed(prompts, responses)`` is ``[N, D]`` (D = 1 for a scalar reward) and
    ``prob_from_embeddings(e_a, e_b)`` turns two embeddings into ``P(a beats b)``.
    """

    def embed(self, prompts: Sequence[Text], responses: Sequence[Text]) -> torch.Tensor: ...

    def prob_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor: ...


TIE = 0.5
"""The label of a tie: P(chosen beats rejected) = 1/2."""


class JudgeError(ValueError):
    """A judge returned something that is not a probability."""


def checked_probabilities(p: torch.Tensor | np.ndarray | Sequence[float], n: int, *, judge: str) -> torch.Tensor:
    """Validate a judge's answer: ``n`` finite numbers in [0, 1]; a clear error otherwise."""
    t = torch.as_tensor(np.asarray(p, dtype=np.float64) if not torch.is_tensor(p) else p).detach().float().cpu()
    if t.shape != (n,):
        raise JudgeError(f"judge {judge!r} returned shape {tuple(t.shape)}, expected ({n},)")
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise JudgeError(f"judge {judge!r} returned {int(bad.sum())} non-finite values (first at row {int(bad.nonzero()[0])})")
    out = (t < 0) | (t > 1)
    if bool(out.any()):
        i = int(out.nonzero()[0])
        raise JudgeError(f"judge {judge!r} returned {float(t[i])!r} at row {i}: not a probability in [0, 1]")
    return t


def symmetrised(model: PreferenceModel, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor:
    """``(P(a, b) + 1 - P(b, a)) / 2``: removes any position bias of a pairwise judge."""
    return 0.5 * (model.prob(prompts, a, b) + 1.0 - model.prob(prompts, b, a))


class WorldJudge:
    """A simulated world as a judge.

    ``kind="annotators"``: a label (0 or 1) drawn from the world's noisy annotator pool per
    query (what a human-feedback budget buys). ``kind="truth"``: the true preference P* itself
    (an oracle, for ablations). ``queries`` counts every comparison asked.
    """

    def __init__(self, world, *, kind: str = "annotators", seed: int = 0) -> None:
        if kind not in ("annotators", "truth"):
            raise ValueError(f"kind must be 'annotators' or 'truth', got {kind!r}")
        self.world, self.kind = world, kind
        self.rng = np.random.default_rng(seed)
        self.queries = 0

    @property
    def name(self) -> str:
        return f"world:{self.world.name}:{self.kind}"

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor:
        prompts, a, b = list(prompts), list(a), list(b)
        self.queries += len(prompts)
        if self.kind == "truth":
            p = self.world.true_preference(prompts, a, b)
        else:
            p = self.world.annotate(prompts, a, b, self.rng)
        return checked_probabilities(p, len(prompts), judge=self.name)

    def state_dict(self) -> dict:
        """JSON-safe state (query count and RNG), so ``--resume`` continues the same label stream."""
        return {"queries": self.queries, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.queries = int(state["queries"])
        self.rng.bit_generator.state = state["rng"]


def call_batched(method, *args, batch_size: int):
    """Call ``method(*args, batch_size=batch_size)`` when it takes a ``batch_size`` (prefkit's
    neural models), else ``method(*args)`` (a judge that batches by itself)."""
    import inspect

    if "batch_size" in inspect.signature(method).parameters:
        return method(*args, batch_size=batch_size)
    return method(*args)
