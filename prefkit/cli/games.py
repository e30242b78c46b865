"""``prefkit games``: solve a tabular preference game with the EGPO / Nash-MD / online-IPO family.

Prints the final duality gap and the time of each method, and optionally draws the duality gap
against the iteration on a log scale (``--plot FILE``).

    prefkit games --random 10 --games 10 --ref random --beta 0.1 --lr 0.1 --method all --iters 1000
    prefkit games --preset rps --method egpo --beta 0.1 --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

METHOD_CHOICES = ("omd", "online_ipo2", "nash_md", "nash_md_pg", "egpo", "mwu", "all")
PRESET_CHOICES = ("rps", "cycle3", "elo3")
THRESHOLD = 1e-6


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "games",
        help="solve a tabular preference game (Nash, EGPO, Nash-MD, online IPO, MWU)",
        description="Exact tabular preference games: runs iterative methods and reports the "
        "exact duality gap per iteration. eta is the mirror-descent step "
        "(log pi' = (1 - eta beta) log pi + eta beta log ref + eta P q).",
    )
    game = p.add_mutually_exclusive_group(required=True)
    game.add_argument("--random", type=int, metavar="N", help="random game(s) with N actions (EGPO)")
    game.add_argument("--preset", choices=PRESET_CHOICES,
                      help="rps: rock-paper-scissors; cycle3: Nash-MD's perturbed 3-cycle "
                      "(--eps); elo3: Nash-MD App. A Bradley-Terry game")
    p.add_argument("--method", required=True, choices=METHOD_CHOICES, help="method, or 'all'")
    p.add_argument("--beta", type=float, default=0.1, help="KL coefficient (default 0.1)")
    p.add_argument("--iters", type=int, default=1000, help="iterations (default 1000)")
    step = p.add_mutually_exclusive_group()
    step.add_argument("--eta", type=float, default=None,
                      help="mirror-descent step (default min(0.4, 1/beta))")
    step.add_argument("--lr", type=float, default=None,
                      help="EGPO-repository SGD learning rate instead of eta (eta = 4 lr / (N beta))")
    p.add_argument("--schedule", choices=("constant", "decay"), default="constant",
                   help="decay: eta_t = 2 / (beta (t + 2)) (Nash-MD Thm 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random game and the sampler")
    p.add_argument("--samples", type=int, default=None,
                   help="samples per step (sampled estimators of the EGPO repository); default exact")
    p.add_argument("--games", type=int, default=1, help="with --random: number of games (batched)")
    p.add_argument("--ref", choices=("uniform", "random"), default="uniform",
                   help="reference policy (random: softmax of N(0,1) logits, as in EGPO)")
    p.add_argument("--init", choices=("ref", "random"), default="ref",
                   help="starting policy: the reference (default, as in EGPO) or a random one")
    p.add_argument("--eps", type=float, default=0.1, help="perturbation of --preset cycle3")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE", help="write duality gap vs iteration (PNG, log scale)")
    p.set_defaults(func=run)


def _build_game(args: argparse.Namespace):
    from prefkit import games

    if args.random is not None:
        if args.random < 2:
            raise ValueError(f"--random needs at least 2 actions; got {args.random}")
        if args.games < 1:
            raise ValueError(f"--games must be >= 1; got {args.games}")
        return games.random(args.random, seed=args.seed, games=None if args.games == 1 else args.games,
                            beta=args.beta, ref=args.ref), f"random {args.random} actions"
    if args.games != 1:
        raise ValueError("--games applies to --random only")
    game = games.preset(args.preset, beta=args.beta, eps=args.eps)
    if args.ref == "random":
        import numpy as np

        logits = np.random.default_rng(args.seed).standard_normal(game.n_actions)
        game = games.PreferenceGame(game.P, np.exp(logits) / np.exp(logits).sum(), args.beta)
    return game, f"preset {args.preset}"


def _step(args: argparse.Namespace, n_actions: int) -> float | None:
    from prefkit.games import eta_from_sgd_lr

    if args.schedule == "decay":
        if args.eta is not None or args.lr is not None:
            raise ValueError("--schedule decay sets eta_t itself; drop --eta/--lr")
        return None
    if args.lr is not None:
        return eta_from_sgd_lr(args.lr, n_actions, args.beta)
    if args.eta is not None:
        return args.eta
    return 0.4 if args.beta <= 2.5 else 1.0 / args.beta


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _summary(result, batched: bool) -> dict[str, Any]:
    import numpy as np

    reached = result.iterations_to(THRESHOLD)
    out = {
        "final_gap": _jsonable(result.final_gap),
        "iters_to_1e-6": _jsonable(reached),
        "time_s": round(result.seconds, 4),
        "policy": _jsonable(result.policy),
    }
    if batched:
        out["final_gap_median"] = float(np.median(result.final_gap))
    return out


def plot_gaps(results: dict[str, Any], path: str, title: str) -> None:
    """Duality gap against iteration, one line per method (median and range over a batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, result in results.items():
        gaps = np.maximum(np.atleast_2d(result.gaps), 1e-17)
        t = np.arange(1, gaps.shape[-1] + 1)
        (line,) = ax.plot(t, np.median(gaps, axis=0), label=method)
        if gaps.shape[0] > 1:
            ax.fill_between(t, gaps.min(axis=0), gaps.max(axis=0), color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("iteration t")
    ax.set_ylabel("duality gap")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from prefkit.errors import InputError

    try:
        return _run(args)
    except InputError:
        raise
    except ValueError as err:  # bad settings found by prefkit.games: exit 2 with the message
        raise InputError(str(err)) from None


def _initial_policy(args: argparse.Namespace, game):
    if args.init == "ref":
        return None
    import numpy as np

    rng = np.random.default_rng([args.seed, 1])
    return rng.dirichlet(np.ones(game.n_actions), size=game.n_games if game.batched else None)


def _run(args: argparse.Namespace) -> int:
    from prefkit.games import METHODS

    if args.iters < 1:
        raise ValueError(f"--iters must be >= 1; got {args.iters}")
    game, description = _build_game(args)
    eta = _step(args, game.n_actions)
    methods = list(METHODS) if args.method == "all" else [args.method]
    skipped: dict[str, str] = {}
    if args.method == "all" and game.beta == 0:
        methods.remove("nash_md_pg")
        skipped["nash_md_pg"] = "needs beta > 0"

    init = _initial_policy(args, game)
    results = {}
    for method in methods:
        results[method] = game.solve(method, args.iters, eta, schedule=args.schedule,
                                     samples=args.samples, seed=args.seed, init=init)
    nash_policy, nash_value = game.nash()

    report = {
        "game": {
            "description": description,
            "n_actions": game.n_actions,
            "games": game.n_games,
            "beta": game.beta,
            "ref": args.ref,
            "init": args.init,
            "seed": args.seed,
        },
        "iters": args.iters,
        "eta": eta,
        "schedule": args.schedule,
        "samples": args.samples,
        "nash": {"policy": _jsonable(nash_policy), "value": _jsonable(nash_value),
                 "gap": _jsonable(game.duality_gap(nash_policy))},
        "methods": {m: _summary(r, game.batched) for m, r in results.items()},
        "skipped": skipped,
    }
    title = f"{description}, beta={game.beta:g}" + (f", {game.n_games} games" if game.batched else "")
    if args.plot:
        plot_gaps(results, args.plot, title)
        report["plot"] = args.plot
    if args.json:
        print(json.dumps(report, allow_nan=False, default=_jsonable))
        return 0
    _print_table(report, title)
    return 0


def _print_table(report: dict[str, Any], title: str) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    eta = report["eta"]
    step = "eta_t = 2/(beta(t+2))" if eta is None else f"eta={eta:g}"
    mode = "exact" if report["samples"] is None else f"{report['samples']} samples/step"
    table = Table(title=f"{title}; {step}; {report['iters']} iterations; {mode}")
    table.add_column("method")
    table.add_column("final gap" + (" (median)" if report["game"]["games"] > 1 else ""), justify="right")
    table.add_column("iters to 1e-6" + (" (median)" if report["game"]["games"] > 1 else ""), justify="right")
    table.add_column("time (s)", justify="right")
    for method, row in report["methods"].items():
        gap = float(np.median(row["final_gap"]))
        reached = np.atleast_1d(row["iters_to_1e-6"])
        hit = "never" if (reached < 0).all() else (
            f"{int(np.median(reached))}" if (reached > 0).all() else f"{(reached > 0).sum()}/{reached.size} games")
        table.add_row(method, f"{gap:.3e}" if gap > 0 else "0", hit, f"{row['time_s']:.3f}")
    console = Console()
    console.print(table)
    nash_gap = float(np.max(report["nash"]["gap"]))
    console.print(f"Nash equilibrium (PreferenceGame.nash): duality gap {nash_gap:.1e}")
    for method, reason in report["skipped"].items():
        console.print(f"skipped {method}: {reason}")
    if "plot" in report:
        console.print(f"plot written to {report['plot']}")
