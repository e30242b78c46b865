"""The reinforcement-learning baselines in the online engine: rollouts, advantages, token losses.

PPO, pairwise PPO, RLOO, GRPO (and its ``loss_type`` variants BNPO, Dr. GRPO, DAPO) and
REINFORCE++ are ``token`` losses of ``prefkit.losses`` (the calling convention is in
``prefkit/losses/_spec.py``). Here is what the engine feeds them; the formulas live in
``prefkit.losses`` only.

A *rollout batch* is one round of the online step (``prefkit.engine.online.step``): the round
samples all its prompts from the policy at the round's start, then trains ``online.epochs``
passes over them in minibatches of ``online.prompts_per_step`` prompts, each minibatch one
optimizer step (PPO's epochs and minibatches; per-step online is one rollout batch per step).

1. Sampling (no gradients), per batch of prompts (:func:`build_rollout`, :func:`build_anchored`):
   K samples per prompt, one scalar reward each (a reward model's score, the win-rate against
   the prompt's other samples, or for pairwise PPO P(y beats anchor)), and per response token
   the sampling policy's log-probs (teacher-forced, ``prefkit.policy.token_logps``: the chunked
   LM head), the reference's log-probs and, for PPO, the critic's values. They are stored in the
   round's :class:`~prefkit.engine.online.rows.Rows` (``tokens``), so a checkpoint holds them.
2. Once per rollout batch (:func:`finish_rollout`): ``spec.advantage_fn(Rollout(...))`` over the
   whole round (every rank's rows gathered, so batch whitening sees the global batch); the KL
   controller's coefficient goes into the advantages and is then updated with the batch's KL.
3. Per micro-batch (:func:`token_loss`): ``spec.fn(logps, old_logps, ref_logps, advantages,
   mask, **params)`` (+ ``spec.value_fn`` for PPO) on the current policy's log-probs (and the
   critic's values). The driver normalises by the micro-batch *units* that
   :func:`token_units` declares: sequences (``reduction="sequences"``), response tokens
   (``"tokens"``) or one per micro-batch (``"micro_tokens"``, BNPO), which is
   ``prefkit.losses.reduce_to_step`` over the whole optimizer step, across micro-batches and ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefkit.config import LossConfig, OnlineConfig
from prefkit.data.records import Text
from prefkit.engine.methods import Method, Recipe
from prefkit.engine.metrics import MetricSums
from prefkit.engine.online.critic import critic_from_reward_model
from prefkit.engine.online.rows import BuildContext, Rows
from prefkit.errors import InputError
from prefkit.losses import (
    LOSSES,
    PPO_PRESETS,
    AdaptiveKLController,
    FixedKLController,
    LossSpec,
    Rollout,
)
from prefkit.policy import EncodedBatch, Policy, SeparateCritic, SharedCritic, token_logps

KLController = FixedKLController | AdaptiveKLController
Critic = SharedCritic | SeparateCritic
Encoder = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], EncodedBatch]

TOKEN_LOSSES = tuple(name for name, spec in LOSSES.items() if spec.kind == "token")
SCORE_BATCH = 64
"""Sequences per no-grad forward when a rollout is scored."""


# ----------------------------------------------------------------------------- the loss settings

@dataclass(frozen=True)
class TokenLoss:
    """A ``token`` registry loss with its settings sorted by the function that takes them."""

    spec: LossSpec
    fn: dict[str, Any]
    advantage: dict[str, Any]
    value: dict[str, Any]
    engine: dict[str, Any]
    """``spec.engine_params`` the engine supplies (``max_completion_length`` for Dr. GRPO)."""

    @property
    def kl_in_reward(self) -> bool:
        """Whether the advantages take a ``kl_coef`` (the KL penalty in the reward)."""
        return "kl_coef" in self.spec.all_defaults.get("advantage_fn", {})

    @property
    def strength(self) -> float:
        """The value of the spec's ``strength_arg`` (what ``loss.beta`` sets), for the metrics."""
        name = self.spec.strength_arg
        if name is None:
            return 0.0
        for part, values in (("fn", self.fn), ("advantage_fn", self.advantage), ("value_fn", self.value)):
            if name in values:
                return float(values[name])
            if name in self.spec.all_defaults.get(part, {}):
                return float(self.spec.all_defaults[part][name] or 0.0)
        return 0.0


