"""Nash-MD (Munos et al. 2024) checked exactly on tabular games.

1. Analytic checks: the perturbed 3-cycle's equilibrium ``(1/3 + eps/2, 1/3 + eps/2, 1/3 - eps)``
   (Sec. 3.2); the 50/99 win-rate of the preference maximiser over the Elo maximiser (App. A);
   the last-iterate bound ``KL(pi*, pi_T) <= 8 / (tau^2 (T + 1))`` with ``eta_t = 2/(tau(t+2))``
   (Thm 1) on random games.
2. The constant-step bias: with a constant ``eta`` Nash-MD converges to a point that is not the
   regularised equilibrium; its final duality gap against ``eta`` on random 10-action games at
   ``beta = 0.1``, with the fitted order ``gap ~ eta^k``.

    PYTHONPATH=. python benchmarks/games_nash_md.py [--seed 0]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from prefkit import games

N, GAMES = 10, 10


def analytic_checks(seed: int) -> list[str]:
    lines = ["| check | paper | measured | error |", "|---|---|---|---|"]
    for eps in (-0.3, -0.1, 0.0, 0.1, 0.2, 1 / 3):
        pi, _ = games.perturbed_cycle(eps).nash()
        paper = np.array([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps])
        lines.append(
            f"| 3-cycle Nash, eps = {eps:.3g} | ({', '.join(f'{p:.4f}' for p in paper)}) | "
            f"({', '.join(f'{p:.4f}' for p in pi)}) | {np.abs(pi - paper).max():.1e} |"
        )
    elo = games.from_utilities([0.0, math.log(9.0), math.log(2.0)])
    rate = elo.win_rate([0.0, 0.0, 1.0], [2 / 3, 1 / 3, 0.0])
    lines.append(f"| P((0,0,1) beats (2/3,1/3,0)), App. A | 50/99 = {50 / 99:.10f} | {rate:.10f} | "
                 f"{abs(rate - 50 / 99):.1e} |")
    # The reward maximiser on the constraint pi(y1) = 2 pi(y2): expected utility a log 9 +
    # (1 - 3a) log 2 is increasing in a, so a = 1/3; the preference maximiser (0, 0, 1) wins.
    family = np.linspace(0.0, 1.0 / 3.0, 1001)
    utility = family * math.log(9.0) + (1 - 3 * family) * math.log(2.0)
    worst = min(elo.win_rate([0.0, 0.0, 1.0], [2 * a, a, 1 - 3 * a]) for a in family)
    lines.append(f"| Elo maximiser on pi(y1) = 2 pi(y2) | a = 1/3 | a = {family[utility.argmax()]:.4f} | - |")
    lines.append(f"| min over the family of P((0,0,1) beats it) | >= 1/2 | {worst:.6f} | - |")

    iters = 10_000
    for tau in (0.01, 0.1, 1.0):
        batch = games.random(N, seed=seed, games=GAMES, beta=tau, ref="random")
        pi_star, _ = batch.nash()
        result = batch.solve("nash_md", iters, schedule="decay", keep_iterates=True)
        kl = (pi_star * (np.log(pi_star) - np.log(result.iterates))).sum(axis=-1)  # [T, G]
        bound = 8.0 / (tau**2 * (np.arange(1, iters + 1) + 1.0))
        ratio = (kl / bound[:, None]).max()
        lines.append(
            f"| KL(pi*, pi_T) <= 8/(tau^2 (T+1)), tau = {tau:g}, T <= {iters}, {GAMES} games | "
            f"ratio <= 1 | max ratio {ratio:.2e}; KL(pi*, pi_{iters}) median "
            f"{np.median(kl[-1]):.2e} (bound {bound[-1]:.1e}) | holds: {ratio <= 1} |"
        )
    return lines


def constant_step_bias(seed: int, beta: float = 0.1) -> list[str]:
    batch = games.random(N, seed=seed, games=GAMES, beta=beta, ref="random")
    pi_star, _ = batch.nash()
    etas = [0.8, 0.4, 0.2, 0.1, 0.05, 0.025]
    lines = [
        "| eta | iterations | Nash-MD final gap: median [min, max] | ratio to previous | "
        "L1 distance to pi*: median | Nash-MD, repo mixture eta/2: median gap | "
        "EGPO / OMD final gap: max |",
        "|---|---|---|---|---|---|---|",
    ]
    medians, distances = [], []
    for eta in etas:
        iters = math.ceil(60.0 / (eta * beta))  # 60 contraction times: converged to rounding
        result = batch.solve("nash_md", iters, eta)
        repo = batch.solve("nash_md", iters, eta, mixture_eta=eta / 2)
        # Converged: the last 100 gaps agree to 1e-9 relative.
        tail = result.gaps[:, -100:]
        assert np.all(np.abs(tail - tail[:, -1:]) <= 1e-9 * tail[:, -1:] + 1e-16), "not converged"
        exact = max(batch.solve(m, iters, eta).final_gap.max() for m in ("egpo", "omd"))
        gap = result.final_gap
        dist = np.abs(result.policy - pi_star).sum(axis=1)
        ratio = f"{medians[-1] / np.median(gap):.2f}" if medians else "-"
        medians.append(np.median(gap))
        distances.append(np.median(dist))
        lines.append(
            f"| {eta:g} | {iters} | {np.median(gap):.2e} [{gap.min():.2e}, {gap.max():.2e}] | "
            f"{ratio} | {np.median(dist):.2e} | {np.median(repo.final_gap):.2e} | {exact:.1e} |"
        )
    slope_gap = np.polyfit(np.log(etas), np.log(medians), 1)[0]
    slope_dist = np.polyfit(np.log(etas), np.log(distances), 1)[0]
    lines.append(
        f"\nFitted order (log-log least squares over eta): gap ~ eta^{slope_gap:.2f}, "
        f"distance to pi* ~ eta^{slope_dist:.2f}."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"Nash-MD analytic checks (random games: {GAMES} x {N} actions, seed {args.seed}, "
          f"random reference)\n")
    print("\n".join(analytic_checks(args.seed)))
    print(f"\nConstant-step Nash-MD bias, beta = 0.1, {GAMES} random {N}-action games, "
          f"seed {args.seed}\n")
    print("\n".join(constant_step_bias(args.seed)))


if __name__ == "__main__":
    main()
