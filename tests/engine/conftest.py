import numpy as np

from prefkit.config import RunConfig, load
from prefkit.data import ListRecord, PairRecord

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def make_pairs(n: int, seed: int = 0) -> list[PairRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = f"topic {WORDS[i % 4]} please"
        good = " ".join(rng.choice(WORDS[:6], size=rng.integers(2, 6)))
        bad = " ".join(rng.choice(WORDS[6:], size=rng.integers(2, 6)))
        out.append(PairRecord(prompt, good, bad, source=("mem.jsonl", i + 1)))
    return out


def make_lists(n: int, k: int = 3, seed: int = 0) -> list[ListRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        responses = [" ".join(rng.choice(WORDS, size=rng.integers(2, 5))) for _ in range(k)]
        out.append(ListRecord(f"topic {WORDS[i % 4]}", responses, [float(s) for s in rng.integers(0, 4, size=k)]))
    return out


def tiny_config(tmp_path, method: str = "dpo", *overrides: str) -> RunConfig:
    return load(
        RunConfig,
        None,
        [
            f"method={method}",
            f"out={tmp_path / 'run'}",
            "tiny.hidden_size=16",
            "tiny.layers=1",
            "tiny.heads=2",
            "train.steps=4",
            "train.batch_size=4",
            "train.lr=1e-2",
            "train.max_length=32",
            "train.log_every=1",
            *overrides,
        ],
    )
