"""ILF's LLM steps: refinements from a backend, InstructRM-style selection over templates, and
the world's refiner and ground-truth selector as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.data.critiques import CritiqueRecord
from prefkit.llm.ilf import SELECT_TEMPLATES, incorporation_scores, refine, select
from prefkit.sim import make_world
from prefkit.sim.critiques import critique, incorporation
from prefkit.sim.critiques import refine as world_refine
from tests.preference.scripted import ScriptedBackend


def test_the_selector_picks_the_refinement_the_world_says_incorporates_the_feedback():
    world = make_world("transitive", seed=0)
    rng = np.random.default_rng(0)
    prompts = world.prompts("train", 20)
    responses = [r[0] for r in world.base_responses(prompts, 1, rng)]
    rows, truth = [], {}
    for p, y in zip(prompts, responses):
        c = critique(world, p, y)
        rows.append(CritiqueRecord(p, y, c.text))
        truth[(p, y)] = c

    def yes_no(content: str, choices: list[str]) -> list[float]:  # an oracle "LLM": P(Yes) = true incorporation
        row = next(r for r in rows if f"Feedback: {r.critique}" in content or f"feedback \"{r.critique}\"" in content
                   or f"What was wrong with it: {r.critique}" in content)
        refinement = content.split("answer: ")[-1].split("\n")[0] if "New answer: " in content else None
        score = 0.5 if refinement is None else incorporation(world, row.prompt, refinement, truth[(row.prompt,
                                                                                               row.completion)])
        return [np.log(max(score, 1e-6)), np.log(max(1 - score, 1e-6))]

    backend = ScriptedBackend(lambda content: "", logprobs=yes_no)
    candidates = [[world_refine(world, r.prompt, r.completion, truth[(r.prompt, r.completion)], rng, skill=s, slip=0)
                   for s in (0.0, 1.0, 0.3)] for r in rows]
    scores = incorporation_scores(backend, rows, candidates)
    chosen = select(candidates, scores)
    assert all(i == 1 or scores[k][i] == scores[k][1] for k, (i, _) in enumerate(chosen))
    assert all(s.shape == (3,) and ((s >= 0) & (s <= 1)).all() for s in scores)
    assert len(backend.prompts) == 0  # selection only reads log-probs
    assert backend.counters.requests == 0 and len(SELECT_TEMPLATES) == 5


def test_refinements_from_a_local_model_and_empty_feedback_is_refused(hf_backend):
    rows = [CritiqueRecord("the sky is", "red", "It is wrong: the sky is blue.")]
    out = refine(hf_backend, rows, n=3, max_tokens=4)
    assert len(out) == 1 and len(out[0]) == 3
    scores = incorporation_scores(hf_backend, rows, out, labels=("A", "B"))
    assert scores[0].shape == (3,) and np.isfinite(scores[0]).all()
    with pytest.raises(ValueError, match="feedback is empty"):
        refine(hf_backend, [CritiqueRecord("q", "a", "  ")])
    with pytest.raises(ValueError, match="no refinement"):
        select([[]], [np.zeros(0)])
