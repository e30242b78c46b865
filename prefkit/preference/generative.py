"""Generative pairwise judges (Think-RM, Pairwise-RL): a causal LM trained to say which of two
responses is better, optionally after a rationale.

Think-RM (Hong et al. 2025, arXiv 2505.16265) trains a generative reward model to reason before it
outputs a pairwise preference; Pairwise-RL (Xu et al. 2025, arXiv 2504.04950) trains a generative
pairwise RM for position consistency and uses its ``P(y beats anchor)`` as the reward of pairwise
PPO (algorithms.md §17, §19). prefkit's version:

- **Training data** (:func:`judge_examples`): every decided pair becomes the judge prompt of
  ``prefkit.preference.llm_judge`` (``DEFAULT_TEMPLATE`` or a template file; one user message)
  with the target the label of the better response; with position-swap augmentation (``swap``,
  the default) each pair is taught in both orders, so the answer cannot be read off the position
  (Pairwise-RL's position consistency). With a rationale the target is ``"{rationale} Final
  answer {label}"`` (Think-RM's think-then-answer form); on the simulated world the rationale names
  each response's issues in the world's terms (its critic, ``prefkit.sim.critiques``). Ties are
  skipped (counted). The SFT itself is ``prefkit train --method genrm``.
- **Use** (:class:`GenerativeJudge`, defined in ``prefkit.preference.llm_judge`` beside the
  :class:`~prefkit.preference.llm_judge.LLMJudge` whose loader builds it, re-exported here, as are
  ``JUDGE_FILE`` and :func:`read_judge_file`): an ``LLMJudge`` over the trained model
  (``online.judge=llm:DIR``, ``rm eval --model llm:DIR``: the run writes ``prefkit_judge.json``
  beside the weights and the loader reads it). Without a rationale
  ``P(first)`` is the label's next-token probability after the prompt; with one, the model first
  writes its rationale greedily (up to the answer marker) and ``P(first)`` is read after
  ``rationale + " Final answer"``. Every pair is asked in both orders and averaged (LLMJudge), so
  it is a ``PreferenceModel`` usable as a pairwise reward (pairwise PPO's ``P(y beats anchor)``).
- **Think-RM's RL step** (GRPO with reward = agreement with the label) needs GRPO;
  :func:`agreement_rewards` is its reward function.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.data.records import PairRecord, Source, Text
from prefkit.llm.base import Messages
from prefkit.preference.base import TIE
from prefkit.preference.llm_judge import (
    ANSWER_MARKER,
    DEFAULT_TEMPLATE,
    JUDGE_FILE,
    RATIONALE_TOKENS,
    GenerativeJudge,
    LLMJudge,
    as_text,
    check_template,
    first_label_in,
    read_judge_file,
)

__all__ = [
    "ANSWER_MARKER",
    "JUDGE_FILE",
    "RATIONALE_TOKENS",
    "GenerativeJudge",
    "JudgeExample",
    "agreement_rewards",
    "judge_examples",
    "judge_messages",
    "judge_report",
    "judge_target",
    "position_consistency",
    "read_judge_file",
    "world_rationale",
    "write_judge_file",
]


@dataclass(frozen=True)
class JudgeExample:
    """One SFT example: the judge prompt (one user message) and its target."""

    messages: list[dict[str, str]]
    target: str
    first_is_better: bool
    source: Source | None = None


def judge_messages(template: str, labels: tuple[str, str], prompt: Text, first: Text, second: Text) -> Messages:
    return [{"role": "user", "content": template.format(prompt=as_text(prompt), first=as_text(first),
                                                        second=as_text(second), first_label=labels[0],
                                                        second_label=labels[1])}]


def judge_target(label: str, rationale: str | None) -> str:
    return label if rationale is None else f"{rationale} {ANSWER_MARKER} {label}"


def world_rationale(world: Any, prompt: Text, first: Text, second: Text, labels: tuple[str, str]) -> str:
    """``"Response A: <critique of A> Response B: <critique of B>"``, the world critic's words."""
    from prefkit.sim.critiques import critique

    parts = []
    for label, response in zip(labels, (first, second)):
        parts.append(f"Response {label}: {critique(world, as_text(prompt), as_text(response)).text}")
    return " ".join(parts)


