"""The PreferenceModel contract of bt/gpm/pairpm: symmetry, batching, eval mode, K-response paths."""

from __future__ import annotations

import pytest
import torch

from prefkit.preference import (
    PreferenceModel,
    ScoringPreferenceModel,
    WorldJudge,
    preference_matrix,
    rank,
)
from prefkit.preference.models import PairwisePreferenceModel
from tests.preference.conftest import make_model

PROMPTS = ["what is the sky", "tell me a joke", "hello there"]
A = ["the sky is blue", "a funny joke", "hello"]
B = ["the sky is green", "no joke", "there"]


@pytest.fixture(scope="module", params=["bt", "gpm", "pairpm"])
def model(request):
    torch.manual_seed(1)
    m = make_model(request.param, seed=3, dim=4, dropout=0.2) if request.param == "gpm" else make_model(
        request.param, seed=3, dropout=0.2)
    # At initialisation attention is nearly uniform (order-blind) and the head nearly silent;
    # sharpen both so that probabilities, and a pairwise model's two orders, differ.
    with torch.no_grad():
        m.head.linear.weight.mul_({"bt": 20, "gpm": 5, "pairpm": 2}[m.kind])
        for name, param in m.backbone.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                param.mul_(5)
    return m


def test_interface(model):
    assert isinstance(model, PreferenceModel)
    assert isinstance(model, ScoringPreferenceModel) == (model.kind != "pairpm")


def test_probabilities_are_complementary_and_half_on_identical(model):
    p_ab = model.prob(PROMPTS, A, B)
    p_ba = model.prob(PROMPTS, B, A)
    torch.testing.assert_close(p_ab + p_ba, torch.ones(3))
    assert torch.equal(model.prob(PROMPTS, A, A), torch.full((3,), 0.5))
    assert (p_ab - 0.5).abs().max() > 1e-3  # not trivially 1/2
    assert p_ab.dtype == torch.float32 and p_ab.device.type == "cpu"


def test_batch_size_does_not_change_answers(model):
    # padding differs between the two (rows alone vs. padded together): float32 noise only
    torch.testing.assert_close(model.prob(PROMPTS, A, B, batch_size=1), model.prob(PROMPTS, A, B, batch_size=64),
                               rtol=1e-4, atol=1e-4)


def test_inference_is_deterministic_gradient_free_and_restores_mode(model):
    model.train()
    first = model.prob(PROMPTS, A, B)
    assert torch.equal(first, model.prob(PROMPTS, A, B))  # dropout off
    assert not first.requires_grad
    assert model.training and model.head.dropout.training
    model.eval()


def test_embedding_models_score_pairs_from_embeddings(model):
    if model.kind == "pairpm":
        pytest.skip("pairwise models have no per-response embedding")
    e_a, e_b = model.embed(PROMPTS, A), model.embed(PROMPTS, B)
    torch.testing.assert_close(model.prob_from_embeddings(e_a, e_b), model.prob(PROMPTS, A, B))
    if model.kind == "bt":
        torch.testing.assert_close(model.score(PROMPTS, A), e_a[:, 0])


def test_preference_matrix_matches_pairwise_queries(model):
    responses = [["the sky is blue", "the sky is green", "no"], ["a funny joke", "no joke", "hello there"]]
    prompts = PROMPTS[:2]
    m = preference_matrix(model, prompts, responses)
    assert m.shape == (2, 3, 3)
    torch.testing.assert_close(m + m.transpose(1, 2), torch.ones(2, 3, 3))
    for p in range(2):
        for i in range(3):
            for j in range(3):
                if i != j:
                    expected = model.prob([prompts[p]], [responses[p][i]], [responses[p][j]])[0]
                    torch.testing.assert_close(m[p, i, j], expected, rtol=1e-5, atol=1e-6)


def test_pairpm_debiasing_removes_position_bias():
    m = make_model("pairpm", seed=0)
    with torch.no_grad():
        m.head.linear.weight.zero_()
        m.head.linear.bias.fill_(3.0)  # always prefers the first position
    torch.testing.assert_close(m.prob(PROMPTS, A, B), torch.full((3,), 0.5))
    forward, _ = m.ordered_logits(PROMPTS, A, B)
    torch.testing.assert_close(forward, torch.full((3,), 3.0))
    f, g = torch.tensor([50.0, -3.0, 0.2]), torch.tensor([-50.0, 1.0, 0.7])
    debiased = 0.5 * (torch.sigmoid(f) + 1 - torch.sigmoid(g))
    torch.testing.assert_close(torch.sigmoid(PairwisePreferenceModel.debiased_logit(f, g)), debiased)
    assert torch.isfinite(PairwisePreferenceModel.debiased_logit(torch.tensor([1e4]), torch.tensor([-1e4]))).all()


class UtilityJudge:
    """A transitive judge: P(a beats b) = sigmoid(u(a) - u(b)) with u = len(a)."""

    def __init__(self) -> None:
        self.queries = 0

    def prob(self, prompts, a, b):
        self.queries += len(prompts)
        return torch.sigmoid(torch.tensor([float(len(x) - len(y)) for x, y in zip(a, b)]))


def test_rank_round_robin_and_tournament():
    responses = ["aaa", "a", "aaaaa", "aa", "aaaa"]
    judge = UtilityJudge()
    assert rank(judge, "p", responses) == [2, 4, 0, 3, 1]
    assert judge.queries == 10  # K (K - 1) / 2
    judge.queries = 0
    order = rank(judge, "p", responses, method="tournament")
    assert order[0] == 2 and judge.queries == 4  # K - 1 matches
    assert sorted(order) == list(range(5))
    with pytest.raises(ValueError, match="round_robin"):
        rank(judge, "p", responses, method="swiss")


def test_preference_matrix_of_a_world_judge():
    from prefkit.sim import make_world

    world = make_world("cyclic")
    prompt = world.prompts("eval", 1)[0]
    responses = [world.ideal_response(prompt, style) for style in ("formal", "casual", "playful")]
    m = preference_matrix(WorldJudge(world, kind="truth"), [prompt], [responses])[0]
    truth = world.preference_matrix(prompt, responses)
    torch.testing.assert_close(m.double(), torch.as_tensor(truth), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="same number"):
        preference_matrix(UtilityJudge(), ["p", "q"], [["a", "b"], ["c"]])
