"""A round's training rows and what a build may use to make them (``prefkit.engine.online``).

:class:`Rows` are plain lists (token ids, detached numbers, per-token arrays), so a round's data
travels in the checkpoint and ``--resume`` continues mid-round exactly. :class:`BuildContext`
holds the sampler, the models, the judge and the method's settings a build samples and scores
with; :class:`Candidates` are the responses of one prompt a build compares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from prefkit.data.records import Text
from prefkit.engine.methods import Recipe
from prefkit.engine.online.judge import OnlineJudge, win_rates
from prefkit.engine.online.rollout import Sampler
from prefkit.policy import Policy

if TYPE_CHECKING:
    from prefkit.engine.online.tokens import RolloutSetup


@dataclass
class Rows:
    """Training rows of one round: ``responses[r][s]`` is slot ``s`` of row ``r`` (all slots of a
    row share ``prompt_ids[r]``); ``values[name][r]`` the row's detached numbers; ``group[r]`` the
    index of the round prompt it came from; ``tokens[name][r]`` a per-token array of a one-slot
    row (one number per response token of the encoded row: the reinforcement-learning methods'
    sampling-time log-probs, reference log-probs, values, advantages and returns)."""

    slots: int
    prompt_ids: list[list[int]] = field(default_factory=list)
    responses: list[list[list[int]]] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    group: list[int] = field(default_factory=list)
    prompts: int = 0
    """Prompts the round sampled (rows may be fewer when prompts were skipped)."""
    tokens: dict[str, list[list[float]]] = field(default_factory=dict)
    refresh: Callable[[Sampler, int], None] | None = None
    """EGPO: recompute the targets against opponents of the current (half-step) policy."""

    def add(self, group: int, prompt_ids: list[int], responses: Sequence[list[int]], **values: float) -> None:
        if len(responses) != self.slots:
            raise ValueError(f"a row needs {self.slots} responses, got {len(responses)}")
        self.prompt_ids.append(list(prompt_ids))
        self.responses.append([list(r) for r in responses])
        self.group.append(group)
        for name, value in values.items():
            self.values.setdefault(name, []).append(float(value))

    def __len__(self) -> int:
        return len(self.group)

    def merged(self, other: Rows) -> Rows:
        """The rows of two batches of one round (``other``'s groups shifted after this one's).
        Without ``refresh``: only per-step rounds (one batch) are refreshed (EGPO)."""
        out = Rows(slots=self.slots, prompts=self.prompts + other.prompts)
        for rows, offset in ((self, 0), (other, self.prompts)):
            out.prompt_ids += rows.prompt_ids
            out.responses += rows.responses
            out.group += [g + offset for g in rows.group]
        for name in set(self.values) | set(other.values):
            out.values[name] = self.values.get(name, []) + other.values.get(name, [])
        for name in set(self.tokens) | set(other.tokens):
            out.tokens[name] = self.tokens.get(name, []) + other.tokens.get(name, [])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"slots": self.slots, "prompt_ids": self.prompt_ids, "responses": self.responses,
                "values": self.values, "group": self.group, "prompts": self.prompts, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rows:
        return cls(slots=int(data["slots"]), prompt_ids=data["prompt_ids"], responses=data["responses"],
                   values={k: [float(x) for x in v] for k, v in data["values"].items()},
                   group=[int(g) for g in data["group"]], prompts=int(data["prompts"]),
                   tokens={k: [[float(x) for x in row] for row in v] for k, v in data.get("tokens", {}).items()})


@dataclass
class Candidates:
    """The responses of one prompt that a build compares."""

    prompt: Text
    prompt_ids: list[int]
    texts: list[str]
    ids: list[list[int]]
    own: list[float]
    """log pi_t(y|x) under the policy at build time (temperature 1)."""
    ref: list[float] = field(default_factory=list)
    """Log-probs under the loss's reference (initial policy or pi_t)."""

    @property
    def all_identical(self) -> bool:
        return len(set(self.texts)) <= 1


@dataclass
class BuildContext:
    """What a build may use: the sampler, the models, the judge and the method's settings."""

    recipe: Recipe
    sampler: Sampler
    policy: Policy
    reference: Policy
    judge: OnlineJudge
    temperature: float
    mixture_coef: float
    sample_mixture: float
    opponents: int
    keep_top: int
    answer_of: Callable[[Text], str] | None = None
    skipped: Counter = field(default_factory=Counter)
    rollout: RolloutSetup | None = None
    """The reinforcement-learning methods' per-token scoring (``prefkit.engine.online.tokens``)."""

    # -- sampling ------------------------------------------------------------------------------

    def draw(self, prompts: Sequence[Text], n: int, seed: int) -> list[Candidates]:
        """``n`` responses per prompt to train on (tempered / mixed when configured)."""
        mixture = (self.reference, self.sample_mixture) if self.sample_mixture > 0 else None
        samples = self.sampler.sample(prompts, n, seed=seed, temperature=self.temperature, mixture=mixture)
        return [
            Candidates(prompt, samples.prompt_ids[i], list(samples.texts[i]), [list(x) for x in samples.token_ids[i]],
                       samples.logps[i].tolist())
            for i, prompt in enumerate(prompts)
        ]

    def with_answers(self, candidates: list[Candidates]) -> None:
        """Append each prompt's reference answer as one more candidate (DNO's teacher, GRAO's y)."""
        if self.answer_of is None:
            raise ValueError("this method needs reference answers (online.answers, or a world)")
        texts = [self.answer_of(c.prompt) for c in candidates]
        ids = self.policy.response_ids(texts)
        own = self.policy.logprob_ids([c.prompt_ids for c in candidates], ids)
        for c, text, y, lp in zip(candidates, texts, ids, own.tolist()):
            c.texts.append(text), c.ids.append(list(y)), c.own.append(lp)

    def fill_reference(self, candidates: list[Candidates]) -> None:
        """Reference log-probs of every candidate: pi_t's own (previous iterate) or the initial
        policy's, scored in one batch on the sampled ids."""
        if self.recipe.ref_update == "previous":
            for c in candidates:
                c.ref = list(c.own)
            return
        keys = {(tuple(c.prompt_ids), tuple(y)): None for c in candidates for y in c.ids}
        unique = list(keys)
        scores = self.reference.logprob_ids([list(p) for p, _ in unique], [list(y) for _, y in unique],
                                            batch_size=64).tolist() if unique else []
        score_of = dict(zip(unique, scores))
        for c in candidates:
            c.ref = [score_of[(tuple(c.prompt_ids), tuple(y))] for y in c.ids]

    def scores(self, candidates: list[Candidates]) -> list[torch.Tensor]:
        """A scalar score per candidate: a reward model's, or the win-rate over all pairs."""
        return self.judge.rewards([c.prompt for c in candidates], [c.texts for c in candidates])

    def matrices(self, candidates: list[Candidates]) -> list[torch.Tensor]:
        return self.judge.matrices([c.prompt for c in candidates], [c.texts for c in candidates])

    def rank_scores(self, candidates: list[Candidates]) -> list[torch.Tensor]:
        """Scores to rank by: a scalar reward when the judge is a reward model (K evaluations),
        else win counts over all pairs (K(K-1)/2 comparisons)."""
        if self.judge.reward_mode == "auto" and self.judge.has_scalar_reward:
            return self.scores(candidates)
        return [win_rates(m) for m in self.matrices(candidates)]
