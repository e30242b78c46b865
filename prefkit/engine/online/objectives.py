"""The online objectives: what each online method builds from a round's samples, the registry
loss it applies, and what one prompt costs. ``OBJECTIVES`` is the one registry; a method's
:class:`~prefkit.engine.methods.Recipe` names its objective.

A *build* turns prompts into training rows: it samples from the policy (or a mixture), asks
the judge, and stores for each row its sequences (token ids; one prompt, one or two responses)
and the detached numbers its loss needs (labels, win-rates, reference log-probs, rewards).
Rows are plain lists, so a round's data can be checkpointed (``--resume`` mid-round).
A *loss* takes the policy's log-probs of a micro-batch of rows and calls the registry function
of ``prefkit.losses`` — the only place a formula lives — with the row values as its inputs and
the engine-fed keyword arguments the objective declares (``fills``).

The reinforcement-learning baselines are the ``rollout`` and ``anchored`` objectives
(``token_level``): their builds store per-token arrays, ``finish`` computes the advantages once
per round, and their loss is a ``token`` registry loss (``prefkit.engine.online.tokens``).

Skips are counted, never silent: a prompt whose samples are all identical (no preference
signal), a best-vs-worst tie, a group whose rewards do not vary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from prefkit.config import OnlineConfig
from prefkit.data.records import Text
from prefkit.engine.losses import ResolvedLoss, symmetrised
from prefkit.engine.methods import Recipe
from prefkit.engine.online.judge import log_odds, win_rates
from prefkit.engine.online.rollout import Sampler
from prefkit.engine.online.rows import BuildContext, Candidates, Rows
from prefkit.engine.online.tokens import build_anchored, build_rollout, finish_rollout
from prefkit.losses import grao_advantages

__all__ = ["OBJECTIVES", "BuildContext", "Candidates", "OnlineObjective", "Rows", "get_objective"]


# ----------------------------------------------------------------------------------- pairing

def disjoint_pairs(k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    order = rng.permutation(k).tolist()
    return [(order[i], order[i + 1]) for i in range(0, k - 1, 2)]


def all_pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def best_and_worst(scores: torch.Tensor) -> tuple[int, int] | None:
    """Indices of the highest and lowest score (first occurrence); ``None`` on a tie."""
    best, worst = int(torch.argmax(scores)), int(torch.argmin(scores))
    return None if scores[best] == scores[worst] else (best, worst)


# ------------------------------------------------------------------------------------ builds

def build_pairwise(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """Online / iterative DPO: pairs of samples labelled by the judge, for a pairwise loss.

    Two samples: one comparison, the label is the judge's P(a beats b) (soft for a soft judge).
    More: ``best_worst`` ranks by reward or all-pairs wins and trains best over worst (hard
    label; RLHF Workflow's ``max_min``), ``random`` judges disjoint random pairs, ``all`` every pair.
    """
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.fill_reference(cands)
    rows, rng = Rows(slots=2, prompts=len(prompts)), np.random.default_rng(seed)
    live = [c for c in cands if not c.all_identical]
    ctx.skipped["identical"] += len(cands) - len(live)
    index = {id(c): g for g, c in enumerate(cands)}
    pairing = "single" if k == 2 else ctx.recipe.pairing
    if pairing == "best_worst":
        for c, scores in zip(live, ctx.rank_scores(live)):
            picked = best_and_worst(scores)
            if picked is None:
                ctx.skipped["tie"] += 1
                continue
            i, j = picked
            rows.add(index[id(c)], c.prompt_ids, [c.ids[i], c.ids[j]], label=1.0, ref_1=c.ref[i], ref_2=c.ref[j])
        return rows
    if pairing == "all":
        for c, m in zip(live, ctx.matrices(live)):
            for i, j in all_pairs(k):
                if c.texts[i] == c.texts[j]:
                    continue
                rows.add(index[id(c)], c.prompt_ids, [c.ids[i], c.ids[j]], label=float(m[i, j]),
                         ref_1=c.ref[i], ref_2=c.ref[j])
        return rows
    pairs = [[(0, 1)] if pairing == "single" else disjoint_pairs(k, rng) for _ in live]
    flat = [(c, i, j) for c, ps in zip(live, pairs) for i, j in ps if c.texts[i] != c.texts[j]]
    labels = ctx.judge.compare([c.prompt for c, _, _ in flat], [c.texts[i] for c, i, _ in flat],
                               [c.texts[j] for c, _, j in flat])
    for (c, i, j), label in zip(flat, labels.tolist()):
        rows.add(index[id(c)], c.prompt_ids, [c.ids[i], c.ids[j]], label=label, ref_1=c.ref[i], ref_2=c.ref[j])
    return rows


def build_dno(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """DNO (Rosset et al. 2024, Alg. 1): win-rates r_t(y) = mean_{y'} P(y beats y') over all pairs
    of the K samples (plus the teacher's answer with ``online.teacher``), then pairs with the
    soft target sigmoid(r_t(y_1) - r_t(y_2)), reference = the previous iterate."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    if ctx.recipe.needs_answers:
        ctx.with_answers(cands)
    ctx.fill_reference(cands)
    rows, rng = Rows(slots=2, prompts=len(prompts)), np.random.default_rng(seed)
    live = [(g, c) for g, c in enumerate(cands) if not c.all_identical]
    ctx.skipped["identical"] += len(cands) - len(live)
    for (g, c), m in zip(live, ctx.matrices([c for _, c in live])):
        r = win_rates(m)
        if ctx.recipe.pairing == "best_worst":
            picked = best_and_worst(r)
            if picked is None:
                ctx.skipped["tie"] += 1
                continue
            pairs = [picked]
        elif ctx.recipe.pairing == "random":
            pairs = disjoint_pairs(len(c.ids), rng)
        else:
            pairs = all_pairs(len(c.ids))
        for i, j in pairs:
            if c.texts[i] != c.texts[j]:
                rows.add(g, c.prompt_ids, [c.ids[i], c.ids[j]], win_1=float(r[i]), win_2=float(r[j]),
                         ref_1=c.ref[i], ref_2=c.ref[j])
    return rows


def build_win_rate(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """SPPO / GPO: each sample's leave-one-out win-rate (or mean log-odds score) against the
    other K-1 samples of the previous iterate, all pairs judged."""
    cands = ctx.draw(prompts, ctx.recipe.samples_per_prompt, seed)
    ctx.fill_reference(cands)
    rows = Rows(slots=1, prompts=len(prompts))
    live = [(g, c) for g, c in enumerate(cands) if not c.all_identical]
    ctx.skipped["identical"] += len(cands) - len(live)
    for (g, c), m in zip(live, ctx.matrices([c for _, c in live])):
        if ctx.recipe.score == "logit":
            s = log_odds(m)  # skew-symmetric, zero diagonal
            target = s.sum(dim=1) / (len(c.ids) - 1)  # mean of s(y_i beats y_j) over j != i
        else:
            target = win_rates(m)
        for i in range(len(c.ids)):
            rows.add(g, c.prompt_ids, [c.ids[i]], target=float(target[i]), ref=c.ref[i])
    return rows


def build_nash_md(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """Nash-MD-PG: y ~ pi_theta, y' from the token-level geometric mixture
    ``(1 - coef) logits + coef ref_logits`` (coef 0: self-play; 1: the reference itself);
    one comparison P(y beats y') per sample."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.fill_reference(cands)
    opponents = ctx.sampler.sample(prompts, k, seed=seed + 1, mixture=(ctx.reference, ctx.mixture_coef))
    flat_p = [c.prompt for c in cands for _ in c.texts]
    flat_y = [y for c in cands for y in c.texts]
    flat_o = [o for row in opponents.texts for o in row]
    prefs = ctx.judge.compare(flat_p, flat_y, flat_o).view(len(cands), k)
    rows = Rows(slots=1, prompts=len(prompts))
    for g, c in enumerate(cands):
        for i in range(k):
            rows.add(g, c.prompt_ids, [c.ids[i]], preference=float(prefs[g, i]), ref=c.ref[i])
    return rows


def build_online_ipo(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """Online IPO (OMD) and EGPO: pairs (y, y') of samples and the target
    ``P(y beats q) - P(y' beats q)`` estimated against ``online.opponents`` samples y'' ~ q.
    q = pi_t here; EGPO's ``refresh`` recomputes it against q = pi_{t+1/2} after the half step."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.fill_reference(cands)
    rng = np.random.default_rng(seed)
    rows = Rows(slots=2, prompts=len(prompts))
    live = [(g, c) for g, c in enumerate(cands) if not c.all_identical]
    ctx.skipped["identical"] += len(cands) - len(live)
    chosen_pairs: list[tuple[int, int, int]] = []  # (live index, i, j) per row
    for n, (g, c) in enumerate(live):
        pairs = all_pairs(k) if ctx.recipe.pairing in ("all", "best_worst") else disjoint_pairs(k, rng)
        for i, j in pairs:
            if c.texts[i] != c.texts[j]:
                chosen_pairs.append((n, i, j))
                rows.add(g, c.prompt_ids, [c.ids[i], c.ids[j]], gap=0.0, ref_1=c.ref[i], ref_2=c.ref[j])
    live_c = [c for _, c in live]

    def refresh(sampler: Sampler, opponent_seed: int) -> None:
        if not live_c:
            return
        opp = sampler.sample([c.prompt for c in live_c], ctx.opponents, seed=opponent_seed)
        wins = [w.mean(dim=1) for w in ctx.judge.against([c.prompt for c in live_c], [c.texts for c in live_c],
                                                          opp.texts)]
        rows.values["gap"] = [float(wins[n][i] - wins[n][j]) for n, i, j in chosen_pairs]

    refresh(ctx.sampler, seed + 1)
    rows.refresh = refresh
    return rows


def build_p3o(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """P3O: disjoint pairs of on-policy samples with their scalar rewards, the sampling
    log-probs (pi_old) and the reference log-probs (KL shaping)."""
    if ctx.recipe.pairing == "best_worst":
        raise ValueError("p3o's pairwise policy gradient needs unselected pairs: online.pairing random or all")
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.fill_reference(cands)
    rows, rng = Rows(slots=2, prompts=len(prompts)), np.random.default_rng(seed)
    live = [(g, c) for g, c in enumerate(cands) if not c.all_identical]
    ctx.skipped["identical"] += len(cands) - len(live)
    for (g, c), r in zip(live, ctx.scores([c for _, c in live])):
        pairs = disjoint_pairs(k, rng) if ctx.recipe.pairing == "random" else all_pairs(k)
        for i, j in pairs:
            if c.texts[i] != c.texts[j]:
                rows.add(g, c.prompt_ids, [c.ids[i], c.ids[j]], old_1=c.own[i], old_2=c.own[j],
                         ref_1=c.ref[i], ref_2=c.ref[j], reward_1=float(r[i]), reward_2=float(r[j]))
    return rows


def build_filter(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """SuperHF / expert iteration: keep the ``online.keep_top`` highest-reward samples per prompt."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.fill_reference(cands)
    rows = Rows(slots=1, prompts=len(prompts))
    for g, (c, r) in enumerate(zip(cands, ctx.scores(cands))):
        if k > 1 and bool((r == r[0]).all()):
            ctx.skipped["no_variance"] += 1
            continue
        order = sorted(range(k), key=lambda i: -float(r[i]))[: ctx.keep_top]
        for i in order:
            rows.add(g, c.prompt_ids, [c.ids[i]], ref=c.ref[i], reward=float(r[i]))
    return rows


def build_grao(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """GRAO: G samples and the prompt's reference answer scored together; group-normalised
    advantages (``prefkit.losses.grao_advantages``) for the samples and the answer."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    ctx.with_answers(cands)
    rows = Rows(slots=2, prompts=len(prompts))
    for g, (c, r) in enumerate(zip(cands, ctx.scores(cands))):
        samples, answer = r[:k], r[k]
        if bool((samples == samples[0]).all()):
            ctx.skipped["no_variance"] += 1
            continue
        adv, adv_answer = grao_advantages(samples[None].double(), answer[None].double())
        for i in range(k):
            rows.add(g, c.prompt_ids, [c.ids[i], c.ids[k]], advantage=float(adv[0, i]),
                     answer_advantage=float(adv_answer[0, i]), reward=float(samples[i]))
    return rows


def dragon_split(rewards: Sequence[torch.Tensor]) -> list[list[tuple[int, int]]]:
    """DRAGON's positive and negative sets (Bai et al. 2025, arXiv 2504.15217): samples whose reward
    is above the median ``m`` of the whole step's samples are positive, below it negative; samples at
    ``m`` are in neither, unless one side is empty over the whole step (a reward with many ties: the
    median is its lowest or highest value), when they join that side. Within each prompt the best
    positive is paired with the worst negative, the second best with the second worst, and so on,
    keeping only pairs whose rewards differ. ``[(positive, negative), ...]`` per prompt."""
    if not rewards:
        return []
    values = torch.cat([r.float() for r in rewards])
    median = float(values.median())
    above, below = bool((values > median).any()), bool((values < median).any())
    out = []
    for r in rewards:
        r = r.float()
        positive = [i for i in range(len(r)) if r[i] > median or (not above and r[i] == median)]
        negative = [i for i in range(len(r)) if r[i] < median or (not below and r[i] == median)]
        positive.sort(key=lambda i: -float(r[i]))
        negative.sort(key=lambda i: float(r[i]))
        out.append([(i, j) for i, j in zip(positive, negative) if r[i] > r[j]])
    return out


def _dragon_rows(ctx: BuildContext, prompts: Sequence[Text], cands: list[Candidates],
                 rewards: list[torch.Tensor], set_distance: float) -> Rows:
    rows = Rows(slots=2, prompts=len(prompts))
    for g, (c, r, pairs) in enumerate(zip(cands, rewards, dragon_split(rewards))):
        if not pairs:
            ctx.skipped["one_sided"] += 1
            continue
        for i, j in pairs:
            rows.add(g, c.prompt_ids, [c.ids[i], c.ids[j]], label=1.0, ref_1=c.ref[i], ref_2=c.ref[j],
                     reward_1=float(r[i]), reward_2=float(r[j]), set_distance=set_distance)
    return rows


def _set_distance(ctx: BuildContext, cands: Sequence[Candidates]) -> float:
    """The Fréchet distance of the step's samples to the exemplars (NaN without an exemplar judge)."""
    reward = getattr(ctx.judge.model, "reward", None)
    texts = [t for c in cands for t in c.texts]
    if reward is None or not hasattr(reward, "set_distance") or len(texts) < 2:
        return float("nan")
    return float(reward.set_distance(texts))


def build_dragon(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """DRAGON with an instance reward: K on-policy samples per prompt scored by the judge's scalar
    reward (an exemplar judge's similarity to the exemplar centroid, or any reward model), split
    into positive and negative sets (:func:`dragon_split`), a DPO-style contrastive update on the
    (positive, negative) pairs against the reference."""
    cands = ctx.draw(prompts, ctx.recipe.samples_per_prompt, seed)
    ctx.fill_reference(cands)
    return _dragon_rows(ctx, prompts, cands, ctx.scores(cands), _set_distance(ctx, cands))


def build_dragon_fd(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """DRAGON with a distribution-to-distribution reward: each sample's leave-one-out contribution to
    the Fréchet distance between the step's samples and the exemplars (``FD(Y without y) - FD(Y)``,
    ``prefkit.preference.dragon.ExemplarReward.leave_one_out``; positive: y brings the set closer),
    then the same split and update as :func:`build_dragon`."""
    reward = getattr(ctx.judge.model, "reward", None)
    if reward is None or not hasattr(reward, "leave_one_out"):
        raise ValueError(f"dragon_fd scores the set of samples against an exemplar set: give online.judge="
                         f"exemplars:FILE, not {ctx.judge.name!r}")
    cands = ctx.draw(prompts, ctx.recipe.samples_per_prompt, seed)
    ctx.fill_reference(cands)
    texts = [t for c in cands for t in c.texts]
    began = time.perf_counter()
    contribution = torch.from_numpy(reward.leave_one_out(texts)).float()
    distance = float(reward.set_distance(texts))
    ctx.judge.seconds += time.perf_counter() - began
    ctx.judge.reward_evals += len(texts)
    rewards, at = [], 0
    for c in cands:
        rewards.append(contribution[at:at + len(c.texts)])
        at += len(c.texts)
    return _dragon_rows(ctx, prompts, cands, rewards, distance)


# ------------------------------------------------------------------------------------ losses

@dataclass
class Forward:
    """The policy's log-probs of a micro-batch of rows: ``logps[s]``/``lengths[s]`` per slot,
    ``token_kl[s]`` (mean per-token KL to the reference) when the loss asked for it."""

    logps: list[torch.Tensor]
    lengths: list[torch.Tensor]
    values: dict[str, torch.Tensor]
    token_kl: list[torch.Tensor] | None = None


LossResult = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""Per-row loss ``[n]`` and per-row metrics."""


def pairwise_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    fn, kw, v = loss.spec.fn, dict(loss.kwargs), f.values
    c, r = f.logps
    if loss.spec.needs_lengths:
        kw.update(chosen_lengths=f.lengths[0].to(c.dtype), rejected_lengths=f.lengths[1].to(c.dtype))
    per_row = symmetrised(fn, v["label"], c, r, v["ref_1"], v["ref_2"], kw)
    if loss.nll_weight:
        per_row = per_row + loss.nll_weight * (-c / f.lengths[0].to(c.dtype))
    hc, hr = c - v["ref_1"], r - v["ref_2"]
    margin = (hc - hr).detach()
    sign = 2 * v["label"] - 1
    return per_row, {"rewards/margins": loss.beta * margin * sign, "rewards/accuracies": (margin * sign > 0).float(),
                     "kl": 0.5 * (hc + hr).detach()}


def dragon_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    per_row, metrics = pairwise_loss(loss, f)
    v = f.values
    metrics.update({"dragon/reward_positive": v["reward_1"], "dragon/reward_negative": v["reward_2"]})
    if bool(torch.isfinite(v["set_distance"]).all()):
        metrics["dragon/set_distance"] = v["set_distance"]
    return per_row, metrics


def dno_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    c, r = f.logps
    v = f.values
    per_row = loss.spec.fn(c, r, v["ref_1"], v["ref_2"], v["win_1"], v["win_2"], **loss.kwargs)
    return per_row, {"kl": 0.5 * ((c - v["ref_1"]) + (r - v["ref_2"])).detach(),
                     "targets/win_gap": (v["win_1"] - v["win_2"]).abs()}


def win_rate_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    (lp,) = f.logps
    v = f.values
    return loss.spec.fn(lp, v["ref"], v["target"], **loss.kwargs), {"kl": (lp - v["ref"]).detach(),
                                                                   "targets/mean": v["target"]}


def nash_md_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    (lp,) = f.logps
    v = f.values
    return loss.spec.fn(lp, v["ref"], v["preference"], **loss.kwargs), {"kl": (lp - v["ref"]).detach(),
                                                                       "preference": v["preference"]}


def online_ipo_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    a, b = f.logps
    v = f.values
    per_row = loss.spec.fn(a, b, v["ref_1"], v["ref_2"], v["gap"], **loss.kwargs)
    return per_row, {"kl": 0.5 * ((a - v["ref_1"]) + (b - v["ref_2"])).detach(), "targets/gap": v["gap"].abs()}


def p3o_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    a, b = f.logps
    v = f.values
    per_row = loss.spec.fn(a, b, v["old_1"], v["old_2"], v["ref_1"], v["ref_2"], v["reward_1"], v["reward_2"],
                           **loss.kwargs)
    ratio = torch.exp((a - v["old_1"]) - (b - v["old_2"])).detach()
    return per_row, {"kl": 0.5 * ((a - v["ref_1"]) + (b - v["ref_2"])).detach(),
                     "rewards/gap": (v["reward_1"] - v["reward_2"]).abs(), "ratio": ratio}


def filter_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    (lp,) = f.logps
    v = f.values
    token_kl = f.token_kl[0] if f.token_kl is not None else None
    per_row = loss.spec.fn(lp, v["ref"], f.lengths[0], token_kl=token_kl, **loss.kwargs)
    metrics = {"rewards/kept": v["reward"], "kl": (lp - v["ref"]).detach()}
    if token_kl is not None:
        metrics["token_kl"] = token_kl.detach()
    return per_row, metrics


def grao_loss(loss: ResolvedLoss, f: Forward) -> LossResult:
    o, y = f.logps
    v = f.values
    per_row = loss.spec.fn(o, f.lengths[0], y, f.lengths[1], v["advantage"], v["answer_advantage"], **loss.kwargs)
    return per_row, {"advantage/answer": v["answer_advantage"], "logps/answer": (y / f.lengths[1]).detach()}


# ------------------------------------------------------------------------------------ costs

CostFn = Callable[[Recipe, OnlineConfig, bool], tuple[int, int]]
"""``cost(recipe, online, reward_model) -> (pairwise queries, reward evaluations)`` one prompt of
a round costs at most (identical pairs are free); ``reward_model``: the judge is a reward model
used as such (``online.reward=auto`` with a scalar judge)."""


def _all_pairs(k: int) -> int:
    return k * (k - 1) // 2


def pairwise_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    k = recipe.samples_per_prompt
    if k == 2:
        return 1, 0
    if recipe.pairing == "best_worst":
        return (0, k) if reward_model else (_all_pairs(k), 0)
    return (k // 2, 0) if recipe.pairing == "random" else (_all_pairs(k), 0)


def dno_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    return _all_pairs(recipe.samples_per_prompt + (1 if recipe.needs_answers else 0)), 0


def all_pairs_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    return _all_pairs(recipe.samples_per_prompt), 0


def one_per_sample_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    return recipe.samples_per_prompt, 0


def opponents_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    return (2 if recipe.extragradient else 1) * recipe.samples_per_prompt * online.opponents, 0


def scored_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    k = recipe.samples_per_prompt
    return (0, k) if reward_model else (_all_pairs(k), 0)


def reward_per_sample_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    """One reward evaluation per sample (DRAGON's rewards), or all pairs under ``online.reward=win_rate``."""
    k = recipe.samples_per_prompt
    return (0, k) if reward_model else (_all_pairs(k), 0)


def grao_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    k = recipe.samples_per_prompt
    return (0, k + 1) if reward_model else ((k + 1) * k // 2, 0)


def anchored_cost(recipe: Recipe, online: OnlineConfig, reward_model: bool) -> tuple[int, int]:
    return recipe.samples_per_prompt, 0


# ------------------------------------------------------------------------------------ registry

BuildFn = Callable[[BuildContext, Sequence[Text], int], Rows]
ObjectiveLossFn = Callable[[ResolvedLoss, Forward], LossResult]
FinishFn = Callable[[BuildContext, Rows], None]


@dataclass(frozen=True)
class OnlineObjective:
    """One online objective (see the module docstring)."""

    name: str
    build: BuildFn | None
    """``None``: nothing is trained (best-of-n selects at inference)."""
    loss: ObjectiveLossFn | None
    cost: CostFn
    slots: int = 2
    """Responses per training row."""
    min_samples: int = 2
    """Smallest ``online.samples_per_prompt`` the objective can use."""
    values: tuple[str, ...] = ()
    """The row values its build stores and its loss reads."""
    fills: tuple[str, ...] = ()
    """Engine-fed keyword arguments of the registry loss it fills from the batch."""
    even_samples: bool = False
    """Pairs the K samples disjointly (K must be even)."""
    fixed_reference: bool = False
    """Regularises toward the initial policy (``online.ref_update=previous`` is refused)."""
    per_step: bool = False
    """An on-policy gradient that must sample afresh every step (no batched rounds)."""
    takes_teacher: bool = False
    """Accepts ``online.teacher`` (the reference answer as one more candidate)."""
    finish: FinishFn | None = None
    """Called once per round on all its rows (the rollout batch), e.g. to compute advantages."""
    token_level: bool = False
    """Rows carry per-token arrays and the loss is a ``token`` registry loss
    (``prefkit.engine.online.tokens``: PPO, RLOO, GRPO, REINFORCE++); ``loss`` is unused."""


OBJECTIVES: dict[str, OnlineObjective] = {
    "pairwise": OnlineObjective("pairwise", build_pairwise, pairwise_loss, pairwise_cost,
                                values=("label", "ref_1", "ref_2"), fills=("chosen_lengths", "rejected_lengths")),
    "dno": OnlineObjective("dno", build_dno, dno_loss, dno_cost, values=("win_1", "win_2", "ref_1", "ref_2"),
                           takes_teacher=True),
    "win_rate": OnlineObjective("win_rate", build_win_rate, win_rate_loss, all_pairs_cost, slots=1,
                                values=("target", "ref")),
    "nash_md": OnlineObjective("nash_md", build_nash_md, nash_md_loss, one_per_sample_cost, slots=1, min_samples=1,
                               values=("preference", "ref"), per_step=True),
    "online_ipo": OnlineObjective("online_ipo", build_online_ipo, online_ipo_loss, opponents_cost,
                                  values=("gap", "ref_1", "ref_2")),
    "p3o": OnlineObjective("p3o", build_p3o, p3o_loss, scored_cost,
                           values=("old_1", "old_2", "ref_1", "ref_2", "reward_1", "reward_2"), even_samples=True),
    "filter": OnlineObjective("filter", build_filter, filter_loss, scored_cost, slots=1, min_samples=1,
                              values=("ref", "reward"), fills=("lengths", "token_kl"), fixed_reference=True),
    "grao": OnlineObjective("grao", build_grao, grao_loss, grao_cost,
                            values=("advantage", "answer_advantage", "reward"), fills=("lengths", "answer_lengths"),
                            fixed_reference=True),
    "best_of_n": OnlineObjective("best_of_n", None, None, scored_cost, slots=1, min_samples=1),
    "rollout": OnlineObjective("rollout", build_rollout, None, scored_cost, slots=1, min_samples=1,
                               values=("reward",), fixed_reference=True, finish=finish_rollout, token_level=True),
    "anchored": OnlineObjective("anchored", build_anchored, None, anchored_cost, slots=1, min_samples=1,
                                values=("reward",), fixed_reference=True, finish=finish_rollout, token_level=True),
    "dragon": OnlineObjective("dragon", build_dragon, dragon_loss, reward_per_sample_cost,
                              values=("label", "ref_1", "ref_2", "reward_1", "reward_2", "set_distance"),
                              fills=("chosen_lengths", "rejected_lengths"), fixed_reference=True),
    "dragon_fd": OnlineObjective("dragon_fd", build_dragon_fd, dragon_loss, reward_per_sample_cost, min_samples=2,
                                 values=("label", "ref_1", "ref_2", "reward_1", "reward_2", "set_distance"),
                                 fills=("chosen_lengths", "rejected_lengths"), fixed_reference=True),
}


def get_objective(name: str) -> OnlineObjective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown online objective {name!r} (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name]