def resolve_token_loss(method: Method, cfg: LossConfig, online: OnlineConfig) -> TokenLoss:
    """The method's ``token`` loss with ``loss.*`` (and ``online.preset``) applied and checked."""
    name = cfg.name or method.loss or ""
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r} (known: {', '.join(sorted(LOSSES))})")
    spec = LOSSES[name]
    if spec.kind != "token":
        raise ValueError(f"loss.name={name} is a {spec.kind} loss; {method.name} trains a token-level "
                         f"reinforcement-learning loss ({', '.join(TOKEN_LOSSES)})")
    if cfg.weights:
        raise ValueError(f"loss.weights combines pairwise losses; {method.name} takes one token loss")
    if cfg.nll_weight:
        raise ValueError(f"loss.nll_weight adds an NLL term to pairwise losses; {method.name} has none")
    params: dict[str, Any] = {}
    if online.preset is not None:
        if spec.value_fn is None:
            raise ValueError(f"online.preset={online.preset} holds AlpacaFarm's PPO settings; loss {name} is "
                             "not PPO (use --method ppo or pairwise_ppo)")
        params.update(PPO_PRESETS[online.preset])
    params.update(method.loss_params)
    params.update(cfg.params)
    if cfg.beta is not None and spec.strength_arg is not None:
        if cfg.beta < 0:
            raise ValueError(f"loss.beta must be >= 0, got {cfg.beta}")
        params[spec.strength_arg] = cfg.beta
    parts = spec.split_params(params)
    if float(parts["fn"].get("entropy_coef", 0.0)) > 0:
        raise ValueError("loss.params.entropy_coef > 0: the online engine does not compute per-token entropies "
                         "(they need the full-vocabulary distribution at every token); leave entropy_coef at 0")
    engine: dict[str, Any] = {}
    for key in spec.engine_params:
        if key == "max_completion_length":
            engine[key] = online.max_new_tokens
        elif key != "entropies":  # entropies are only read when entropy_coef > 0 (refused above)
            raise ValueError(f"{name}: the online engine cannot supply {key!r}")
    return TokenLoss(spec, parts["fn"], parts.get("advantage_fn", {}), parts.get("value_fn", {}), engine)


def check_token_recipe(name: str, loss: TokenLoss, recipe: Recipe, online: OnlineConfig) -> None:
    """The method's recipe fits its loss: enough samples per prompt, a critic iff a value loss."""
    spec = loss.spec
    k = recipe.samples_per_prompt
    if (spec.value_fn is None) != (recipe.critic is None):
        what = "trains a critic" if recipe.critic is not None else "has no critic"
        has = "has no value loss" if spec.value_fn is None else "needs a critic"
        raise ValueError(f"{name} {what} and loss {spec.name} {has}; pick a loss of the method's family")
    if k < spec.min_samples_per_prompt:
        raise ValueError(f"{name} ({spec.name}) normalises over the K samples of a prompt: "
                         f"online.samples_per_prompt must be >= {spec.min_samples_per_prompt}, got {k}")
    if loss.advantage.get("baseline") == "group_mean" and k < 2:
        raise ValueError("loss.params.baseline=group_mean subtracts each prompt's mean reward: "
                         f"online.samples_per_prompt must be >= 2, got {k}")
    if online.kl_target is not None and not loss.kl_in_reward:
        raise ValueError(f"online.kl_target adapts the KL penalty in the reward; {spec.name} puts its KL in the "
                         "loss (loss.beta), so there is nothing to adapt")


def kl_controller(loss: TokenLoss, online: OnlineConfig) -> KLController | None:
    """The KL coefficient of the reward (fixed, or adaptive with ``online.kl_target``)."""
    if not loss.kl_in_reward:
        return None
    coef = float(loss.advantage.get("kl_coef", loss.spec.all_defaults["advantage_fn"]["kl_coef"]))
    if online.kl_target is None:
        return FixedKLController(coef)
    if coef <= 0:
        raise ValueError("online.kl_target adapts a positive KL coefficient: set loss.beta > 0 (its start)")
    return AdaptiveKLController(coef, online.kl_target, online.kl_horizon)


