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
- **Think-RM's RL step** (``prefkit train --method genrm --rl``): GRPO on the judge itself, its
  prompts the judge prompts of the training pairs and its reward :func:`agreement_rewards`, 1 when
  a sampled judgement names the better response's label, else 0 (Think-RM's rule-based RL).
  :class:`AgreementReward` is that reward as the scalar reward model the online loop asks
  (``prefkit.engine.online.judge.OnlineJudge``); the run is ``prefkit.engine.offline.genrm``.
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
from prefkit.preference.base import TIE, JudgeError
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
    "AgreementReward",
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
                      *, marker: str | None = ANSWER_MARKER, require_marker: bool = False) -> torch.Tensor:
    """Think-RM's RL reward: 1 when a sampled judgement names the better response's label (after
    ``marker`` when the completion has one), else 0; a completion naming neither label gets 0.
    ``require_marker`` (a judge that writes a rationale first): a completion without ``marker``
    gets 0, since its labels are the rationale's ("Response A: ..."), not an answer."""
    if len(completions) != len(better_first):
        raise ValueError(f"agreement_rewards: {len(completions)} completions and {len(better_first)} labels")
    if require_marker and not marker:
        raise ValueError("agreement_rewards: require_marker needs a marker")
    out = []
    for text, first in zip(completions, better_first):
        if require_marker and marker not in text:
            out.append(0.0)
            continue
        tail = text.split(marker, 1)[1] if marker and marker in text else text
        picked = first_label_in(tail, labels)
        out.append(1.0 if picked is not None and picked == (0 if first else 1) else 0.0)
    return torch.tensor(out, dtype=torch.float32)


class AgreementReward:
    """Think-RM's RL reward as a scalar reward model for the online loop: ``embed(prompts,
    completions)`` is :func:`agreement_rewards` of each completion against the better position of
    its judge prompt (``[N, 1]``), read from a table built from the training pairs.

    ``table`` maps a rendered judge prompt to the better positions (``True``: the first response)
    of every decided pair that renders to it; a prompt taught with both answers (the same pair
    labelled both ways) is rewarded by the mean agreement over its labels. A prompt missing from
    the table is an error (the loop only samples the table's prompts). As a preference model,
    ``P(a beats b) = (1 + r_a - r_b) / 2`` (rewards in [0, 1]). ``rationale``: the judge writes a
    rationale before ``ANSWER_MARKER``, and a completion without the marker gets 0; else the whole
    completion is the answer.
    """

    kind = "agreement"
    name = "agreement with the label (Think-RM)"

    def __init__(self, table: dict[str, list[bool]], *, labels: tuple[str, str] = ("A", "B"),
                 rationale: bool = False) -> None:
        if not table or not all(table.values()):
            raise ValueError("AgreementReward needs at least one judge prompt, each with a label")
        self.table = {prompt: list(positions) for prompt, positions in table.items()}
        self.labels = labels
        self.rationale = rationale

    @classmethod
    def from_prompts(cls, prompts: Sequence[str], better_first: Sequence[bool], **kwargs: Any) -> AgreementReward:
        if len(prompts) != len(better_first):
            raise ValueError(f"{len(prompts)} judge prompts and {len(better_first)} labels")
        table: dict[str, list[bool]] = {}
        for prompt, first in zip(prompts, better_first):
            table.setdefault(prompt, []).append(bool(first))
        return cls(table, **kwargs)

    @property
    def prompts(self) -> list[str]:
        """The judge prompts, in the order first seen."""
        return list(self.table)

    def rewards(self, prompts: Sequence[Text], completions: Sequence[str]) -> torch.Tensor:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts and {len(completions)} completions")
        out = torch.zeros(len(prompts))
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            positions = self.table.get(prompt) if isinstance(prompt, str) else None
            if positions is None:
                raise JudgeError(f"{self.name}: row {i}'s prompt is not one of the judge prompts of the training "
                                 f"pairs: {as_text(prompt)[:80]!r}")
            scores = agreement_rewards([completion] * len(positions), positions, self.labels,
                                       marker=ANSWER_MARKER if self.rationale else None,
                                       require_marker=self.rationale)
            out[i] = scores.mean()
        return out

    def embed(self, prompts: Sequence[Text], responses: Sequence[Text]) -> torch.Tensor:
        return self.rewards(prompts, [as_text(r) for r in responses]).unsqueeze(1)

    def prob_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return (0.5 * (1.0 + e_a[:, 0] - e_b[:, 0])).clamp(0.0, 1.0)

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor:
        return self.prob_from_embeddings(self.embed(prompts, a), self.embed(prompts, b))


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
