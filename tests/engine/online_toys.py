"""Toys for the online-engine tests: a one-token policy over N actions and matrix judges.

``one_token_policy`` is a real ``prefkit.policy.Policy`` (word tokenizer, ``Policy.sample``,
``sequence_logps``) whose model ignores its input and returns the same logits at every
position: free parameters ``theta`` on the N action tokens, ``-inf`` on every other token.
With ``max_new_tokens=1`` a response is one action and ``log pi(a_i) = log softmax(theta)_i``,
i.e. the tabular softmax policy of ``prefkit.games``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast

from prefkit.config import RunConfig, load
from prefkit.policy import Policy, use_full_forward
from prefkit.policy.tokenizer import fit_word_tokenizer

PROMPT = "x"


class OneHotBackbone(nn.Module):
    """A base transformer for a value head: the hidden state at each position is the one-hot
    vector of its token (a frozen identity embedding), so a linear head is a tabular critic
    ``V(last token)``."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, vocab_size)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(vocab_size))
        self.embed.weight.requires_grad_(False)
        self.config = SimpleNamespace(hidden_size=vocab_size)

    def forward(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        return BaseModelOutput(last_hidden_state=self.embed(input_ids))

    def save_pretrained(self, directory, safe_serialization=True) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, f"{directory}/model.safetensors")


class OneTokenLM(nn.Module):
    """Logits ``theta`` on the action tokens (``-inf`` elsewhere) at every position, except that
    after an action the end-of-sequence token is certain: ``log pi(a_i [eos]) = log pi(a_i)``.
    With ``backbone=True`` it has a ``OneHotBackbone`` (``base_model_prefix = "model"``) that its
    forward runs, so a value head can read hidden states (the logits do not depend on it)."""

    def __init__(self, vocab_size: int, action_ids: Sequence[int], logits: Sequence[float], eos_id: int,
                 backbone: bool = False) -> None:
        super().__init__()
        self.eos_id = eos_id
        if backbone:
            self.base_model_prefix = "model"
            self.model = OneHotBackbone(vocab_size)
        theta = torch.zeros(vocab_size, dtype=torch.float64)
        theta[list(action_ids)] = torch.as_tensor(np.asarray(logits, dtype=np.float64))
        self.theta = nn.Parameter(theta)
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[list(action_ids)] = True
        self.register_buffer("mask", mask)
        self.action_ids = list(action_ids)
        self.config = SimpleNamespace(vocab_size=vocab_size, max_position_embeddings=64)
        use_full_forward(self)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, **kwargs):
        if hasattr(self, "model"):
            self.model(input_ids)
        choose = self.theta.masked_fill(~self.mask, float("-inf"))
        stop = torch.full_like(choose, float("-inf"))
        stop[self.eos_id] = 0.0
        after_action = self.mask[input_ids] & (input_ids != self.eos_id)
        logits = torch.where(after_action[..., None], stop, choose)
        return CausalLMOutputWithPast(logits=logits)

    def get_output_embeddings(self):
        return None

    def __setstate__(self, state):  # a deep copy (frozen reference) is also scored by full forward
        super().__setstate__(state)
        use_full_forward(self)

    def save_pretrained(self, directory) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, f"{directory}/model.safetensors")

    def probs(self) -> np.ndarray:
        """The policy over the actions (and eos when it is one), ``[N]``."""
        return torch.softmax(self.theta.detach()[self.action_ids], dim=0).numpy()


def action_names(n: int) -> list[str]:
    return [f"a{i}" for i in range(n)]


def one_token_policy(logits: Sequence[float], *, prompts: Sequence[str] = (PROMPT,),
                     eos_logit: float | None = None, backbone: bool = False) -> Policy:
    """The one-token policy with ``logits`` on actions ``a0..a{N-1}``; with ``eos_logit`` the
    end-of-sequence token is one more choice (its response is empty); ``backbone``: with hidden
    states for a value head (PPO)."""
    names = action_names(len(logits))
    tokenizer = fit_word_tokenizer([" ".join([*prompts, *names])], max_vocab=64)
    ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
    if eos_logit is not None:
        ids, logits = [*ids, tokenizer.eos_token_id], [*logits, eos_logit]
    return Policy(OneTokenLM(len(tokenizer), ids, logits, tokenizer.eos_token_id, backbone), tokenizer)


class MatrixJudge:
    """``P(a beats b) = P[a, b]`` for action names; counts calls (a ``PreferenceModel``)."""

    def __init__(self, P: np.ndarray) -> None:
        self.P = np.asarray(P, dtype=np.float64)
        self.index = {name: i for i, name in enumerate(action_names(len(self.P)))}
        self.calls = 0

    def prob(self, prompts, a, b) -> torch.Tensor:
        self.calls += 1
        return torch.tensor([self.P[self.index[x], self.index[y]] for x, y in zip(a, b)], dtype=torch.float32)


class RewardJudge:
    """A scalar reward per action (a Bradley-Terry reward model: ``embed`` is ``[N, 1]``), plus an
    optional per-prompt shift ``delta[prompt]`` added to every reward of that prompt; ``empty``:
    the reward of the empty response (a policy with ``eos_logit``)."""

    def __init__(self, rewards: Sequence[float], delta: dict[str, float] | None = None,
                 empty: float | None = None) -> None:
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.index = {name: i for i, name in enumerate(action_names(len(self.rewards)))}
        if empty is not None:
            self.rewards = np.append(self.rewards, empty)
            self.index[""] = len(self.rewards) - 1
        self.delta = delta or {}

    def embed(self, prompts, responses) -> torch.Tensor:
        values = [self.rewards[self.index[y]] + self.delta.get(p, 0.0) for p, y in zip(prompts, responses)]
        return torch.tensor(values, dtype=torch.float64)[:, None]

    def prob_from_embeddings(self, e_a, e_b) -> torch.Tensor:
        return torch.sigmoid(e_a[:, 0] - e_b[:, 0]).float()

    def prob(self, prompts, a, b) -> torch.Tensor:
        return self.prob_from_embeddings(self.embed(prompts, a), self.embed(prompts, b))


def random_game(n: int, seed: int) -> np.ndarray:
    """``P[i, j] ~ U(0, 1)`` below the diagonal, ``P + P.T = 1`` (the EGPO experiments' games)."""
    rng = np.random.default_rng(seed)
    P = np.full((n, n), 0.5)
    for i in range(n):
        for j in range(i):
            P[i, j] = rng.uniform()
            P[j, i] = 1 - P[i, j]
    return P


def toy_config(tmp_path, method: str, *overrides: str) -> RunConfig:
    return load(RunConfig, None, [
        f"method={method}", f"out={tmp_path / 'run'}", "train.steps=4", "train.max_length=16",
        "train.max_grad_norm=null", "train.log_every=1", "online.max_new_tokens=1", *overrides,
    ])
