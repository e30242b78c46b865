"""The judge of the online loop: any ``prefkit.preference`` model, with its budget counted.

``OnlineJudge`` wraps a ``PreferenceModel`` (the world's annotator pool, its true preference,
a trained Bradley-Terry, GPM or pairwise model, an LLM judge) and is the only way the online
step asks for feedback, so the budget is counted in one place:

- ``queries``: pairwise comparisons answered (an all-pairs round on K samples costs K(K-1)/2);
  a comparison of two identical responses is not asked (its answer is 1/2 by definition);
- ``reward_evals``: responses scored by a scalar reward model (K samples cost K).

Every answer is validated (``checked_probabilities``): NaN, infinities or values outside
[0, 1] stop the run with ``JudgeError`` naming the judge and the row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from prefkit.config import ConfigError, RunConfig
from prefkit.data.records import Text
from prefkit.preference import (
    JudgeError,
    PreferenceModel,
    ScoringPreferenceModel,
    WorldJudge,
    checked_probabilities,
)

SCALAR_REWARD_KINDS = frozenset({"bt", "ordinal", "exemplar", "agreement"})
"""Model kinds whose 1-dimensional embedding is a scalar reward (``P(a beats b) = sigmoid(r_a - r_b)``;
``agreement``: Think-RM's label-agreement reward of a generative judge's RL step,
``prefkit.preference.generative.AgreementReward``)."""

LOGIT_CLIP = 1e-6
"""Probabilities are clipped to [eps, 1 - eps] before taking log-odds (GPO's scores)."""


class OnlineJudge:
    """Counted, validated access to a preference model for the online step."""

    def __init__(self, model: PreferenceModel, *, name: str | None = None, reward: str = "auto") -> None:
        if not isinstance(model, PreferenceModel):
            raise TypeError(f"the judge must implement PreferenceModel.prob(prompts, a, b); got {type(model).__name__}")
        if reward not in ("auto", "win_rate"):
            raise ValueError(f"online.reward must be 'auto' or 'win_rate', got {reward!r}")
        self.model = model
        self.name = name or getattr(model, "name", None) or type(model).__name__
        self.reward_mode = reward
        self.queries = 0
        self.reward_evals = 0
        self.seconds = 0.0

    # -- what the judge can do -----------------------------------------------------------------

    @property
    def hard_labels(self) -> bool:
        """Whether answers are 0/1 labels (the simulated annotator pool), not probabilities."""
        return isinstance(self.model, WorldJudge) and self.model.kind == "annotators"

    @property
    def has_scalar_reward(self) -> bool:
        """A scoring model with a 1-dimensional embedding is a (Bradley-Terry) reward model: ``bt``,
        an ordinal reward model (``ordinal``: its score is BT-compatible), an exemplar reward
        (``exemplar``, DRAGON) or a generative judge's label agreement (``agreement``, Think-RM)."""
        if not isinstance(self.model, ScoringPreferenceModel):
            return False
        kind = getattr(self.model, "kind", None)  # prefkit.preference's neural models say what they are
        if isinstance(kind, str) and kind:
            return kind in SCALAR_REWARD_KINDS
        size = getattr(getattr(self.model, "head", None), "embedding_size", None)
        return size in (None, 1)

    def uses_reward_model(self) -> bool:
        """Whether scalar rewards come from the model itself (else from all-pairs win-rates)."""
        if self.reward_mode == "win_rate":
            return False
        if not self.has_scalar_reward:
            raise ConfigError(
                f"this method needs a scalar reward, and the judge {self.name!r} only compares pairs. "
                "Give a Bradley-Terry reward model as online.judge, or set online.reward=win_rate to "
                "score each sample by its win-rate against the other samples of its prompt"
            )
        return True

    # -- asking ------------------------------------------------------------------------------------

    def compare(self, prompts: Sequence[Text], a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """``P(a_i beats b_i | prompt_i)``, float32 ``[N]``; identical pairs are 1/2 without a query."""
        n = len(prompts)
        if not (len(a) == len(b) == n):
            raise ValueError(f"compare needs equal lengths, got {n}, {len(a)}, {len(b)}")
        out = torch.full((n,), 0.5)
        ask = [i for i in range(n) if a[i] != b[i]]
        if ask:
            began = time.perf_counter()
            answer = self.model.prob([prompts[i] for i in ask], [a[i] for i in ask], [b[i] for i in ask])
            self.seconds += time.perf_counter() - began
            out[ask] = checked_probabilities(answer, len(ask), judge=self.name)
            self.queries += len(ask)
        return out

    def matrices(self, prompts: Sequence[Text], groups: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """All-pairs ``M[i, j] = P(y_i beats y_j)`` per prompt (``M + M.T = 1``, diagonal 1/2), in one
        batched call: ``K(K-1)/2`` comparisons per prompt."""
        flat_p, flat_a, flat_b, where = [], [], [], []
        for g, (prompt, group) in enumerate(zip(prompts, groups)):
            for i in range(len(group)):
                for j in range(i + 1, len(group)):
                    flat_p.append(prompt), flat_a.append(group[i]), flat_b.append(group[j])
                    where.append((g, i, j))
        probs = self.compare(flat_p, flat_a, flat_b) if flat_p else torch.zeros(0)
        out = [torch.full((len(group), len(group)), 0.5) for group in groups]
        for (g, i, j), p in zip(where, probs.tolist()):
            out[g][i, j], out[g][j, i] = p, 1.0 - p
        return out

    def against(self, prompts: Sequence[Text], groups: Sequence[Sequence[str]],
                opponents: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """``W[i, m] = P(y_i beats o_m)`` for every sample and every opponent of each prompt."""
        flat_p, flat_a, flat_b = [], [], []
        for prompt, group, opp in zip(prompts, groups, opponents):
            for y in group:
                for o in opp:
                    flat_p.append(prompt), flat_a.append(y), flat_b.append(o)
        probs = self.compare(flat_p, flat_a, flat_b) if flat_p else torch.zeros(0)
        out, at = [], 0
        for group, opp in zip(groups, opponents):
            size = len(group) * len(opp)
            out.append(probs[at:at + size].view(len(group), len(opp)))
            at += size
        return out

    def rewards(self, prompts: Sequence[Text], groups: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """A scalar score per response: the reward model's (K evaluations per prompt), or with
        ``online.reward=win_rate`` the mean win-rate against the group's other responses."""
        if not groups:
            return []
        if self.uses_reward_model():
            flat_p = [p for p, group in zip(prompts, groups) for _ in group]
            flat_y = [y for group in groups for y in group]
            began = time.perf_counter()
            scores = self.model.embed(flat_p, flat_y)  # type: ignore[attr-defined]
            self.seconds += time.perf_counter() - began
            scores = torch.as_tensor(scores).detach().float().cpu().reshape(len(flat_y), -1)
            if scores.shape[1] != 1:
                raise JudgeError(f"judge {self.name!r}: a scalar reward needs a 1-dimensional embedding, "
                                 f"got {scores.shape[1]}")
            bad = ~torch.isfinite(scores[:, 0])
            if bool(bad.any()):
                raise JudgeError(f"judge {self.name!r} returned {int(bad.sum())} non-finite rewards "
                                 f"(first at row {int(bad.nonzero()[0])})")
            self.reward_evals += len(flat_y)
            out, at = [], 0
            for group in groups:
                out.append(scores[at:at + len(group), 0])
                at += len(group)
            return out
        return [win_rates(m) for m in self.matrices(prompts, groups)]

    # -- resume ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"queries": self.queries, "reward_evals": self.reward_evals, "seconds": self.seconds}
        inner = getattr(self.model, "state_dict", None)
        if inner is not None and not isinstance(self.model, torch.nn.Module):
            state["model"] = inner()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queries = int(state["queries"])
        self.reward_evals = int(state["reward_evals"])
        self.seconds = float(state.get("seconds", 0.0))
        if "model" in state:
            self.model.load_state_dict(state["model"])  # type: ignore[attr-defined]


def win_rates(matrix: torch.Tensor) -> torch.Tensor:
    """``w_i = mean_{j != i} M[i, j]``: each sample's win-rate against the others (leave-one-out,
    so unbiased for P(y_i beats pi) when the others are independent draws of pi)."""
    k = matrix.shape[0]
    if k < 2:
        raise ValueError("a win-rate needs at least two responses")
    return (matrix.sum(dim=1) - matrix.diagonal()) / (k - 1)


def log_odds(matrix: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric scores ``s = logit(P)`` (GPO); for a GPM with ``P = sigmoid(s/tau)`` this is
    ``s/tau``, for a world's true preference the exact preference logit."""
    p = matrix.clamp(LOGIT_CLIP, 1 - LOGIT_CLIP)
    return torch.log(p) - torch.log1p(-p)


def resolve_judge(cfg: RunConfig, world: Any | None) -> tuple[PreferenceModel, str]:
    """The judge named by ``online.judge``: ``world``, ``world-truth``, a preference-model directory,
    ``exemplars:FILE`` (DRAGON's exemplar reward, ``prefkit.preference.dragon.ExemplarJudge``),
    ``llm:SPEC``, a language model asked which response is better, or ``rubric:FILE``, one asked
    with a rubric (``prefkit.preference.judge_specs.language_judge``; ``online.judge_labels`` and
    ``online.judge_template`` go to it)."""
    spec = cfg.online.judge
    if spec in ("world", "world-truth"):
        if world is None:
            raise ConfigError(
                f"online.judge={spec} asks the simulated world for feedback: name it with --world "
                "(eval.world), or give a preference-model directory as online.judge"
            )
        kind = "annotators" if spec == "world" else "truth"
        judge = WorldJudge(world, kind=kind, seed=cfg.seed + 11)
        return judge, judge.name
    if spec.startswith("exemplars:"):
        from prefkit.preference.dragon import ExemplarJudge

        exemplar_judge = ExemplarJudge.from_file(spec[len("exemplars:"):])
        return exemplar_judge, exemplar_judge.name
    if spec.startswith(("llm:", "rubric:")):
        from prefkit.preference.judge_specs import language_judge

        judge = language_judge(spec, labels=cfg.online.judge_labels, template=cfg.online.judge_template,
                               device=cfg.train.device, trust_remote_code=cfg.trust_remote_code)
        return judge, judge.name
    from prefkit.preference import load_preference_model

    model = load_preference_model(spec)
    return model, str(spec)