# ----------------------------------------------------------------------------- the critic

class ActorCritic(nn.Module):
    """The policy and its critic as one module, so the run driver optimises, clips and
    checkpoints both (``policy.*`` and ``critic.*`` parameters). ``forward(batch)`` returns the
    per-token log-probs and values ``[B, T]``: one policy forward for a shared critic."""

    def __init__(self, policy: nn.Module, critic: Critic) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic
        tied = getattr(policy, "_tied_weights_keys", None) or []
        self._tied_weights_keys = [f"policy.{key}" for key in tied]

    def forward(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.critic, SharedCritic):
            return self.critic.logps_and_values(batch)
        return token_logps(self.policy, batch), self.critic.values(batch)


def build_critic(kind: str, policy: Policy, online: OnlineConfig, device: torch.device) -> Critic:
    """The value model ``online.critic`` names (see ``OnlineConfig.critic``)."""
    try:
        if kind == "shared":
            return SharedCritic(policy.model).to(device)
        if online.critic_model is not None:
            from prefkit.preference.io import MANIFEST

            root = Path(online.critic_model)
            if (root / MANIFEST).is_file() or (root / "model" / MANIFEST).is_file():
                return critic_from_reward_model(root, tokenizer=policy.tokenizer, device=device)
            critic = SeparateCritic.from_pretrained(root, device=device)
            if critic.tokenizer is None or critic.tokenizer.get_vocab() != policy.tokenizer.get_vocab():
                raise InputError("a critic reads the policy's token ids, so its checkpoint must carry the policy's "
                                 "tokenizer (vocabulary); this one " + ("has none" if critic.tokenizer is None
                                                                        else "has another"),
                                 file=str(root), field="online.critic_model")
            return critic
        return SeparateCritic.from_policy(policy.model, tokenizer=policy.tokenizer).to(device)
    except InputError as error:
        if error.field == "online.critic_model":
            raise
        if online.critic_model is not None:
            raise InputError(f"online.critic_model: {error.reason}", file=error.file,
                             field="online.critic_model") from error
        raise InputError(f"online.critic={kind}: {error}; a value head needs a Hugging Face causal LM whose base "
                         "transformer returns hidden states", field="online.critic") from error


# ----------------------------------------------------------------------------- rollouts

@dataclass
class RolloutSetup:
    """What the rollout builds and the token loss need besides the ``BuildContext``."""

    loss: TokenLoss
    encode: Encoder
    """The training encoding of (prompt ids, response ids): the same rows at sampling and update."""
    device: torch.device
    critic: Critic | None = None
    controller: KLController | None = None
    gather: Callable[[Any], list[Any]] = lambda value: [value]
    """All ranks' values (``RunSession.gather_objects``)."""
    rank: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"kl_controller": self.controller.state_dict() if self.controller is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.controller is not None and state.get("kl_controller") is not None:
            self.controller.load_state_dict(state["kl_controller"])


def response_positions(batch: EncodedBatch) -> torch.Tensor:
    """The per-token mask of the ``token`` losses: ``response_mask`` without position 0 (the
    alignment of ``token_logps`` and of the critic's values)."""
    mask = batch.response_mask.clone()
    mask[:, 0] = False
    return mask


