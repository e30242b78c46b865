"""The GPM cyclic-preference experiment (Zhang et al. 2024, arXiv 2410.02197), in two forms.

Responses of T types that beat each other in a cycle (``prefkit.preference.synthetic``), mixed
with filler that carries no preference, under an irrelevant prompt. Models are trained on some
prompts and filler and evaluated on unseen ones (balanced over the pairs of types):

- ``features``: a response is ``[one_hot(type), 8 random filler dims]``, the prompt 4 random
  dims; an MLP backbone (2 x 64) with a BT head or a GPM head;
- ``text``: a response is its type word(s) shuffled among 3-6 filler words, the prompt a
  random phrase; the built-in tiny Llama backbone (word-level tokenizer fitted on the training
  texts, so the 12 held-out filler words are unknown to it).

Sets: a 3-cycle (rock > scissors > paper > rock), a 5-cycle (each type beats the next two), and
a mixed set of 3 qualities x 3 styles (higher quality wins; equal quality: the style cycle).
"bound" is the best accuracy any scalar score can reach on the evaluated pairs
(:func:`prefkit.preference.synthetic.best_ordering_accuracy`).

    PYTHONPATH=. python benchmarks/preference_cyclic.py [--form features|text|all] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from prefkit.config import RunConfig, TinyConfig, TrainConfig, load
from prefkit.engine.preference.data import pair_data, tensor_pair_data
from prefkit.engine.preference.train import fit
from prefkit.preference import FeatureBackbone, build_head, build_model, evaluate_pairs
from prefkit.preference.synthetic import (
    best_ordering_accuracy,
    cyclic_tournament,
    feature_pairs,
    lexicographic,
    text_pairs,
    win_counts,
)

SETS = {
    "3-cycle": (cyclic_tournament(3), [["rock"], ["scissors"], ["paper"]]),
    "5-cycle": (cyclic_tournament(5), [["ruby"], ["topaz"], ["jade"], ["opal"], ["onyx"]]),
    "mixed 3x3": (lexicographic(3, 3),
                  [[q, s] for q in ("poor", "fine", "superb") for s in ("formal", "casual", "playful")]),
}
PAPER = "Cyclic No. 1: BT 62.4, GPM 100.0; Cyclic No. 3: BT 50.0, GPM 100.0 (UltraFeedback-based, 2B-8B LLMs)"


def _cfg(out: str, kind: str, *, steps: int, batch: int, lr: float, seed: int, dim: int) -> RunConfig:
    cfg = load(RunConfig, None, [f"out={out}", f"rm.kind={kind}", f"rm.dim={dim}", "rm.dropout=0.0",
                                 "rm.tau=0.1", f"seed={seed}"])
    return replace(cfg, train=TrainConfig(steps=steps, batch_size=batch, lr=lr, log_every=10**9,
                                          max_grad_norm=1.0, max_length=64))


def features_run(name: str, kind: str, seed: int, args: argparse.Namespace) -> tuple[float, float]:
    beats, _ = SETS[name]
    rng = np.random.default_rng(seed)
    pools = {split: (rng.normal(size=(64, 8)), rng.normal(size=(64, 4))) for split in ("train", "eval")}
    train = feature_pairs(beats, args.train_pairs, rng, filler=pools["train"][0], prompts=pools["train"][1])
    test = feature_pairs(beats, args.eval_pairs, rng, filler=pools["eval"][0], prompts=pools["eval"][1],
                         balanced=True)
    torch.manual_seed(seed)
    backbone = FeatureBackbone(4 + len(beats) + 8, 64, 2, prompt_dim=4)  # [prompt, response]
    head = build_head(kind, 64, dim=args.dim, tau=0.1)
    model = build_model(kind, backbone, head)
    data = tensor_pair_data(backbone, train["prompts"], train["chosen"], train["rejected"])
    with tempfile.TemporaryDirectory() as out:
        fit(_cfg(out, kind, steps=args.steps, batch=64, lr=3e-3, seed=seed, dim=args.dim), model, data)
    p = model.prob(test["prompts"], test["chosen"], test["rejected"], batch_size=4096)
    bound = best_ordering_accuracy(win_counts(test["winner"], test["loser"], len(beats)))
    return float((p > 0.5).float().mean()), bound


def text_run(name: str, kind: str, seed: int, args: argparse.Namespace) -> tuple[float, float]:
    from prefkit.engine.preference.train import build_preference_model

    beats, words = SETS[name]
    rng = np.random.default_rng(seed)
    topics = [f"topic{i}" for i in range(30)]
    phrases = sorted({f"tell me about {a} {b} {c}" for a, b, c in rng.choice(topics, size=(2000, 3))})
    rng.shuffle(phrases)
    train_prompts, eval_prompts = phrases[:200], phrases[200:400]
    filler = [f"word{i}" for i in range(60)]
    train, _, _ = text_pairs(beats, args.train_pairs, rng, type_words=words, filler_words=filler[:48],
                             prompts=train_prompts)
    test, winners, losers = text_pairs(beats, args.eval_pairs, rng, type_words=words, filler_words=filler,
                                       prompts=eval_prompts, balanced=True)
    with tempfile.TemporaryDirectory() as out:
        steps = args.mixed_text_steps if name.startswith("mixed") else args.text_steps
        cfg = _cfg(out, kind, steps=steps, batch=32, lr=1e-3, seed=seed, dim=args.dim)
        cfg = replace(cfg, tiny=TinyConfig(hidden_size=32, layers=1, heads=2))
        model = build_preference_model(cfg, train, torch.device("cpu"))
        fit(cfg, model, pair_data(model.backbone, train, cfg.rm))
    accuracy = evaluate_pairs(model, test, batch_size=256)["accuracy"]
    return float(accuracy), best_ordering_accuracy(win_counts(winners, losers, len(beats)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--form", choices=("features", "text", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (features)")
    parser.add_argument("--text-steps", type=int, default=600, help="optimizer steps (text)")
    parser.add_argument("--mixed-text-steps", type=int, default=3000,
                        help="optimizer steps (text, mixed set: GPM leaves the transitive-only saddle late)")
    parser.add_argument("--train-pairs", type=int, default=4000)
    parser.add_argument("--eval-pairs", type=int, default=1800, help="a multiple of 180 (balanced)")
    parser.add_argument("--dim", type=int, default=4, help="GPM embedding size 2k")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    forms = ("features", "text") if args.form == "all" else (args.form,)
    print("| form | set | BT held-out acc. | scalar bound | GPM held-out acc. | seeds | time (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for form in forms:
        run = features_run if form == "features" else text_run
        for name in SETS:
            start = time.perf_counter()
            results = {kind: [run(name, kind, seed, args) for seed in range(args.seeds)] for kind in ("bt", "gpm")}
            bt = np.array([a for a, _ in results["bt"]]) * 100
            gp = np.array([a for a, _ in results["gpm"]]) * 100
            bound = np.array([b for _, b in results["bt"]]) * 100
            print(f"| {form} | {name} | {bt.mean():.1f} ({bt.min():.1f}-{bt.max():.1f}) | {bound.mean():.1f} | "
                  f"{gp.mean():.1f} ({gp.min():.1f}-{gp.max():.1f}) | {args.seeds} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)
    print(f"Paper (index.html): {PAPER}")


if __name__ == "__main__":
    main()
