"""``prefkit principles``: the principles that explain a preference dataset (Inverse Constitutional AI).

``prefkit principles --data PAIRS [--llm SPEC] [--proposer rules|llm] [--voter rules|llm]
[--clusters 40] [--max-principles 5] [--min-relevance 0.1] [--per-pair 3] [--sample N]
[--test-data PAIRS] [--judge SPEC] [--out DIR] [--json]``

Writes ``DIR/constitution.json`` (the constitution with each principle's votes, support and
relevance, every tested principle and why it was dropped, the reconstruction accuracy and the LLM
counters) and ``DIR/constitution.md``, atomically and only when the whole run succeeded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "principles", help="extract the principles that explain a pairs file (Inverse Constitutional AI)",
        description="Propose principles per pair, cluster them (MiniLM embeddings + KMeans), test each on every "
                    "pair (for/against/abstain/invalid), keep and rank them as ICAI does, and report the "
                    "constitution with each principle's support and the reconstruction accuracy with and "
                    "without it (docs/principles.md). Rule-based proposer and voter by default (no LLM); "
                    "--llm SPEC (hf:DIR, openai:MODEL) proposes and votes with a language model.")
    p.add_argument("--data", required=True, metavar="FILE", help="pairs (TRL prompt/chosen/rejected)")
    p.add_argument("--llm", default=None, metavar="SPEC", help="LLM backend for an llm proposer/voter (docs/llm.md)")
    p.add_argument("--proposer", choices=("rules", "llm"), default=None, help="default: llm with --llm, else rules")
    p.add_argument("--voter", choices=("rules", "llm"), default=None, help="default: llm with --llm, else rules")
    p.add_argument("--judge", default=None, metavar="SPEC",
                   help="LLM judge for the reconstruction accuracy (default: --llm when the voter is llm)")
    p.add_argument("--per-pair", type=int, default=3, help="principles proposed per pair (ICAI: 3)")
    p.add_argument("--clusters", type=int, default=40, help="KMeans clusters of the proposals (ICAI synthetic: 40)")
    p.add_argument("--per-cluster", type=int, default=1, help="principles tested per cluster (ICAI: 1)")
    p.add_argument("--word-markers", type=int, default=0, metavar="N",
                   help="rules proposer: also propose up to N 'uses/avoids the word W' principles per pair "
                        "(default 0; many distinct words crowd the clustering, docs/principles.md)")
    p.add_argument("--max-principles", type=int, default=5, help="constitution size (ICAI synthetic: 5)")
    p.add_argument("--min-relevance", type=float, default=0.1,
                   help="a principle needs votes for on at least this fraction of pairs (ICAI: 0.1)")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="use N pairs drawn at random (default all)")
    p.add_argument("--test-data", default=None, metavar="FILE", help="held-out pairs for the reconstruction accuracy")
    p.add_argument("--encoder", default=None, metavar="DIR",
                   help="sentence encoder for clustering (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="DIR", help="write constitution.json and constitution.md here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from prefkit.data import read_pairs
    from prefkit.preference import icai
    from prefkit.preference.encoder import SentenceEncoder

    for name in ("per_pair", "clusters", "per_cluster", "max_principles"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    proposer_kind = args.proposer or ("llm" if args.llm else "rules")
    voter_kind = args.voter or ("llm" if args.llm else "rules")
    if "llm" in (proposer_kind, voter_kind) and not args.llm:
        raise ValueError("an llm proposer or voter needs --llm SPEC (hf:DIR, openai:MODEL; docs/llm.md)")
    if proposer_kind == "llm" and voter_kind == "rules":
        raise ValueError("the rule voter can only test rule principles; an llm proposer needs --voter llm")
    if args.word_markers and proposer_kind != "rules":
        raise ValueError("--word-markers applies to the rules proposer")
    if args.word_markers < 0:
        raise ValueError("--word-markers must be >= 0")
    records, _ = read_pairs(args.data)
    if args.sample is not None:
        if args.sample < 1:
            raise ValueError("--sample must be at least 1")
        pick = np.random.default_rng(args.seed).permutation(len(records))[: args.sample]
        records = [records[i] for i in sorted(pick)]
    test = read_pairs(args.test_data)[0] if args.test_data else None
    backend = _backend(args.llm) if args.llm else None
    proposer: Any = (icai.LLMProposer(backend, per_pair=args.per_pair, seed=args.seed) if proposer_kind == "llm"
                     else icai.RuleProposer(per_pair=args.per_pair, words_per_pair=args.word_markers, seed=args.seed))
    voter: Any = icai.LLMVoter(backend, seed=args.seed) if voter_kind == "llm" else icai.RuleVoter()
    judge = None
    judge_spec = args.judge or (args.llm if voter_kind == "llm" else None)
    if judge_spec:
        from prefkit.preference.llm_judge import LLMJudge

        judge = LLMJudge(backend) if judge_spec == args.llm and backend is not None else LLMJudge(_backend(judge_spec))
    encoder = SentenceEncoder.load(args.encoder)
    result = icai.extract(records, proposer=proposer, voter=voter, embed=encoder.encode, clusters=args.clusters,
                          per_cluster=args.per_cluster, max_principles=args.max_principles, min_relevance=args.min_relevance, seed=args.seed,
                          judge=judge, test_pairs=test)
    payload = {"data": args.data, **result.to_json()}
    if backend is not None:
        payload["llm"] = backend.summary()
    if args.out:
        _write(args.out, payload)
    if args.json:
        print(json.dumps({k: v for k, v in payload.items() if k != "tested"}))
    else:
        print(_markdown(payload))
    return 0


def _backend(spec: str) -> Any:
    from prefkit.llm import LLMConfig, make_backend

    return make_backend(spec, LLMConfig.from_env())


def _markdown(payload: dict[str, Any]) -> str:
    rec = payload["reconstruction"]
    lines = [f"# Constitution of {payload['data']}", "",
             f"{payload['pairs']} pairs; {payload['proposals']} proposals ({payload['distinct_proposals']} distinct) "
             f"by the {payload['proposer']} proposer, {payload['clusters']} clusters, {payload['tested_principles']} "
             f"principles tested by the {payload['voter']} voter ({payload['invalid_votes']} invalid votes).", "",
             "| rank | principle | support | relevance | for | against | abstain | invalid |",
             "|---|---|---|---|---|---|---|---|"]
    for p in payload["constitution"]:
        lines.append(f"| {p['rank']} | {p['text']} | {p['support']:.3f} | {p['relevance']:.3f} | {p['for']} | "
                     f"{p['against']} | {p['abstain']} | {p['invalid']} |")
    if not payload["constitution"]:
        lines.append("| - | no principle passed the filter | | | | | | |")
    lines += ["", f"Reconstruction accuracy ({rec['annotator']}): {rec['with_constitution']:.3f} with the "
                  f"constitution, {rec['without_constitution']:.3f} without."]
    if "test_with_constitution" in rec:
        lines.append(f"Held-out: {rec['test_with_constitution']:.3f} with the constitution"
                     + (f", {rec['test_without_constitution']:.3f} without." if "test_without_constitution" in rec
                        else "."))
    return "\n".join(lines)


def _write(out: str, payload: dict[str, Any]) -> None:
    from prefkit._atomic import atomic_directory

    with atomic_directory(out) as staging:
        (staging / "constitution.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (staging / "constitution.md").write_text(_markdown(payload) + "\n", encoding="utf-8")
