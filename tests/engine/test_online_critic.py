"""A PPO critic started from a saved Bradley-Terry reward model
(``prefkit.engine.online.critic``): weights taken over, refusals, and the engine's wiring."""

from __future__ import annotations

import pytest
import torch

from prefkit.config import OnlineConfig
from prefkit.engine.online.critic import critic_from_reward_model
from prefkit.engine.online.tokens import build_critic
from prefkit.errors import InputError
from prefkit.policy import Policy, SeparateCritic
from prefkit.preference import build_head, build_model, save_preference_model, tiny_backbone
from tests.policy.conftest import TEXTS, TINY


@pytest.fixture
def fresh() -> Policy:
    return Policy.tiny(TEXTS, TINY, seed=0)


def make_reward_model(texts, kind="bt"):
    """A tiny reward model on a backbone whose tokenizer is trained on ``texts``; a ``bt`` head
    gets a non-zero weight so a copied head is visible."""
    backbone = tiny_backbone(texts, TINY, seed=0)
    head = build_head(kind, backbone.hidden_size)
    if kind == "bt":
        with torch.no_grad():
            head.linear.weight.copy_(torch.linspace(-1, 1, backbone.hidden_size)[None])
    return build_model(kind, backbone, head)


def test_a_separate_critic_initialised_from_a_bt_reward_model(fresh, tmp_path):
    rm = make_reward_model(TEXTS)
    save_preference_model(rm, tmp_path / "rm")
    critic = critic_from_reward_model(tmp_path / "rm", tokenizer=fresh.tokenizer)
    assert isinstance(critic, SeparateCritic)
    torch.testing.assert_close(critic.head.linear.weight, rm.head.linear.weight)
    assert float(critic.head.linear.bias.detach()) == 0.0
    torch.testing.assert_close(
        critic.backbone.embed_tokens.weight, rm.backbone.model.embed_tokens.weight
    )
    values = critic.values(fresh.encode(["the cat"], ["sat on the mat ."], max_length=32))
    assert values.abs().sum() > 0


def test_a_reward_model_with_another_vocabulary_or_kind_is_refused(fresh, tmp_path):
    save_preference_model(make_reward_model(["completely different words here"]), tmp_path / "rm")
    with pytest.raises(InputError, match="tokenizer differs from the policy's"):
        critic_from_reward_model(tmp_path / "rm", tokenizer=fresh.tokenizer)
    save_preference_model(make_reward_model(TEXTS, kind="gpm"), tmp_path / "gpm")
    with pytest.raises(InputError, match=r"Bradley-Terry .* not a 'gpm' one"):
        critic_from_reward_model(tmp_path / "gpm", tokenizer=fresh.tokenizer)


def test_online_critic_model_naming_a_reward_model_run_starts_from_it(fresh, tmp_path):
    rm = make_reward_model(TEXTS)
    save_preference_model(rm, tmp_path / "run" / "model")  # a run directory holds RUN/model
    online = OnlineConfig(critic="separate", critic_model=str(tmp_path / "run"))
    critic = build_critic("separate", fresh, online, torch.device("cpu"))
    torch.testing.assert_close(critic.head.linear.weight, rm.head.linear.weight)
    save_preference_model(make_reward_model(TEXTS, kind="gpm"), tmp_path / "gpm")
    with pytest.raises(InputError, match=r"online\.critic_model: .*not a 'gpm' one"):
        build_critic("separate", fresh, OnlineConfig(critic="separate", critic_model=str(tmp_path / "gpm")),
                     torch.device("cpu"))
