"""Finding flipped labels: ensemble strength vs BALD vs loss history, and retraining after repair.

Clean pairs are labelled by a known preference; a fraction (20%) of them is flipped at random.
Each detector ranks the pairs and flags as many as were flipped (a fixed budget, so precision
equals recall); then a reward model is retrained on the data as given (noisy), with the flagged
pairs flipped, smoothed (label <- sigmoid(mu)) or dropped, with global label smoothing (0.1), and
on the clean labels (the ceiling), and evaluated on clean held-out pairs.

Detectors (``prefkit.preference.noise``): ensemble strength (M = 5 Bradley-Terry models, seeds and
data orders differ; lowest mean logit first; Secrets of RLHF II), BALD from MC-dropout (T = 20
passes; one model as in UPO, and averaged over the 5), the loss history (each pair's mean training
loss, z-scored; DBPM-style; one model and the 5-model mean), and random flags for reference.

Settings:

- ``features``: responses are 8-d Gaussian vectors with utility ``u = w.x + 0.5 x0 x1``; chosen
  is the higher utility; MLP backbone (2 x 32) with dropout 0.1 before the head; 2000 training
  pairs, 4000 test pairs.
- ``text``: the simulated transitive world (``prefkit.sim``) with labels from its true
  preference (chosen is the response with P* > 1/2); the tiny Llama preset (hidden 32, 1 layer);
  1000 training pairs, 1000 test pairs on held-out prompts.

    PYTHONPATH=. python benchmarks/preference_noise.py [--form features|text|all] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from prefkit.config import RunConfig, TinyConfig, load
from prefkit.data.records import PairRecord
from prefkit.engine.preference.data import pair_data, tensor_pair_data
from prefkit.engine.preference.train import build_preference_model, fit
from prefkit.losses import preference_strength
from prefkit.preference import FeatureBackbone, build_head, build_model, noise
from prefkit.preference.evaluation import accuracy_from_probabilities

FLIP = 0.2
MEMBERS = 5
PASSES = 20


@dataclass
class Task:
    """Training pairs (oriented by the clean label, then flipped where ``flipped``) and a test set."""

    train: Any
    flipped: torch.Tensor
    test: Any


def _cfg(out: str, seed: int, steps: int, lr: float, batch: int, **rm: Any) -> RunConfig:
    overrides = [f"out={out}", f"seed={seed}", f"train.steps={steps}", f"train.lr={lr}",
                 f"train.batch_size={batch}", "train.log_every=1000000", "rm.kind=bt", "rm.dropout=0.1"]
    overrides += [f"rm.{k}={v}" for k, v in rm.items()]
    return load(RunConfig, None, overrides)


class Features:
    """Feature vectors with a known utility."""

    steps, lr, batch = 600, 3e-3, 64

    def make(self, seed: int) -> Task:
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(8, generator=g)

        def utility(x: torch.Tensor) -> torch.Tensor:
            return x @ w + 0.5 * x[:, 0] * x[:, 1]

        def pairs(n: int) -> dict[str, torch.Tensor]:
            a, b = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
            better = (utility(a) > utility(b))[:, None]
            return {"prompts": torch.zeros(n, 0), "chosen": torch.where(better, a, b),
                    "rejected": torch.where(better, b, a), "labels": torch.ones(n)}

        train, test = pairs(2000), pairs(4000)
        flipped = torch.rand(2000, generator=g) < FLIP
        return Task(self.relabel(train, flipped, "flip"), flipped, test)

    @staticmethod
    def relabel(data: dict, flags: torch.Tensor, action: str, strength: torch.Tensor | None = None) -> dict:
        data = {k: v.clone() for k, v in data.items()}
        if action == "flip":
            c, r = data["chosen"].clone(), data["rejected"].clone()
            data["chosen"][flags], data["rejected"][flags] = r[flags], c[flags]
        elif action == "smooth":
            data["labels"][flags] = torch.sigmoid(strength[flags])
        elif action == "drop":
            data = {k: v[~flags] for k, v in data.items()}
        return data

    def train(self, data: dict, seed: int, **rm: Any):
        with tempfile.TemporaryDirectory() as out:
            cfg = _cfg(out, seed, self.steps, self.lr, self.batch, **rm)
            torch.manual_seed(seed)
            backbone = FeatureBackbone(8, 32, 2)
            model = build_model("bt", backbone, build_head("bt", 32, dropout=cfg.rm.dropout))
            prepared = tensor_pair_data(backbone, data["prompts"], data["chosen"], data["rejected"], data["labels"])
            result = fit(cfg, model, prepared)
        return model, result.losses.mean().float()

    @staticmethod
    def logits(model, data: dict, dropout: bool = False) -> torch.Tensor:
        return model.logits(data["prompts"], data["chosen"], data["rejected"], batch_size=8192, dropout=dropout)

    def accuracy(self, model, data: dict) -> float:
        return float((self.logits(model, data) > 0).float().mean())

    @staticmethod
    def size(data: dict) -> int:
        return len(data["labels"])


class Text:
    """The simulated transitive world, labelled by its true preference, with the tiny preset."""

    steps, lr, batch = 300, 3e-3, 32

    def make(self, seed: int) -> Task:
        from prefkit.sim import make_world

        world = make_world("transitive", seed=seed, annotators="clean")
        rng = np.random.default_rng(seed)

        def pairs(n: int, split: str) -> list[PairRecord]:
            records = world.pairs(n, rng, split=split)
            p = world.true_preference([r.prompt for r in records], [r.chosen for r in records],
                                      [r.rejected for r in records])
            return [r if q > 0.5 else replace(r, chosen=r.rejected, rejected=r.chosen) for r, q in zip(records, p)]

        train, test = pairs(1000, "train"), pairs(1000, "eval")
        flipped = torch.from_numpy(rng.random(1000) < FLIP)
        return Task(noise.relabel(train, flipped, "flip"), flipped, test)

    @staticmethod
    def relabel(data: list, flags: torch.Tensor, action: str, strength: torch.Tensor | None = None) -> list:
        return noise.relabel(data, flags, action, strength_mean=strength)

    def train(self, data: list, seed: int, **rm: Any):
        with tempfile.TemporaryDirectory() as out:
            cfg = _cfg(out, seed, self.steps, self.lr, self.batch, **rm)
            cfg = replace(cfg, tiny=TinyConfig(hidden_size=32, layers=1, heads=2))
            model = build_preference_model(cfg, data, torch.device("cpu"))
            result = fit(cfg, model, pair_data(model.backbone, data, cfg.rm))
        return model, result.losses.mean().float()

    @staticmethod
    def logits(model, data: list, dropout: bool = False) -> torch.Tensor:
        return noise.pair_logits(model, data, batch_size=256, dropout=dropout)

    def accuracy(self, model, data: list) -> float:
        return accuracy_from_probabilities(torch.sigmoid(self.logits(model, data)), torch.ones(len(data)))["accuracy"]

    @staticmethod
    def size(data: list) -> int:
        return len(data)


def run(form, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    task = form.make(seed)
    truth = task.flipped
    budget = int(truth.sum())
    members = [form.train(task.train, seed * 100 + m) for m in range(MEMBERS)]
    logits = torch.stack([form.logits(model, task.train) for model, _ in members])
    mean, _ = preference_strength(logits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        balds = [noise.bald(torch.stack([torch.sigmoid(form.logits(model, task.train, dropout=True))
                                         for _ in range(PASSES)])) for model, _ in members]
    histories = [noise.loss_outlier_scores(losses) for _, losses in members]
    g = torch.Generator().manual_seed(seed)
    scores = {
        f"ensemble strength (M={MEMBERS})": -mean,
        f"BALD, 1 model (T={PASSES})": balds[0],
        f"BALD, mean of {MEMBERS} models": torch.stack(balds).mean(0),
        "loss history, 1 model": histories[0],
        f"loss history, mean of {MEMBERS}": torch.stack(histories).mean(0),
        "random": torch.rand(len(truth), generator=g),
    }
    detection = {name: noise.precision_recall(noise.flag_top(s, budget), truth)[0] for name, s in scores.items()}
    flags = noise.flag_top(-mean, budget)
    variants = {
        "noisy labels (as given)": (task.train, {}),
        "flip flagged (ensemble)": (form.relabel(task.train, flags, "flip"), {}),
        "smooth flagged: label <- sigmoid(mu)": (form.relabel(task.train, flags, "smooth", mean), {}),
        "drop flagged": (form.relabel(task.train, flags, "drop"), {}),
        "global label smoothing 0.1": (task.train, {"label_smoothing": 0.1}),
        "clean labels (ceiling)": (form.relabel(task.train, truth, "flip"), {}),
    }
    accuracy = {name: form.accuracy(form.train(data, seed * 100 + 99, **rm)[0], task.test)
                for name, (data, rm) in variants.items()}
    accuracy["ensemble member on noisy labels (mean of 5)"] = float(np.mean([form.accuracy(m, task.test)
                                                                            for m, _ in members]))
    return detection, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--form", choices=("features", "text", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    forms = {"features": Features(), "text": Text()}
    for name in (("features", "text") if args.form == "all" else (args.form,)):
        start = time.perf_counter()
        results = [run(forms[name], seed) for seed in range(args.seeds)]
        print(f"\n### {name} ({args.seeds} seeds, {FLIP:.0%} flipped, {time.perf_counter() - start:.0f} s)\n")
        print("| detector | precision = recall at budget (mean, min-max) |")
        print("|---|---:|")
        for key in results[0][0]:
            values = np.array([r[0][key] for r in results]) * 100
            print(f"| {key} | {values.mean():.1f} ({values.min():.1f}-{values.max():.1f}) |")
        print("\n| reward model trained on | clean test accuracy (mean, min-max) |")
        print("|---|---:|")
        for key in results[0][1]:
            values = np.array([r[1][key] for r in results]) * 100
            print(f"| {key} | {values.mean():.1f} ({values.min():.1f}-{values.max():.1f}) |", flush=True)


if __name__ == "__main__":
    main()
