"""Time every registry loss, forward and forward+backward, on CPU.

Sizes: B = 4096 pairs (pairwise, reward, online), B = 512 lists of K = 8 (listwise) and
B = 512 responses of up to T = 64 tokens, 128 prompts x 4 samples (token: the RL baselines;
the rollout's advantages are computed once, outside the timing).
Each cell is the median over ``--repeats`` runs after warm-up, in microseconds, with torch's
default thread count unless ``--threads`` is given. Value checks run in the default ``"auto"``
mode (on for CPU tensors); the last column repeats fwd+bwd with them switched off.

    PYTHONPATH=. python benchmarks/losses.py [--repeats 50] [--threads N] [--dtype float32]
        [--kind token ...]

Prints a markdown table (the one in benchmarks/RESULTS.md, "## Losses").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from prefkit import losses as L

PAIRS, LISTS, K = 4096, 512, 8
SEQUENCES, TOKENS, SAMPLES = 512, 64, 4


def _pairwise_inputs(g: torch.Generator, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    def draw(scale: float = 5.0) -> torch.Tensor:
        return -torch.rand(PAIRS, generator=g, dtype=dtype) * scale - 0.1

    return {
        "c": draw(),
        "r": draw(),
        "rc": draw(),
        "rr": draw(),
        "lc": torch.randint(1, 64, (PAIRS,), generator=g).to(dtype),
        "lr": torch.randint(1, 64, (PAIRS,), generator=g).to(dtype),
        "p": torch.rand(PAIRS, generator=g, dtype=dtype),
        "p2": torch.rand(PAIRS, generator=g, dtype=dtype),
    }


def build_cases(
    dtype: torch.dtype,
) -> dict[str, tuple[str, Callable[[], tuple[torch.Tensor, list]]]]:
    """name -> (size label, make) where make() returns (loss tensor [B], leaves with grads)."""
    g = torch.Generator().manual_seed(0)
    x = _pairwise_inputs(g, dtype)
    logps = -torch.rand(LISTS, K, generator=g, dtype=dtype) * 20
    ref_logps = -torch.rand(LISTS, K, generator=g, dtype=dtype) * 20
    scores = torch.rand(LISTS, K, generator=g, dtype=dtype)
    mask = torch.ones(LISTS, K, dtype=torch.bool)
    mask[::3, -2:] = False
    target = L.adpo_targets_from_rewards(scores, mask)
    emb_c, emb_r = (torch.randn(PAIRS, 8, generator=g, dtype=dtype) for _ in range(2))
    cases: dict[str, tuple[str, Callable[[], tuple[torch.Tensor, list]]]] = {}

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone().requires_grad_()

    for name, spec in L.LOSSES.items():
        if spec.kind == "pairwise":

            def make(spec=spec):
                c, r = leaf(x["c"]), leaf(x["r"])
                extra = (
                    {"chosen_lengths": x["lc"], "rejected_lengths": x["lr"]}
                    if spec.needs_lengths
                    else {}
                )
                rc, rr = (x["rc"], x["rr"]) if spec.needs_reference else (None, None)
                extra.update({k: x["lc"] if k == "gold_lengths" else x["p2"] - 1 for k in spec.inputs})
                return spec.fn(c, r, rc, rr, **extra), [c, r]

            cases[name] = (f"B={PAIRS}", make)
        elif spec.kind == "unpaired":

            def make(spec=spec):
                c = leaf(x["c"])
                extra = {k: x["r"] if k == "kl_logps" else x["rr"] for k in spec.inputs}
                return spec.fn(c, x["rc"], x["p"] > 0.5, **extra), [c]

            cases[name] = (f"B={PAIRS}", make)
        elif spec.kind == "listwise":

            def make(spec=spec):
                lp = leaf(logps)
                labels = target if spec.targets_from_scores else scores
                return spec.fn(lp, ref_logps, labels, mask=mask), [lp]

            cases[name] = (f"B={LISTS}, K={K}", make)
        elif spec.kind == "token":
            old = -torch.rand(SEQUENCES, TOKENS, generator=g, dtype=dtype) * 3 - 0.05
            lengths = torch.randint(1, TOKENS + 1, (SEQUENCES,), generator=g)
            resp = torch.arange(TOKENS)[None, :] < lengths[:, None]
            values = torch.randn(SEQUENCES, TOKENS, generator=g, dtype=dtype)
            rollout = L.Rollout(torch.rand(SEQUENCES, generator=g, dtype=dtype), resp, old,
                                old + 0.1, values, SAMPLES)  # fmt: skip
            adv = spec.advantage_fn(rollout)
            engine = (
                {"max_completion_length": TOKENS}
                if "max_completion_length" in spec.engine_params
                else {}
            )

            def make(spec=spec, old=old, resp=resp, adv=adv, values=values, engine=engine):
                lp = leaf(old + 0.05)
                per_seq = spec.fn(lp, old, old + 0.1, adv.advantages, resp, **engine)
                if spec.value_fn is None:
                    return per_seq, [lp]
                v = leaf(values + 0.1)
                return per_seq + spec.value_fn(v, values, adv.returns, resp), [lp, v]

            cases[name] = (f"B={SEQUENCES}, T={TOKENS}", make)

    def bt():
        c, r = leaf(x["c"]), leaf(x["r"])
        return L.bradley_terry(c, r, margin=x["p"], label_smoothing=0.1), [c, r]

    def gpm():
        a, b = leaf(emb_c), leaf(emb_r)
        return L.gpm(a, b), [a, b]

    def online_ipo():
        c, r = leaf(x["c"]), leaf(x["r"])
        return L.online_ipo(c, r, x["rc"], x["rr"], x["p"] - x["p2"]), [c, r]

    def nash_md_pg():
        c = leaf(x["c"])
        return L.nash_md_pg(c, x["rc"], x["p"]), [c]

    def p3o():
        c, r = leaf(x["c"]), leaf(x["r"])
        return L.p3o(c, r, x["rc"], x["rr"], x["c"], x["r"], x["p"], x["p2"]), [c, r]

    def dno():
        c, r = leaf(x["c"]), leaf(x["r"])
        return L.dno(c, r, x["rc"], x["rr"], x["p"], x["p2"]), [c, r]

    def sppo():
        c = leaf(x["c"])
        return L.sppo(c, x["rc"], x["p"]), [c]

    def gpo():
        c = leaf(x["c"])
        return L.gpo(c, x["rc"], x["p"] - 0.5), [c]

    def grao():
        c, r = leaf(x["c"]), leaf(x["r"])
        return L.grao(c, x["lc"], r, x["lr"], x["p"] - 0.5, x["p2"] - 0.5), [c, r]

    def superhf():
        c = leaf(x["c"])
        return L.superhf(c, x["rc"], x["lc"]), [c]

    for fn in (bt, gpm, online_ipo, nash_md_pg, p3o, dno, sppo, gpo, grao, superhf):
        name = "bradley_terry" if fn is bt else fn.__name__
        cases[name] = (f"B={PAIRS}", fn)

    mpo = L.combined_spec({"dpo": 0.8, "bco_pair": 0.2}, nll_weight=1.0)

    def combined():
        c, r = leaf(x["c"]), leaf(x["r"])
        return mpo.fn(c, r, x["rc"], x["rr"], chosen_lengths=x["lc"]), [c, r]

    cases["combine(0.8 dpo + 0.2 bco_pair + nll)"] = (f"B={PAIRS}", combined)
    missing = set(L.LOSSES) - set(cases)
    assert not missing, f"no benchmark case for {missing}"
    return cases


def median_us(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--kind",
        action="append",
        default=None,
        help="time only these loss kinds (repeatable; default: all)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    cases = build_cases(dtype)

    def forward(make):
        with torch.no_grad():
            make()[0].mean()

    def forward_backward(make):
        loss, _ = make()
        loss.mean().backward()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"median of {args.repeats}, load average before the run {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| loss | kind | size | forward (µs) | fwd+bwd (µs) | fwd+bwd, checks off (µs) |")
    print("|---|---|---|---:|---:|---:|")
    for name, (size, make) in cases.items():
        kind = L.LOSSES[name].kind if name in L.LOSSES else "pairwise"
        if args.kind and kind not in args.kind:
            continue
        fwd = median_us(lambda make=make: forward(make), args.repeats)
        both = median_us(lambda make=make: forward_backward(make), args.repeats)
        with L.validation("off"):
            unchecked = median_us(lambda make=make: forward_backward(make), args.repeats)
        print(f"| `{name}` | {kind} | {size} | {fwd:.0f} | {both:.0f} | {unchecked:.0f} |")


if __name__ == "__main__":
    main()
