"""Does ICAI recover planted principles? The rule-based pipeline on the world's planted pools.

Pairs come from ``prefkit.sim.principles.planted_pairs``: each vote is cast by a planted
principle with its share (the rest follow P*). ``prefkit.preference.icai`` proposes rule
principles per pair (3 per pair; ``--word-markers N`` adds "uses/avoids the word W" ones),
clusters the distinct proposals (all-MiniLM-L6-v2 + KMeans,
40 clusters), votes every kept principle on every pair, filters and ranks as ICAI does, and keeps
5. A planted principle is *recovered* when its rule principle is among the top ``len(planted)``;
its measured support ``(for - against) / (for + against)`` is compared with its planted share.
Reconstruction: the constitution's majority vote on the training pairs and on held-out pairs
(eval prompts), against chance.

    PYTHONPATH=. python benchmarks/principles_recovery.py [--pairs 2000] [--seeds 3]
        [--word-markers 1] [--per-cluster 3]

Prints one line per (pool, seed) and a summary line per pool.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from prefkit.preference import icai
from prefkit.preference.encoder import SentenceEncoder
from prefkit.sim import make_world
from prefkit.sim.principles import planted_pairs, resolve_planted

RULE_TEXT = {
    "longer": "Select the longer response.",
    "shorter": "Select the shorter response.",
    "subject": "Select the response that repeats more words from the prompt.",
    "opener": "Select the response that opens with an affirmation or greeting (sure, certainly, hello).",
}
POOLS = ("longer:0.4,subject:0.3", "shorter:0.35,subject:0.25", "opener:0.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--test-pairs", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pools", nargs="+", default=list(POOLS))
    parser.add_argument("--word-markers", type=int, default=0, help="word-marker principles proposed per pair")
    parser.add_argument("--per-cluster", type=int, default=1, help="principles tested per cluster")
    args = parser.parse_args()
    encoder = SentenceEncoder.load()
    for pool in args.pools:
        planted = resolve_planted(pool)
        rows = []
        for seed in range(args.seeds):
            began = time.perf_counter()
            world = make_world("transitive", seed=seed)
            train = planted_pairs(world, args.pairs, np.random.default_rng(seed), principles=pool)
            test = planted_pairs(world, args.test_pairs, np.random.default_rng(seed + 100), principles=pool,
                                 split="eval")
            proposer = icai.RuleProposer(seed=seed, words_per_pair=args.word_markers)
            result = icai.extract(train, proposer=proposer, voter=icai.RuleVoter(), embed=encoder.encode,
                                  clusters=40, per_cluster=args.per_cluster, max_principles=5, test_pairs=test,
                                  seed=seed)
            ranked = [p.text for p in result.principles]
            top = set(ranked[: len(planted)])
            support = {p.name: next((s.support for s in result.principles if s.text == RULE_TEXT[p.name]), None)
                       for p in planted}
            rec = result.summary["reconstruction"]
            recovered = all(RULE_TEXT[p.name] in top for p in planted)
            rows.append((recovered, support, rec["with_constitution"], rec["test_with_constitution"]))
            shown = ", ".join(f"{p.name} {p.share:.2f}->{support[p.name]:.3f}" if support[p.name] is not None
                              else f"{p.name} {p.share:.2f}->dropped" for p in planted)
            print(f"pool={pool} seed={seed} recovered={recovered} support[{shown}] "
                  f"ranks={[ranked.index(RULE_TEXT[p.name]) + 1 if RULE_TEXT[p.name] in ranked else None for p in planted]} "
                  f"reconstruction={rec['with_constitution']:.3f} held_out={rec['test_with_constitution']:.3f} "
                  f"distinct={result.summary['distinct_proposals']} wall_s={time.perf_counter() - began:.1f}",
                  flush=True)
        means = {p.name: np.mean([r[1][p.name] for r in rows if r[1][p.name] is not None] or [np.nan])
                 for p in planted}
        spread = {p.name: np.std([r[1][p.name] for r in rows if r[1][p.name] is not None] or [np.nan])
                  for p in planted}
        print(f"SUMMARY pool={pool} recovered={sum(r[0] for r in rows)}/{len(rows)} "
              + " ".join(f"{n}: planted {p.share:.2f} measured {means[n]:.3f}±{spread[n]:.3f}"
                         for n, p in ((p.name, p) for p in planted))
              + f" reconstruction {np.mean([r[2] for r in rows]):.3f} held_out {np.mean([r[3] for r in rows]):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
