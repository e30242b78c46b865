"""EGPO's tabular experiment (Zhou, Fazel, Du 2025; repository ``simulations/``), exact and sampled.

10 random 10-action games (``P[i, j] ~ U(0, 1)`` for ``i > j``), reference logits ~ N(0, 1),
``pi_0 = ref``; the repository's settings ``(beta, iterations, SGD lr)``, converted to the
mirror-descent step ``eta = 4 lr / (N beta)`` (one SGD step of ``lr`` on the online-IPO loss is
exactly one mirror step of ``eta``). Nash-MD is run twice: with the paper's mixture
(``mixture_eta = eta``) and with the repository's ``true_lr = 2 lr / (N beta) = eta / 2``.

Prints one markdown table per setting: games reaching a duality gap of 1e-6, iterations to get
there (median and range over the games that do), the final gap, and the wall time of the
batched solve (all 10 games at once).

    PYTHONPATH=. python benchmarks/games_egpo.py [--seed 2018011309] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from prefkit import games

N, GAMES, THRESHOLD, SAMPLES = 10, 10, 1e-6, 100
EXACT = [(0.001, 100_000, 2e-4), (0.01, 5_000, 0.02), (0.1, 1_000, 0.1)]
SAMPLED = [(0.01, 100_000, 2e-4)]
RUNS = [
    ("omd", {}),
    ("online_ipo2", {}),
    ("nash_md", {}),
    ("nash_md", {"repo_mixture": True}),
    ("nash_md_pg", {}),
    ("egpo", {}),
]


def smoothed(gaps: np.ndarray, window: int = 10) -> np.ndarray:
    """Moving average over ``window`` iterations (the repository's plots use 10)."""
    kernel = np.ones(window) / window
    return np.stack([np.convolve(row, kernel, mode="valid") for row in gaps])


def describe(values: np.ndarray, fmt: str) -> str:
    return f"{np.median(values):{fmt}} [{values.min():{fmt}}, {values.max():{fmt}}]"


def run_setting(beta: float, iters: int, lr: float, samples: int | None, seed: int) -> list[str]:
    game = games.random(N, seed=seed, games=GAMES, beta=beta, ref="random")
    eta = games.eta_from_sgd_lr(lr, N, beta)
    mode = "exact" if samples is None else f"sampled, {samples} samples/step"
    lines = [
        f"\n**beta = {beta:g}, {iters} iterations, repo lr = {lr:g} -> eta = 4 lr/(N beta) = "
        f"{eta:g}; {mode}**\n",
        "| method | games reaching 1e-6 | iterations to 1e-6: median [min, max] | "
        "final gap: median [min, max] | wall / CPU s (10 games at once) |",
        "|---|---|---|---|---|",
    ]
    runs = list(RUNS)
    if samples is not None:  # the same step without noise, for reference
        runs += [("omd", {"exact": True}), ("egpo", {"exact": True})]
    for method, flags in runs:
        options = {"samples": None if flags.get("exact") else samples, "seed": seed}
        name = method + (" (exact, same eta)" if flags.get("exact") else "")
        if flags.get("repo_mixture"):
            options["mixture_eta"] = eta / 2
            name = "nash_md (repo mixture eta/2)"
        cpu = time.process_time()
        result = game.solve(method, iters, eta, **options)
        cpu = time.process_time() - cpu
        # Sampled gaps are noisy: like the repository's plots, smooth over 10 iterations, and
        # report the final gap as the mean of the last 1000 iterations.
        noisy = options["samples"] is not None
        curve = smoothed(result.gaps) if noisy else result.gaps
        final = result.gaps[:, -1000:].mean(axis=1) if noisy else result.gaps[:, -1]
        reached = np.where((curve <= THRESHOLD).any(axis=1), (curve <= THRESHOLD).argmax(axis=1) + 1, -1)
        hit = reached[reached > 0]
        iters_to = describe(hit, ".0f") if hit.size else "-"
        lines.append(
            f"| {name} | {hit.size}/{GAMES} | {iters_to} | {describe(final, '.2e')} | "
            f"{result.seconds:.2f} / {cpu:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2018011309, help="the repository's seed value")
    parser.add_argument("--quick", action="store_true", help="only the beta = 0.1 exact setting")
    args = parser.parse_args()
    print(f"EGPO tabular experiment: {GAMES} random {N}-action games, seed {args.seed} "
          f"(numpy default_rng; not the repository's torch stream), "
          f"numpy {np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    exact = EXACT[-1:] if args.quick else EXACT
    for beta, iters, lr in exact:
        print("\n".join(run_setting(beta, iters, lr, None, args.seed)))
    if not args.quick:
        for beta, iters, lr in SAMPLED:
            print("\n".join(run_setting(beta, iters, lr, SAMPLES, args.seed)))


if __name__ == "__main__":
    main()
