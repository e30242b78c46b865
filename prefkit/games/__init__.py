"""Exact tabular preference games: Nash solvers, duality gaps, and the EGPO / Nash-MD /
online-IPO family of iterative methods (exact or sampled, vectorised over batches of games).

    >>> from prefkit import games
    >>> game = games.random(10, seed=0, beta=0.1, ref="random")
    >>> pi_star, value = game.nash()
    >>> result = game.solve("egpo", iters=1000, eta=0.4)
    >>> result.gaps[-1] < 1e-6
    True

Imports numpy and scipy only; the neural variant (``prefkit.games.neural``) imports torch and
is not imported here.
"""

from prefkit.games.game import PreferenceGame
from prefkit.games.generators import (
    PRESETS,
    from_utilities,
    perturbed_cycle,
    preset,
    random,
    rock_paper_scissors,
)
from prefkit.games.solvers import METHODS, SolveResult, eta_from_sgd_lr, sgd_lr_from_eta

__all__ = [
    "METHODS",
    "PRESETS",
    "PreferenceGame",
    "SolveResult",
    "eta_from_sgd_lr",
    "from_utilities",
    "perturbed_cycle",
    "preset",
    "random",
    "rock_paper_scissors",
    "sgd_lr_from_eta",
]
