"""Active selection in prefkit studio: votes needed to reach a held-out accuracy, BALD and
ensemble variance against random order, with simulated annotators voting through the HTTP API.

For each seed and strategy: a project holds ``--pool`` pairs of base responses on the simulated
world's train prompts; a real ``prefkit studio`` server process serves them (``--selection``,
refit every ``--refit-every`` votes in its background thread); a simulated annotator (the world's
annotator pool, default ``clean``: labels drawn from P*) signs in with a Bearer token, asks
``GET /api/task`` and answers ``POST /api/vote`` for the two responses as shown (left/right).
Every ``--refit-every`` votes the script waits for the server's refit, then fits the same
ensemble (prefkit.studio.active: 8 bootstrap BT members on hashed text features) on the votes
so far and measures its accuracy on ``--heldout`` pairs of eval prompts against the truth
(the response P* prefers). Reported: votes to first reach each target accuracy (mean and range
over seeds; ">B" when the budget ran out) and accuracy at fixed budgets.

    PYTHONPATH=. python benchmarks/studio_active.py --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STRATEGIES = ("random", "bald", "variance")


def start_server(project: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "prefkit", "studio", "--project", str(project), "--port", "0",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"server did not start: {''.join(errors)}")
    return proc, json.loads(line)["url"]


def heldout(world, n, rng, features):
    records = world.pairs(n, rng, split="eval")
    prompts = [r.prompt for r in records]
    a, b = [r.chosen for r in records], [r.rejected for r in records]
    truth = world.true_preference(prompts, a, b) > 0.5
    phi_a = np.stack([features(p, x) for p, x in zip(prompts, a)])
    phi_b = np.stack([features(p, x) for p, x in zip(prompts, b)])
    return phi_a, phi_b, truth


def run(strategy: str, seed: int, args, eval_set) -> dict:
    import httpx

    from prefkit.sim import make_world
    from prefkit.studio import active
    from prefkit.studio.annotators import add_annotator
    from prefkit.studio.store import open_project
    from prefkit.studio.tasks import TaskRow, store_rows, task_key

    world = make_world("transitive", seed=seed, annotators=args.annotators)
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    for i, r in enumerate(world.pairs(args.pool * 2, rng)):
        key = task_key(r.prompt, r.chosen, r.rejected)
        if key not in seen:
            seen.add(key)
            rows.append(TaskRow(r.prompt, r.chosen, r.rejected, ("sim", i + 1)))
        if len(rows) == args.pool:
            break
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench"
        store, _ = open_project(project, create=True, settings={
            "selection": strategy, "refit_every": args.refit_every, "ensemble_size": args.members, "seed": seed})
        store_rows(store, rows, origin="world", source="sim")
        _, token = add_annotator(store, "sim")
        proc, url = start_server(project)
        cache = active.FeatureCache()
        phi_a, phi_b, truth = eval_set
        curve = []
        answer_rng = np.random.default_rng(seed + 1000)
        try:
            with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as client:
                for n in range(1, args.budget + 1):
                    task = client.get("/api/task").json()["task"]
                    if task is None:
                        break
                    label = world.annotate([task["prompt"]], [task["left"]], [task["right"]], answer_rng)[0]
                    vote = client.post("/api/vote", json={"assignment": task["assignment"],
                                                          "choice": "left" if label == 1.0 else "right",
                                                          "nonce": f"bench-{n:06d}"})
                    vote.raise_for_status()
                    if n % args.refit_every == 0:
                        if strategy != "random" and n >= active.MIN_LABELS:
                            deadline = time.monotonic() + 300
                            while (refit := client.get("/api/status").json()["refit"])["last_round_labels"] != n:
                                if refit["error"] or time.monotonic() > deadline:
                                    raise RuntimeError(f"the server's refit did not finish: {refit}")
                                time.sleep(0.02)
                        data = active.read_store(store)
                        ensemble = active.fit_ensemble(active.votes_from(data, cache), members=args.members,
                                                       seed=seed)
                        accuracy = float(((ensemble.mean_probability(phi_a, phi_b) > 0.5) == truth).mean())
                        curve.append((n, accuracy))
        finally:
            proc.terminate()
            proc.wait(30)
            store.close()
    return {"strategy": strategy, "seed": seed, "curve": curve}


def votes_to(curve, target):
    for n, accuracy in curve:
        if accuracy >= target:
            return n
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=1500, help="candidate pairs in the project")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out pairs (eval prompts)")
    parser.add_argument("--budget", type=int, default=300, help="votes per run")
    parser.add_argument("--refit-every", type=int, default=20)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--annotators", default="clean", help="the world's annotator pool")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.65, 0.70, 0.75])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--out", default=None, help="write all curves as JSON here")
    args = parser.parse_args()

    from prefkit.sim import make_world
    from prefkit.studio.active import TextFeatures

    start = time.time()
    results = []
    for seed in range(args.seeds):
        world = make_world("transitive", seed=seed)
        eval_set = heldout(world, args.heldout, np.random.default_rng(10_000 + seed), TextFeatures())
        for strategy in args.strategies:
            t = time.time()
            result = run(strategy, seed, args, eval_set)
            results.append(result)
            print(f"seed {seed} {strategy:8s} final accuracy {result['curve'][-1][1]:.3f} "
                  f"({time.time() - t:.0f}s)", flush=True)
    budgets = sorted({n for r in results for n, _ in r["curve"]})
    checkpoints = [b for b in budgets if b % 100 == 0] or budgets[-1:]
    print(f"\nvotes to reach held-out accuracy (mean [min, max] over {args.seeds} seeds; budget {args.budget}):")
    header = "| strategy | " + " | ".join(f"acc >= {t:.2f}" for t in args.targets) + " | " + \
        " | ".join(f"acc @ {b}" for b in checkpoints) + " |"
    print(header)
    print("|" + "---|" * (1 + len(args.targets) + len(checkpoints)))
    for strategy in args.strategies:
        runs = [r for r in results if r["strategy"] == strategy]
        cells = []
        for target in args.targets:
            hits = [votes_to(r["curve"], target) for r in runs]
            reached = [h for h in hits if h is not None]
            if len(reached) == len(hits):
                cells.append(f"{np.mean(reached):.0f} [{min(reached)}, {max(reached)}]")
            else:
                cells.append(f">{args.budget} in {len(hits) - len(reached)} of {len(hits)}"
                             + (f" (others {np.mean(reached):.0f})" if reached else ""))
        for b in checkpoints:
            values = [dict(r["curve"]).get(b) for r in runs]
            values = [v for v in values if v is not None]
            cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-")
        print(f"| {strategy} | " + " | ".join(cells) + " |")
    import scipy
    import sqlalchemy
    import starlette

    import prefkit

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"prefkit {prefkit.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"sqlalchemy {sqlalchemy.__version__}, starlette {starlette.__version__}; "
          f"date {time.strftime('%Y-%m-%d')}; wall {time.time() - start:.0f}s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
