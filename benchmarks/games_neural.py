"""EGPO's neural experiment: a 3-layer ReLU MLP (hidden 10) on a learned input, 100 actions.

Random 100-action games; the reference policy is the network's initial policy (``pi_0 = ref``);
plain SGD with the repository's settings: exact losses (all pairs) at beta = 0.01, 10,000
steps, lr = 3e-3; sampled (100 samples per step) at beta = 0.1, 20,000 steps, lr = 1e-3.
The regression losses are ``prefkit.losses.online_ipo``; Nash-MD-PG uses
``prefkit.losses.nash_md_pg``. Reports the exact duality gap of the network's policy.

    PYTHONPATH=. python benchmarks/games_neural.py [--games 10] [--seed 2018011309]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from prefkit import games
from prefkit.games.neural import NEURAL_METHODS, train_neural

N = 100
SETTINGS = [  # (beta, steps, lr, samples)
    (0.01, 10_000, 3e-3, None),
    (0.1, 20_000, 1e-3, 100),
]


def run_setting(beta: float, steps: int, lr: float, samples: int | None, n_games: int,
                seed: int) -> list[str]:
    game = games.random(N, seed=seed, games=n_games, beta=beta)
    mode = "exact (all pairs)" if samples is None else f"sampled, {samples} samples/step"
    lines = [
        f"\n**MLP, {n_games} random {N}-action games, beta = {beta:g}, {steps} SGD steps, "
        f"lr = {lr:g}, {mode}**\n",
        "| method | gap after 10% of steps: median | final gap: median [min, max] | "
        "games below 1e-6 at the end | wall / CPU s |",
        "|---|---|---|---|---|",
    ]
    for method in NEURAL_METHODS:
        cpu = time.process_time()
        result = train_neural(game, method, steps, lr, samples=samples, seed=seed)
        cpu = time.process_time() - cpu
        gaps = result.gaps
        final = gaps[:, -1] if samples is None else gaps[:, -1000:].mean(axis=1)
        lines.append(
            f"| {method} | {np.median(gaps[:, steps // 10 - 1]):.2e} | {np.median(final):.2e} "
            f"[{final.min():.2e}, {final.max():.2e}] | {(final < 1e-6).sum()}/{n_games} | "
            f"{result.seconds:.0f} / {cpu:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2018011309)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"EGPO neural experiment; torch {torch.__version__} (CPU, float64, "
          f"{args.threads} thread), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start; sampled final gaps are means of the last 1000 steps")
    for beta, steps, lr, samples in SETTINGS:
        print("\n".join(run_setting(beta, steps, lr, samples, args.games, args.seed)), flush=True)


if __name__ == "__main__":
    main()
