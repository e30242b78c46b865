"""ILF's language-model steps: refine a response with its feedback, and select the best refinement.

Imitation learning from Language Feedback (Scheurer et al. 2023, arXiv 2303.16755; official code
``JeremyAlain/imitation_learning_from_language_feedback``, ``experiments/generate_refinements.py``
and ``scoring_functions/causal_response.py``; algorithms.md §11b), per round:

1. :func:`refine`: ``N`` refinements per (prompt, response, feedback) from the backend, with the
   paper's instruction generalised from summaries to answers ("Write an excellent answer that
   incorporates the feedback on the given answer and is better than the given answer."), at
   temperature 1 (the paper: N = 5, temperature 1.0);
2. :func:`incorporation_scores`: ILF's selector ("InstructRM"): ``P("Yes")`` against ``"No"`` for
   "Does this new answer incorporate the feedback provided? Answer Yes or No.", averaged over the
   prompt templates of :data:`SELECT_TEMPLATES` (the paper ensembles 5), read from the backend's
   next-token log-probs; :func:`select` keeps the argmax per row;
3. supervised fine-tuning on (prompt, selected refinement) — ``prefkit train --method ilf``
   (``prefkit.engine.offline.ilf``, ``ilf.refiner=llm:SPEC`` / ``ilf.selector=llm:SPEC``).

The simulated world has rule-based counterparts with a known answer: ``prefkit.sim.critiques.
refine`` (an imperfect refiner) and ``incorporation`` (the true fraction of issues fixed).
Feedback must not be empty: an empty critique is a ``ValueError`` naming the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prefkit.data.critiques import CritiqueRecord
from prefkit.llm.base import ChatRequest

REFINE_PROMPT = (
    "Instruction: {prompt}\n\nAnswer: {response}\n\nFeedback on the answer: {feedback}\n\n"
    "Write an excellent answer that incorporates the feedback on the given answer and is better than "
    "the given answer.\n\nImproved answer:"
)

SELECT_TEMPLATES: tuple[str, ...] = (
    "Instruction: {prompt}\nAnswer: {response}\nFeedback: {feedback}\nNew answer: {refinement}\n"
    "Does this new answer incorporate the feedback provided? Answer Yes or No.\nAnswer:",
    "Here is an instruction, an answer to it, feedback on the answer, and a revised answer.\n"
    "Instruction: {prompt}\nAnswer: {response}\nFeedback: {feedback}\nRevised answer: {refinement}\n"
    "Does the revised answer address the feedback? Answer Yes or No.\nAnswer:",
    "Feedback: {feedback}\nOriginal: {response}\nRevision: {refinement}\n(Instruction: {prompt})\n"
    "Was the feedback taken into account in the revision? Answer Yes or No.\nAnswer:",
    "Instruction: {prompt}\nFirst answer: {response}\nWhat was wrong with it: {feedback}\n"
    "Second answer: {refinement}\nDoes the second answer fix what was wrong? Answer Yes or No.\nAnswer:",
    "Consider the feedback \"{feedback}\" given on the answer \"{response}\" to \"{prompt}\".\n"
    "Does the answer \"{refinement}\" incorporate this feedback? Answer Yes or No.\nAnswer:",
)


def _check(rows: Sequence[CritiqueRecord]) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row.critique, str) or not row.critique.strip():
            where = f" ({row.source[0]}:{row.source[1]})" if row.source else ""
            raise ValueError(f"row {i}{where}: the feedback is empty; ILF refines with feedback, drop the row")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


def refine(backend: Any, rows: Sequence[CritiqueRecord], *, n: int = 5, temperature: float = 1.0,
           max_tokens: int = 128, seed: int = 0, template: str = REFINE_PROMPT) -> list[list[str]]:
    """``n`` refinements per row (stripped); an empty refinement is kept as ``""`` and scored low."""
    _check(rows)
    requests = [ChatRequest(messages=({"role": "user", "content": template.format(
        prompt=_text(r.prompt), response=_text(r.completion), feedback=r.critique)},), n=n, temperature=temperature,
        max_tokens=max_tokens, seed=seed) for r in rows]
    return [[t.strip() for t in result.texts] for result in backend.chat(requests)]


def incorporation_scores(backend: Any, rows: Sequence[CritiqueRecord], refinements: Sequence[Sequence[str]], *,
                         templates: Sequence[str] = SELECT_TEMPLATES, labels: tuple[str, str] = ("Yes", "No")
                         ) -> list[np.ndarray]:
    """Per row, ``[N]`` scores ``mean_templates P(Yes) / (P(Yes) + P(No))`` for its refinements."""
    _check(rows)
    if len(rows) != len(refinements):
        raise ValueError(f"{len(rows)} rows but {len(refinements)} lists of refinements")
    if not templates:
        raise ValueError("at least one selection template is needed")
    prompts, where = [], []
    for i, (row, candidates) in enumerate(zip(rows, refinements)):
        for j, candidate in enumerate(candidates):
            for template in templates:
                prompts.append([{"role": "user", "content": template.format(
                    prompt=_text(row.prompt), response=_text(row.completion), feedback=row.critique,
                    refinement=candidate)}])
                where.append((i, j))
    scores = backend.choice_logprobs(prompts, list(labels)) if prompts else np.zeros((0, 2))
    yes = np.exp(scores[:, 0] - np.logaddexp(scores[:, 0], scores[:, 1]))
    out = [np.zeros(len(c)) for c in refinements]
    for (i, j), value in zip(where, yes):
        out[i][j] += value / len(templates)
    return out


def select(refinements: Sequence[Sequence[str]], scores: Sequence[np.ndarray]) -> list[tuple[int, str]]:
    """The best refinement per row by score: ``(index, text)``; rows without refinements are an error."""
    out = []
    for i, (candidates, row_scores) in enumerate(zip(refinements, scores)):
        if not len(candidates):
            raise ValueError(f"row {i} has no refinement to select from")
        best = int(np.argmax(row_scores))
        out.append((best, candidates[best]))
    return out