def judge_examples(pairs: Sequence[PairRecord], *, template: str = DEFAULT_TEMPLATE, labels: tuple[str, str] = ("A", "B"),
                   swap: bool = True, rationale_world: Any = None, rng: np.random.Generator | None = None
                   ) -> tuple[list[JudgeExample], int]:
    """The judge's SFT examples and the number of ties skipped (see the module doc); without
    ``swap`` each pair appears once, in an order drawn from ``rng``."""
    check_template(template)
    rng = rng or np.random.default_rng(0)
    out, ties = [], 0
    for pair in pairs:
        if pair.label == TIE:
            ties += 1
            continue
        better, worse = (pair.chosen, pair.rejected) if pair.label > TIE else (pair.rejected, pair.chosen)
        orders = [True, False] if swap else [bool(rng.integers(2))]
        for better_first in orders:
            first, second = (better, worse) if better_first else (worse, better)
            reason = (world_rationale(rationale_world, pair.prompt, first, second, labels)
                      if rationale_world is not None else None)
            target = judge_target(labels[0] if better_first else labels[1], reason)
            out.append(JudgeExample(list(judge_messages(template, labels, pair.prompt, first, second)), target,
                                    better_first, pair.source))
    return out, ties


def write_judge_file(directory: str | os.PathLike[str], *, template: str, labels: tuple[str, str],
                     rationale: bool) -> None:
    from prefkit._atomic import atomic_write_json

    atomic_write_json(Path(directory) / JUDGE_FILE, {"format": "prefkit.judge", "version": 1, "template": template,
                                                     "labels": list(labels), "rationale": bool(rationale)})


def position_consistency(judge: LLMJudge, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> float:
    """Fraction of pairs whose judgement does not depend on the order: ``P_A(a, b) > 1/2`` exactly
    when ``P_A(b, a) < 1/2`` (Pairwise-RL's position consistency)."""
    forward = judge.first_label_prob(prompts, a, b)
    backward = judge.first_label_prob(prompts, b, a)
    return float(((forward > 0.5) == (backward < 0.5)).float().mean()) if len(forward) else float("nan")


def agreement_rewards(completions: Sequence[str], better_first: Sequence[bool], labels: tuple[str, str] = ("A", "B"),
                      *, marker: str | None = ANSWER_MARKER) -> torch.Tensor:
    """Think-RM's RL reward: 1 when a sampled judgement names the better response's label (after
    ``marker`` when the completion has one), else 0; a completion naming neither label gets 0."""
    out = []
    for text, first in zip(completions, better_first):
        tail = text.split(marker, 1)[1] if marker and marker in text else text
        picked = first_label_in(tail, labels)
        out.append(1.0 if picked is not None and picked == (0 if first else 1) else 0.0)
    return torch.tensor(out, dtype=torch.float32)


def judge_report(judge: LLMJudge, records: Sequence[PairRecord], *, batch_size: int = 64) -> dict[str, Any]:
    """Pair accuracy (``prefkit.preference.evaluation``'s numbers on the order-averaged probability),
    ``position_consistency`` and ``first_rate`` (how often the first position is preferred) of a
    judge on labelled pairs, from one pass in each order."""
    from prefkit.preference.evaluation import accuracy_from_probabilities

    if not records:
        raise ValueError("no pairs to evaluate the judge on")
    forward, backward = [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        prompts, chosen, rejected = [r.prompt for r in chunk], [r.chosen for r in chunk], [r.rejected for r in chunk]
        forward.append(judge.first_label_prob(prompts, chosen, rejected))
        backward.append(judge.first_label_prob(prompts, rejected, chosen))
    f, b = torch.cat(forward).double(), torch.cat(backward).double()
    labels = torch.tensor([r.label for r in records], dtype=torch.float64)
    out = accuracy_from_probabilities(0.5 * (f + 1.0 - b), labels)
    out["position_consistency"] = float(((f > 0.5) == (b < 0.5)).double().mean())
    out["first_rate"] = float(torch.cat([f, b]).gt(0.5).double().mean())
    return out