def _split_rows(values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    return [row[m].tolist() for row, m in zip(values.detach().cpu(), mask.cpu())]


@torch.no_grad()
def score_tokens(ctx: BuildContext, rows: Rows) -> None:
    """Per-token sampling-time log-probs of the policy (``old_logps``), of the reference
    (``ref_logps``) and the critic's values (``old_values``) of every row, teacher-forced."""
    setup = ctx.rollout
    assert setup is not None
    names = ["old_logps", "ref_logps"] + (["old_values"] if setup.critic is not None else [])
    for name in names:
        rows.tokens[name] = []
    for start in range(0, len(rows), SCORE_BATCH):
        index = range(start, min(start + SCORE_BATCH, len(rows)))
        batch = setup.encode([rows.prompt_ids[i] for i in index], [rows.responses[i][0] for i in index])
        batch = batch.to(setup.device)
        mask = response_positions(batch)
        rows.tokens["old_logps"] += _split_rows(token_logps(ctx.policy.model, batch), mask)
        rows.tokens["ref_logps"] += _split_rows(token_logps(ctx.reference.model, batch), mask)
        if setup.critic is not None:
            rows.tokens["old_values"] += _split_rows(setup.critic.values(batch), mask)


def build_rollout(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """PPO, RLOO, GRPO, REINFORCE++: K on-policy samples per prompt with one scalar reward each
    (the judge's reward model, or with ``online.reward=win_rate`` the win-rate against the
    prompt's other samples), rows prompt-major in groups of K, then :func:`score_tokens`."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    rows = Rows(slots=1, prompts=len(prompts))
    for g, (c, r) in enumerate(zip(cands, ctx.scores(cands))):
        for i in range(k):
            rows.add(g, c.prompt_ids, [c.ids[i]], reward=float(r[i]))
    score_tokens(ctx, rows)
    return rows


def build_anchored(ctx: BuildContext, prompts: Sequence[Text], seed: int) -> Rows:
    """Pairwise PPO (Xu et al. 2025, Pairwise-RL, arXiv 2504.04950): K on-policy samples per
    prompt, each judged against the prompt's anchor (one sample of the reference policy, or the
    reference answer); the reward is ``P(y beats anchor)`` (K comparisons per prompt, a sample
    identical to its anchor is 1/2 without a query)."""
    k = ctx.recipe.samples_per_prompt
    cands = ctx.draw(prompts, k, seed)
    if ctx.recipe.anchor == "answer":
        if ctx.answer_of is None:
            raise ValueError("online.anchor=answer needs reference answers (online.answers, or a world)")
        anchors = [ctx.answer_of(c.prompt) for c in cands]
    else:
        drawn = ctx.sampler.sample(prompts, 1, seed=seed + 1, policy=ctx.reference)
        anchors = [texts[0] for texts in drawn.texts]
    flat_p = [c.prompt for c in cands for _ in range(k)]
    flat_y = [y for c in cands for y in c.texts]
    flat_a = [a for a in anchors for _ in range(k)]
    prefs = ctx.judge.compare(flat_p, flat_y, flat_a).view(len(cands), k)
    rows = Rows(slots=1, prompts=len(prompts))
    for g, c in enumerate(cands):
        for i in range(k):
            rows.add(g, c.prompt_ids, [c.ids[i]], reward=float(prefs[g, i]))
    score_tokens(ctx, rows)
    return rows


def _padded(arrays: Sequence[Sequence[float]], width: int) -> torch.Tensor:
    out = torch.zeros(len(arrays), width, dtype=torch.float64)
    for i, row in enumerate(arrays):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.float64)
    return out


def finish_rollout(ctx: BuildContext, rows: Rows) -> None:
    """Advantages (and PPO's returns) of the whole rollout batch, once: ``spec.advantage_fn`` on
    every rank's rows (gathered in rank order; each rank keeps its own), with the KL
    controller's coefficient, which is then updated with the batch's mean sequence KL."""
    setup = ctx.rollout
    assert setup is not None
    k = ctx.recipe.samples_per_prompt
    names = [n for n in ("old_logps", "ref_logps", "old_values") if n in rows.tokens]
    local = {"reward": rows.values.get("reward", []), **{n: rows.tokens[n] for n in names}}
    parts = setup.gather(local)
    sizes = [len(p["reward"]) for p in parts]
    merged = {key: [x for p in parts for x in p[key]] for key in local}
    if not merged["reward"]:
        return
    lengths = [len(x) for x in merged["old_logps"]]
    width = max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    tensors = {n: _padded(merged[n], width) for n in names}
    rewards = torch.tensor(merged["reward"], dtype=torch.float64)
    rollout = Rollout(rewards, mask, tensors["old_logps"], tensors["ref_logps"], tensors.get("old_values"),
                      group_size=k)
    params = dict(setup.loss.advantage)
    if setup.controller is not None:
        params["kl_coef"] = setup.controller.value
    adv = setup.loss.spec.advantage_fn(rollout, **params)  # type: ignore[misc]
    start = sum(sizes[:setup.rank])
    mine = slice(start, start + sizes[setup.rank])
    if adv.advantages.dim() == 1:
        rows.values["advantage"] = adv.advantages[mine].tolist()
    else:
        rows.tokens["advantages"] = _split_rows(adv.advantages[mine], mask[mine])
    if adv.returns is not None:
        rows.tokens["returns"] = _split_rows(adv.returns[mine], mask[mine])
    if setup.controller is not None:
        rows.values["kl_coef"] = [setup.controller.value] * len(rows)
        kl = float(((tensors["old_logps"] - tensors["ref_logps"]) * mask).sum(dim=1).mean())
        setup.controller.update(kl, len(merged["reward"]))


# ----------------------------------------------------------------------------- the update

def token_units(loss: TokenLoss, rows: Rows, index: Sequence[int]) -> float:
    """The driver's normaliser share of a micro-batch for ``spec.reduction``: its sequences,
    its response tokens, or 1 (``micro_tokens``: the loss is already a per-micro-batch mean)."""
    reduction = loss.spec.reduction
    if reduction == "sequences":
        return float(len(index))
    if reduction == "tokens":
        return float(sum(len(rows.tokens["old_logps"][i]) for i in index))
    return 1.0


def _placed(arrays: Sequence[Sequence[float]], mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    counts = mask.sum(dim=1).tolist()
    if [len(a) for a in arrays] != counts:
        raise RuntimeError("a row's stored per-token values do not match its encoded response tokens "
                           f"({[len(a) for a in arrays]} vs {counts})")
    flat = torch.tensor([x for a in arrays for x in a], dtype=dtype, device=mask.device)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_scatter(mask, flat)


def token_loss(loss: TokenLoss, setup: RolloutSetup, model: nn.Module, rows: Rows,
               index: Sequence[int]) -> tuple[torch.Tensor, MetricSums, int]:
    """A micro-batch's summed loss (see :func:`token_units`), metrics and forward tokens."""
    spec = loss.spec
    batch = setup.encode([rows.prompt_ids[i] for i in index], [rows.responses[i][0] for i in index])
    batch = batch.to(setup.device)
    values = None
    if setup.critic is not None:
        logps, values = model(batch)
    else:
        logps = token_logps(model, batch)
    mask = response_positions(batch).to(logps.device)
    dtype = logps.dtype

    def placed(name: str) -> torch.Tensor:
        return _placed([rows.tokens[name][i] for i in index], mask, dtype)

    old, ref = placed("old_logps"), placed("ref_logps")
    if "advantage" in rows.values:
        advantages = torch.tensor([rows.values["advantage"][i] for i in index], dtype=dtype, device=mask.device)
    else:
        advantages = placed("advantages")
    per_seq = spec.fn(logps, old, ref, advantages, mask, **loss.fn, **loss.engine)
    metrics = MetricSums()
    if spec.value_fn is not None:
        assert values is not None
        value_loss = spec.value_fn(values, placed("old_values").to(values.dtype), placed("returns").to(values.dtype),
                                   mask, **loss.value)
        per_seq = per_seq + value_loss
        metrics.add("value_loss", value_loss / mask.sum(dim=1))
        metrics.add("values", values.detach()[mask])
    if spec.reduction == "micro_tokens":
        total = per_seq.sum() / mask.sum().clamp(min=1)
    else:
        total = per_seq.sum()
    rewards = torch.tensor([rows.values["reward"][i] for i in index])
    metrics.add("rewards/mean", rewards)
    metrics.add("kl", ((logps.detach() - ref) * mask).sum(dim=1))
    metrics.add("ratio", torch.exp(logps.detach() - old)[mask])
    if advantages.dim() == 2:
        metrics.add("advantage", advantages[mask])
    else:
        metrics.add("advantage", advantages)
    if "kl_coef" in rows.values:
        metrics.add("kl_coef", torch.tensor([rows.values["kl_coef"][i] for i in index]))
    return total, metrics, int(batch.attention_mask.sum())


def token_empty_loss(setup: RolloutSetup, model: nn.Module, eos: int) -> torch.Tensor:
    """A zero loss through ``model`` for a rank with no rows (data parallelism needs a backward)."""
    batch = setup.encode([[eos]], [[eos]]).to(setup.device)
    if setup.critic is not None:
        logps, values = model(batch)
        return (logps.sum() + values.sum()) * 0.0
    return token_logps(model, batch).sum() * 0.0
