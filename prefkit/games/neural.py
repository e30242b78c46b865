"""Neural variant of the preference game: a small MLP policy trained with prefkit's losses.

EGPO's neural experiment (Zhou, Fazel, Du 2025; repository ``simulations/``, algorithms.md
Sec. 3.5): a 100-action game, a 3-layer ReLU MLP (hidden width 10) on a learned "virtual"
input, trained by plain SGD on the online-IPO regression (OMD, Nash-MD, EGPO), the online IPO 2
loss or the Nash-MD-PG surrogate, exactly (all ``N^2`` pairs) or from ``samples`` draws per step.
Here the losses are ``prefkit.losses.online_ipo`` and ``prefkit.losses.nash_md_pg``, the same
functions the LLM trainer uses, so the tabular and the deep implementations meet here:

* ``architecture="tabular"`` makes the policy a free logit vector per game; one SGD step of
  ``lr`` is then *exactly* ``PreferenceGame.solve``'s step at ``eta = 4 lr / (N beta)`` (tested);
* ``architecture="mlp"`` is the repository's network. There, ``lr`` is an SGD learning rate on
  the network's weights and has no exact mirror-step equivalent.

The G games of a batch are trained at once: every weight carries a leading game axis and the
per-game losses are summed, so each game's parameters get exactly their own gradient.
The duality gap of the network's policy is computed exactly after every step.

This module imports torch; ``prefkit.games`` does not import it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from prefkit.games.game import PreferenceGame
from prefkit.losses import nash_md_pg, online_ipo, validation

NEURAL_METHODS = ("omd", "online_ipo2", "nash_md", "nash_md_pg", "egpo")
ARCHITECTURES = ("mlp", "tabular")


class BatchedPolicy(torch.nn.Module):
    """G independent policies over N actions, ``pi_g = softmax(f_g(x_g))``.

    ``mlp``: ``f`` = Linear(d, h) - ReLU - Linear(h, h) - ReLU - Linear(h, N) on a learned input
    ``x_g ~ N(0, I_d)``; weights initialised like ``torch.nn.Linear`` (U(-1/sqrt(fan_in), ...)).
    ``tabular``: ``f_g`` is a free logit vector, initialised to ``init_logits``.
    """

    def __init__(self, games: int, n_actions: int, *, architecture: str = "mlp", hidden: int = 10,
                 input_dim: int = 10, init_logits: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}")
        self.architecture = architecture
        if architecture == "tabular":
            if init_logits is None:
                init_logits = torch.zeros(games, n_actions, dtype=dtype)
            self.logits = torch.nn.Parameter(init_logits.clone().to(dtype))
            return

        def uniform(*shape: int, fan_in: int) -> torch.nn.Parameter:
            bound = 1.0 / math.sqrt(fan_in)
            values = torch.rand(*shape, generator=generator, dtype=dtype) * 2 * bound - bound
            return torch.nn.Parameter(values)

        self.x = torch.nn.Parameter(torch.randn(games, input_dim, generator=generator, dtype=dtype))
        self.w1, self.b1 = uniform(games, input_dim, hidden, fan_in=input_dim), uniform(games, hidden, fan_in=input_dim)
        self.w2, self.b2 = uniform(games, hidden, hidden, fan_in=hidden), uniform(games, hidden, fan_in=hidden)
        self.w3, self.b3 = uniform(games, hidden, n_actions, fan_in=hidden), uniform(games, n_actions, fan_in=hidden)

    def forward(self) -> torch.Tensor:
        """Log-policies ``[G, N]``."""
        if self.architecture == "tabular":
            return torch.log_softmax(self.logits, dim=-1)
        z = torch.relu(torch.einsum("gd,gdh->gh", self.x, self.w1) + self.b1)
        z = torch.relu(torch.einsum("gd,gdh->gh", z, self.w2) + self.b2)
        return torch.log_softmax(torch.einsum("gd,gdh->gh", z, self.w3) + self.b3, dim=-1)


@dataclass
class NeuralResult:
    """Outcome of ``train_neural``: final ``policy`` ``[G, N]`` (``[N]`` for one game), exact
    ``gaps`` per iteration ``[G, iters]`` (``[iters]``), and ``game``: the game with the
    reference actually used (the network's initial policy for ``mlp``)."""

    method: str
    policy: np.ndarray
    gaps: np.ndarray
    game: PreferenceGame
    lr: float
    samples: int | None
    seconds: float

    @property
    def final_gap(self) -> float | np.ndarray:
        last = self.gaps[..., -1]
        return float(last) if last.ndim == 0 else last


class _Losses:
    """The repository's five losses for a batch, built on ``prefkit.losses``."""

    def __init__(self, P: torch.Tensor, log_ref: torch.Tensor, beta: float, samples: int | None,
                 mixture_step: float, generator: torch.Generator):
        self.P, self.log_ref, self.beta = P, log_ref, beta
        self.G, self.N = P.shape[0], P.shape[-1]
        self.samples, self.mixture_step, self.generator = samples, mixture_step, generator
        self.rows = torch.arange(self.G)[:, None]
        # Every loss here is symmetric in (y, y') and zero on the diagonal, so the sum over all
        # N^2 ordered pairs is twice the sum over the N(N-1)/2 pairs y < y'.
        self.pair_y, self.pair_y2 = torch.triu_indices(self.N, self.N, offset=1)
        self.pair_ref = (log_ref.index_select(1, self.pair_y), log_ref.index_select(1, self.pair_y2))

    def mixture(self, log_pi: torch.Tensor) -> torch.Tensor:
        m = self.mixture_step * self.beta
        return torch.softmax((1 - m) * log_pi.detach() + m * self.log_ref, dim=-1)

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(probs, self.samples, replacement=True, generator=self.generator)

    def uniform(self) -> torch.Tensor:
        return torch.randint(0, self.N, (self.G, self.samples), generator=self.generator)

    def regression(self, chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
                   ref_rejected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``online_ipo`` on a ``[G, B]`` grid of pairs, returned as ``[G, B]``."""
        return online_ipo(chosen.reshape(-1), rejected.reshape(-1), ref_chosen.reshape(-1),
                          ref_rejected.reshape(-1), target.reshape(-1), beta=self.beta).view(self.G, -1)

    def all_pairs(self, log_pi: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``online_ipo`` on every pair ``y < y'`` (``target`` given per pair), ``[G, M]``."""
        return self.regression(log_pi.index_select(1, self.pair_y), log_pi.index_select(1, self.pair_y2),
                               *self.pair_ref, target)

    def sampled_pairs(self, log_pi: torch.Tensor, y: torch.Tensor, y2: torch.Tensor,
                      target: torch.Tensor) -> torch.Tensor:
        """``online_ipo`` on sampled pairs ``y, y'`` ``[G, K]``."""
        return self.regression(log_pi.gather(1, y), log_pi.gather(1, y2),
                               self.log_ref.gather(1, y), self.log_ref.gather(1, y2), target)

    def against(self, log_pi: torch.Tensor, opponent: torch.Tensor) -> torch.Tensor:
        """Online-IPO regression towards ``P q`` for the opponent policy ``q`` ``[G, N]``.

        Exact: ``(1/N^2) sum_{y, y'}`` (the repository's ``online_ipo_1``); sampled: the mean
        over ``K`` draws ``y, y'`` uniform, ``y'' ~ q`` (``online_ipo_1_sample``).
        """
        if self.samples is None:
            P_q = torch.einsum("gij,gj->gi", self.P, opponent)
            target = P_q.index_select(1, self.pair_y) - P_q.index_select(1, self.pair_y2)
            return self.all_pairs(log_pi, target).sum() * (2.0 / self.N**2)
        y, y2, opp = self.uniform(), self.uniform(), self.draw(opponent)
        target = self.P[self.rows, y, opp] - self.P[self.rows, y2, opp]
        return self.sampled_pairs(log_pi, y, y2, target).mean(dim=1).sum()

    def online_ipo2(self, log_pi: torch.Tensor) -> torch.Tensor:
        """``sum_{y, y'} pi(y) pi(y') [...]^2`` exactly, or its mean over ``y, y' ~ pi``."""
        pi = log_pi.detach().exp()
        if self.samples is None:
            y, y2 = self.pair_y, self.pair_y2
            weights = pi.index_select(1, y) * pi.index_select(1, y2)
            target = self.P[:, y, y2] - 0.5
            return 2.0 * (weights * self.all_pairs(log_pi, target)).sum()
        y, y2 = self.draw(pi), self.draw(pi)
        return self.sampled_pairs(log_pi, y, y2, self.P[self.rows, y, y2] - 0.5).mean(dim=1).sum()

    def nash_md_pg(self, log_pi: torch.Tensor) -> torch.Tensor:
        mix = self.mixture(log_pi)
        if self.samples is None:
            preference = torch.einsum("gij,gj->gi", self.P, mix)
            losses = nash_md_pg(log_pi.reshape(-1), self.log_ref.reshape(-1),
                                preference.reshape(-1), beta=self.beta).view(self.G, -1)
            return (log_pi.detach().exp() * losses).sum()
        y, opp = self.draw(log_pi.detach().exp()), self.draw(mix)
        losses = nash_md_pg(log_pi.gather(1, y).reshape(-1), self.log_ref.gather(1, y).reshape(-1),
                            self.P[self.rows, y, opp].reshape(-1), beta=self.beta)
        return losses.view(self.G, -1).mean(dim=1).sum()


def _gap(P: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact duality gap ``2 beta KL(pi || softmax(log ref + P pi / beta))`` per game."""
    pi = log_pi.exp()
    log_br = torch.log_softmax(log_ref + torch.einsum("gij,gj->gi", P, pi) / beta, dim=-1)
    return (2 * beta * (pi * (log_pi - log_br)).sum(dim=-1)).clamp(min=0.0)


def train_neural(game: PreferenceGame, method: str, iters: int, lr: float, *,
                 samples: int | None = None, seed: int = 0, architecture: str = "mlp",
                 hidden: int = 10, input_dim: int = 10,
                 mixture_eta: float | None = None) -> NeuralResult:
    """Train a policy network on ``game`` (one game or a batch) with plain SGD.

    Args:
        game: the preference game(s); ``beta > 0`` is required. With ``architecture="mlp"`` the
            reference policy is the network's initial policy (so ``pi_0 = ref``, as in the EGPO
            experiments) and ``game.ref`` is not used; with ``"tabular"`` the logits start at
            ``log game.ref``.
        method: one of ``NEURAL_METHODS``.
        iters: SGD steps (EGPO: each step is an extragradient pair of gradient evaluations).
        lr: SGD learning rate on the parameters (the repository's ``lr``).
        samples: ``None`` for the exact losses over all ``N^2`` pairs, else draws per step with
            the repository's estimators (see ``prefkit.games.solvers``).
        seed: seed of the initial weights and of the sampler.
        mixture_eta: Nash-MD's mixture step; default ``4 lr / (N beta)``, the mirror step that
            ``lr`` is for a tabular policy (the repository uses half of it).
    """
    if method not in NEURAL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(NEURAL_METHODS)}")
    if game.beta <= 0:
        raise ValueError("the neural variant needs beta > 0 (the online-IPO losses divide by beta)")
    if not (isinstance(iters, int) and iters >= 1):
        raise ValueError(f"iters must be a positive integer; got {iters!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0; got {lr}")
    if samples is not None and not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples must be None (exact) or a positive integer; got {samples!r}")

    generator = torch.Generator().manual_seed(seed)
    P = torch.as_tensor(game.P if game.batched else game.P[None], dtype=torch.float64)
    G, N = P.shape[0], P.shape[-1]
    init = torch.log(torch.as_tensor(game.ref if game.batched else game.ref[None], dtype=torch.float64))
    policy = BatchedPolicy(G, N, architecture=architecture, hidden=hidden, input_dim=input_dim,
                           init_logits=init, generator=generator)
    with torch.no_grad():
        log_ref = policy().detach().clone()
    ref = log_ref.exp().numpy()
    used = PreferenceGame(P.numpy() if game.batched else P[0].numpy(),
                          ref / ref.sum(-1, keepdims=True) if game.batched else ref[0] / ref[0].sum(),
                          game.beta)
    step = 4 * lr / (N * game.beta) if mixture_eta is None else mixture_eta
    losses = _Losses(P, log_ref, game.beta, samples, step, generator)
    params = list(policy.parameters())
    optimizer = torch.optim.SGD(params, lr=lr)

    def loss_at(log_pi: torch.Tensor, opponent: torch.Tensor | None = None) -> torch.Tensor:
        if method == "online_ipo2":
            return losses.online_ipo2(log_pi)
        if method == "nash_md_pg":
            return losses.nash_md_pg(log_pi)
        if method == "nash_md":
            return losses.against(log_pi, losses.mixture(log_pi))
        return losses.against(log_pi, log_pi.detach().exp() if opponent is None else opponent)

    def sgd(loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    gaps = torch.empty(iters, G, dtype=torch.float64)
    began = time.perf_counter()
    with validation(False):  # inputs are built here; skip the per-call value checks
        for t in range(iters):
            if method == "egpo":
                saved = [p.detach().clone() for p in params]
                sgd(loss_at(policy()))
                with torch.no_grad():
                    half = policy().exp()
                    for p, old in zip(params, saved):
                        p.copy_(old)
                sgd(loss_at(policy(), half))
            else:
                sgd(loss_at(policy()))
            with torch.no_grad():
                gaps[t] = _gap(P, policy(), log_ref, game.beta)
    seconds = time.perf_counter() - began
    with torch.no_grad():
        final = policy().exp().numpy()
    gaps_np = gaps.T.numpy().copy()
    if not game.batched:
        final, gaps_np = final[0], gaps_np[0]
    return NeuralResult(method=method, policy=final, gaps=gaps_np, game=used, lr=lr,
                        samples=samples, seconds=seconds)
