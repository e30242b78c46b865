"""The ordinal (cumulative-logit) loss: worked numbers, the likelihood identity, gradients,
stability, the nested objectives, bad input, and recovery of planted thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.losses import ordinal, ordinal_probabilities

D = torch.float64


def test_worked_numbers():
    # theta = (-1, 1), f = 0: P(0) = s(-1), P(1) = s(1) - s(-1), P(2) = 1 - s(1)
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    loss = ordinal(torch.zeros(3, dtype=D), torch.tensor([-1.0, 1.0], dtype=D), torch.tensor([0, 1, 2]))
    expected = [-math.log(s(-1)), -math.log(s(1) - s(-1)), -math.log(1 - s(1))]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=D))


def test_the_loss_is_minus_the_log_of_the_class_probability():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, generator=g, dtype=D) * 3
    thresholds = torch.sort(torch.randn(6, generator=g, dtype=D) * 2).values
    labels = torch.randint(0, 7, (64,), generator=g)
    probs = ordinal_probabilities(scores, thresholds)
    torch.testing.assert_close(probs.sum(1), torch.ones(64, dtype=D))
    assert bool((probs >= 0).all())
    torch.testing.assert_close(ordinal(scores, thresholds, labels), -probs.gather(1, labels[:, None]).squeeze(1).log())


def test_per_example_thresholds_and_two_levels_equal_a_logistic_loss():
    scores = torch.tensor([0.3, -1.2], dtype=D)
    per_row = torch.tensor([[-1.0, 0.5], [0.0, 2.0]], dtype=D)
    labels = torch.tensor([2, 1])
    expected = torch.stack([ordinal(scores[i:i + 1], per_row[i], labels[i:i + 1])[0] for i in range(2)])
    torch.testing.assert_close(ordinal(scores, per_row, labels), expected)
    binary = torch.tensor([0.7], dtype=D)
    for label in (0, 1):
        lab = torch.tensor([label])
        torch.testing.assert_close(ordinal(scores[:1], binary, lab), ordinal(scores[:1], binary, lab, variant="nested"))


def test_gradients_match_finite_differences():
    scores = torch.tensor([0.2, -0.7, 1.5, 3.0], dtype=D, requires_grad=True)
    thresholds = torch.tensor([-1.0, 0.1, 1.2], dtype=D, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    for variant in ("likelihood", "nested"):
        assert torch.autograd.gradcheck(lambda f, t, v=variant: ordinal(f, t, labels, variant=v), (scores, thresholds))


def test_extreme_scores_stay_finite():
    scores = torch.tensor([-60.0, 60.0, 0.0, 0.0], requires_grad=True)
    thresholds = torch.tensor([-1.0, -0.999999, 1.0])
    loss = ordinal(scores, thresholds, torch.tensor([3, 0, 1, 2]))
    loss.sum().backward()
    assert bool(torch.isfinite(loss).all()) and bool(torch.isfinite(scores.grad).all())
    assert loss[0] > 50 and loss[1] > 50  # confidently wrong costs about the logit


def test_the_nested_objective_is_a_sum_of_binary_losses_with_optional_weights():
    scores = torch.tensor([0.5], dtype=D)
    thresholds = torch.tensor([-1.0, 0.0, 2.0], dtype=D)
    label = torch.tensor([2])  # events "above 0" and "above 1" happened, "above 2" did not
    def sp(v: float) -> torch.Tensor:
        return torch.nn.functional.softplus(torch.tensor(v, dtype=D))

    manual = sp(-(0.5 + 1.0)) + sp(-(0.5 - 0.0)) + sp(0.5 - 2.0)
    torch.testing.assert_close(ordinal(scores, thresholds, label, variant="nested")[0], manual)
    weights = torch.tensor([1.0, 0.0, 2.0], dtype=D)
    torch.testing.assert_close(ordinal(scores, thresholds, label, variant="nested", weights=weights)[0],
                               sp(-(0.5 + 1.0)) + 2 * sp(0.5 - 2.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": torch.tensor([0, 3])}, "classes in 0..2"),
    ({"labels": torch.tensor([0.0, 1.0])}, "integer tensor"),
    ({"thresholds": torch.tensor([1.0, -1.0])}, "strictly increasing"),
    ({"thresholds": torch.tensor([[0.0, 1.0]] * 3)}, "shape"),
    ({"weights": torch.ones(2)}, "variant='nested'"),
    ({"variant": "probit"}, "variant"),
    ({"scores": torch.tensor([0.0, float("nan")])}, "finite"),
])
def test_bad_input_is_an_error(kwargs, match):
    args = {"scores": torch.zeros(2), "thresholds": torch.tensor([-1.0, 1.0]), "labels": torch.tensor([0, 1]),
            **kwargs}
    with pytest.raises(ValueError, match=match):
        ordinal(args.pop("scores"), args.pop("thresholds"), args.pop("labels"), **args)


def test_fitting_recovers_planted_weights_and_thresholds():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 3, generator=g, dtype=D)
    w_true, theta_true = torch.tensor([1.5, -1.0, 0.5], dtype=D), torch.tensor([-1.5, 0.0, 1.0, 2.5], dtype=D)
    u = torch.rand(4000, 1, generator=g, dtype=D)
    labels = (torch.logit(u) + (x @ w_true)[:, None] > theta_true).sum(1)  # latent + logistic noise
    w = torch.zeros(3, dtype=D, requires_grad=True)
    first = torch.tensor(-1.0, dtype=D, requires_grad=True)
    gaps = torch.zeros(3, dtype=D, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, first, gaps], max_iter=200, line_search_fn="strong_wolfe")

    def thresholds():
        return torch.cat([first[None], first + torch.cumsum(torch.nn.functional.softplus(gaps), 0)])

    def closure():
        optimizer.zero_grad()
        loss = ordinal(x @ w, thresholds(), labels).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    torch.testing.assert_close(w.detach(), w_true, atol=0.12, rtol=0)
    torch.testing.assert_close(thresholds().detach(), theta_true, atol=0.15, rtol=0)
