"""Value heads: alignment with the log-probs, shared vs separate, gradient flow, save/load
round trips, bad models. (Starting a critic from a reward model: tests/engine/test_online_critic.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prefkit.errors import InputError
from prefkit.losses import ppo_value
from prefkit.policy import (
    Policy,
    SeparateCritic,
    SharedCritic,
    ValueHead,
    load_critic,
    save_critic,
    token_logps,
)
from tests.policy.conftest import TEXTS, TINY

PROMPTS = ["the cat", "hello world ,"]
RESPONSES = ["sat on the mat .", "how are you"]


@pytest.fixture
def fresh() -> Policy:
    return Policy.tiny(TEXTS, TINY, seed=0)


def batch(policy: Policy):
    return policy.encode(PROMPTS, RESPONSES, max_length=32)


def randomised(head: ValueHead, seed: int = 0) -> ValueHead:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.linear.weight.copy_(torch.randn(head.linear.weight.shape, generator=g))
        head.linear.bias.fill_(0.3)
    return head


def test_a_fresh_head_predicts_zero(fresh):
    values = SharedCritic(fresh.model).values(batch(fresh))
    assert values.shape == batch(fresh).input_ids.shape and bool((values == 0).all())


def test_values_are_read_from_the_hidden_state_before_each_response_token(fresh):
    b = batch(fresh)
    critic = SharedCritic(fresh.model, randomised(ValueHead(TINY.hidden_size)))
    logps, values = critic.logps_and_values(b)
    torch.testing.assert_close(logps, token_logps(fresh.model, b))
    hidden = fresh.model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                         output_hidden_states=True).hidden_states[-1]  # fmt: skip
    raw = critic.head(hidden)
    target = b.response_mask.clone()
    target[:, 0] = False
    for i, j in target.nonzero().tolist():
        torch.testing.assert_close(values[i, j], raw[i, j - 1])
    assert bool((values[~target] == 0).all())
    torch.testing.assert_close(critic.values(b), values)
    logits, per_position = critic(b.input_ids, b.attention_mask)
    assert logits.shape[:2] == b.input_ids.shape
    torch.testing.assert_close(per_position, raw)


def test_shared_and_separate_critics_agree_until_trained(fresh):
    b = batch(fresh)
    head = randomised(ValueHead(TINY.hidden_size))
    shared = SharedCritic(fresh.model, head)
    separate = SeparateCritic.from_policy(fresh.model)
    separate.head.load_state_dict(head.state_dict())
    torch.testing.assert_close(separate.values(b), shared.values(b))
    # the separate critic owns a copy: its weights are not the policy's
    policy_params = {id(p) for p in fresh.model.parameters()}
    assert not policy_params & {id(p) for p in separate.parameters()}
    assert {id(p) for p in shared.parameters()} == {id(p) for p in head.parameters()}


def test_gradients_flow_to_the_head_and_shared_backbone_only_where_they_should(fresh):
    b = batch(fresh)
    mask = b.response_mask.clone()
    mask[:, 0] = False
    shared = SharedCritic(fresh.model, randomised(ValueHead(TINY.hidden_size)))
    values = shared.values(b)
    returns = torch.ones_like(values)
    ppo_value(values, values.detach() + 0.1, returns, mask).sum().backward()
    assert shared.head.linear.weight.grad.abs().sum() > 0
    assert fresh.model.model.embed_tokens.weight.grad.abs().sum() > 0  # shared backbone learns
    fresh.model.zero_grad(set_to_none=True)
    separate = SeparateCritic.from_policy(fresh.model)
    randomised(separate.head)
    values = separate.values(b)
    ppo_value(values, values.detach(), returns, mask).sum().backward()
    assert separate.backbone.embed_tokens.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in fresh.model.parameters())


@pytest.mark.parametrize("kind", ["separate", "shared"])
def test_save_load_round_trip(fresh, tmp_path, kind):
    b = batch(fresh)
    critic = (SharedCritic(fresh.model) if kind == "shared"
              else SeparateCritic.from_policy(fresh.model, tokenizer=fresh.tokenizer))  # fmt: skip
    randomised(critic.head, seed=3)
    before = critic.values(b).detach()
    save_critic(critic, tmp_path / "critic")
    manifest = json.loads((tmp_path / "critic" / "value_model.json").read_text())
    assert manifest["kind"] == kind and manifest["hidden_size"] == TINY.hidden_size
    files = {p.name for p in (tmp_path / "critic").iterdir()}
    assert "value_head.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    loaded = load_critic(tmp_path / "critic", policy_model=fresh.model)
    assert type(loaded) is type(critic)
    torch.testing.assert_close(loaded.values(b), before)


def test_a_separate_critic_from_a_causal_lm_checkpoint(fresh, tmp_path):
    fresh.save(tmp_path / "policy")
    critic = SeparateCritic.from_pretrained(tmp_path / "policy")
    reference = SeparateCritic.from_policy(fresh.model)
    torch.testing.assert_close(critic.values(batch(fresh)), reference.values(batch(fresh)))
    torch.testing.assert_close(
        critic.backbone.embed_tokens.weight, fresh.model.model.embed_tokens.weight
    )


class LogitsOnly(nn.Module):
    """A model without a base transformer or hidden states (it returns a bare tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.config = type("Config", (), {"hidden_size": 4})()

    def forward(self, input_ids, attention_mask=None, **_):
        return self.linear(torch.zeros(*input_ids.shape, 4))


def test_models_without_hidden_states_are_refused(fresh):
    with pytest.raises(InputError, match="LogitsOnly has no base transformer"):
        SharedCritic(LogitsOnly())
    with pytest.raises(InputError, match="LogitsOnly returned no hidden states"):
        SeparateCritic(LogitsOnly()).values(batch(fresh))


def test_bad_directories_and_heads_are_refused(fresh, tmp_path):
    with pytest.raises(InputError, match=r"no value_model\.json"):
        load_critic(tmp_path)
    save_critic(SharedCritic(fresh.model), tmp_path / "shared")
    with pytest.raises(InputError, match="pass policy_model"):
        load_critic(tmp_path / "shared")
    with pytest.raises(ValueError, match="expects hidden size 8"):
        SharedCritic(fresh.model, ValueHead(8))
    with pytest.raises(ValueError, match="hidden states have size 32, the value head expects 8"):
        ValueHead(8)(torch.zeros(2, 32))
    with pytest.raises(ValueError, match="packed"):
        SharedCritic(fresh.model).values(batch(fresh).pack())
