"""Fault injection: kill -9 `prefkit` runs at random instants, resume them, compare with an
uninterrupted run.

Three workloads (an offline method, `prefkit train --method dpo`; an online method,
`prefkit train --method online_dpo --world transitive`; a reward model, `prefkit rm train
--kind bt`), each on a tiny model, and three phases:

- ``train``: a random instant of the training loop (``train.save_every=5``, so most instants
  fall in forward/backward and up to 4 logged steps are lost and must be re-done);
- ``checkpoint``: a random delay after the staging directory of a random step's checkpoint
  appears (``train.save_every=1``);
- ``final``: a random delay after the last step's checkpoint begins (or, for a run resumed at
  the last step, after it starts), until ``metrics.json`` is written: the final checkpoint, the
  saved model and the summary.

The delays are drawn uniformly up to the duration of that phase, measured on an uninterrupted
(reference) run of the same workload. Nothing in prefkit is patched. Every killed run is
resumed with ``--resume`` (a run killed before its first checkpoint is restarted without it),
and a resumed run is killed again, up to ``--kills-per-trial`` times, before it is left to
finish. The finished run is compared with the reference: the sha256 of every tensor of its
safetensors outputs and of its last checkpoint (model, optimizer, generator state), its
``metrics.jsonl`` rows and its ``metrics.json`` (keys that time things left out), and its
files (staging names, the lock, anything the reference does not have count as leftovers).
After every kill, ``checkpoints/latest`` must name a complete, readable checkpoint.

    PYTHONPATH=. python benchmarks/faults.py [--kills 20] [--kills-per-trial 4] [--seed 0]
        [--launcher fork|exec] [--workloads dpo online_dpo rm_bt] [--phases train checkpoint final]
        [--keep DIR] [--prefkit-root DIR]

Launchers: ``fork`` (the default) forks every run from a zygote process that imported prefkit
once (``tests/engine/fault_tools.py``); each child runs the CLI's ``main(argv)``, as
``python -m prefkit`` does, so a start costs milliseconds instead of the 4-10 s of imports on a
shared 2-core machine: the defaults (20 kills per cell, up to 4 per trial, ~270 starts) take
~12-15 minutes there. ``exec`` starts ``python -m prefkit`` each time (a fresh interpreter, its
own hash seed): the check that the zygote hides nothing; with ``--kills 3 --kills-per-trial 3``
it takes ~8 minutes. ``--prefkit-root DIR`` runs another checkout's prefkit (``git archive
COMMIT prefkit | tar -x -C DIR``) for before/after tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.engine.conftest import make_pairs
from tests.engine.fault_tools import (
    ExecLauncher,
    ForkLauncher,
    checkpoint_problem,
    compare,
    kill_after,
    landed,
    latest_step,
    leftovers,
    metrics_inode,
    staging_exists,
    started_training,
    subprocess_env,
    wait_until,
)

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.log_every=1", "train.threads=1"]
OFFLINE = [*TINY, "train.batch_size=4", "train.max_length=32", "train.lr=1e-2"]
ONLINE = [*TINY, "train.max_length=40", "online.prompts_per_step=2", "online.max_new_tokens=6",
          "eval.prompts=4", "eval.samples=2", "eval.max_new_tokens=6"]
PHASES = ("train", "checkpoint", "final")
SAVE_EVERY = {"train": 5, "checkpoint": 1, "final": 1}


@dataclass(frozen=True)
class Workload:
    name: str
    steps: int
    head: tuple[str, ...]
    settings: tuple[str, ...]

    def args(self, data: Path, out: Path, save_every: int, resume: bool) -> list[str]:
        """``prefkit ARGS`` of this workload."""
        args = [*self.head, "--out", str(out), *self.settings, f"train.steps={self.steps}",
                f"train.save_every={save_every}"]
        return [*[a.replace("{data}", str(data)) for a in args], *(["--resume"] if resume else [])]


WORKLOADS = {
    "dpo": Workload("dpo", 30, ("train", "--method", "dpo", "--data", "{data}", "--model", "tiny"), tuple(OFFLINE)),
    "online_dpo": Workload("online_dpo", 16, ("train", "--method", "online_dpo", "--world", "transitive",
                                              "--model", "tiny"), tuple(ONLINE)),
    "rm_bt": Workload("rm_bt", 30, ("rm", "train", "--kind", "bt", "--data", "{data}", "--model", "tiny"),
                      tuple(OFFLINE)),
}


@dataclass
class Timings:
    """Phase durations of an uninterrupted run (seconds), the kill delays' upper bounds."""

    train: float
    checkpoint: float
    final: float
    final_resumed: float


@dataclass
class Cell:
    kills: int = 0
    landed: Counter = field(default_factory=Counter)
    trials: int = 0
    resumes: int = 0
    restarts: int = 0
    misses: int = 0
    mismatches: int = 0
    leftovers: int = 0
    bad_resume_point: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)


Launcher = ExecLauncher | ForkLauncher


def observe(launcher: Launcher, args: list[str], out: Path, steps: int, log: Path) -> dict[str, float]:
    """Run to the end, recording when each event is first seen (seconds from launch)."""
    inode, summary_inode = metrics_inode(out), _inode(out / "metrics.json")
    seen: dict[str, float] = {}
    began = time.monotonic()
    proc = launcher.start(args, log)
    while True:
        now = time.monotonic() - began
        if "logger" not in seen and started_training(out, inode)():
            seen["logger"] = now
        for k in range(1, steps + 1):
            if f"stage{k}" not in seen and staging_exists(out, k):
                seen[f"stage{k}"] = now
        step = latest_step(out)
        if step and f"latest{step}" not in seen:
            seen[f"latest{step}"] = now
        if "summary" not in seen and _inode(out / "metrics.json") not in (None, summary_inode):
            seen["summary"] = now
        if proc.poll() is not None:
            break
        time.sleep(1e-4)
    if proc.returncode != 0:
        sys.exit(f"uninterrupted run failed ({proc.returncode}): prefkit {' '.join(args)}\n{log.read_text()[-3000:]}")
    seen["exit"] = time.monotonic() - began
    return seen


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def calibrate(workload: Workload, launcher: Launcher, data: Path, work: Path) -> tuple[Path, Timings]:
    """The reference run (uninterrupted) and its phase durations."""
    reference = work / f"{workload.name}-reference"
    steps = workload.steps
    seen = observe(launcher, workload.args(data, reference, 1, False), reference, steps,
                   work / f"{workload.name}-reference.log")
    ckpt = statistics.median([seen[f"latest{k}"] - seen[f"stage{k}"] for k in range(1, steps + 1)
                              if f"latest{k}" in seen and f"stage{k}" in seen] or [0.005])
    last_stage = seen.get(f"stage{steps}", seen[f"latest{steps}"] - ckpt)  # the poller can miss a staging
    again = work / f"{workload.name}-resumed-finished"
    shutil.copytree(reference, again)
    seen_again = observe(launcher, workload.args(data, again, 1, True), again, steps,
                         work / f"{workload.name}-resumed-finished.log")
    same = compare(again, reference)
    if not same.matches:
        print(f"  note: resuming the finished {workload.name} run changed it: {same.describe()}")
    sparse = work / f"{workload.name}-save-every-{SAVE_EVERY['train']}"
    seen_sparse = observe(launcher, workload.args(data, sparse, SAVE_EVERY["train"], False), sparse, steps,
                          work / f"{sparse.name}.log")
    same_sparse = compare(sparse, reference)
    if not same_sparse.matches:
        print(f"  note: {workload.name} with train.save_every={SAVE_EVERY['train']} differs: {same_sparse.describe()}")
    sparse_stage = seen_sparse.get(f"stage{steps}", seen_sparse[f"latest{steps}"] - ckpt)
    timings = Timings(train=sparse_stage - seen_sparse["logger"], checkpoint=2 * ckpt,  # to latest, then pruning
                      final=seen["summary"] - last_stage, final_resumed=seen_again["summary"] - seen_again["logger"])
    print(f"  {workload.name}: start to training {seen['logger']:.2f} s; training loop {timings.train:.2f} s "
          f"(save_every={SAVE_EVERY['train']}), {last_stage - seen['logger']:.2f} s (save_every=1); "
          f"checkpoint ~{ckpt * 1e3:.1f} ms; final writes {timings.final * 1e3:.0f} ms "
          f"(resumed at the end: {timings.final_resumed * 1e3:.0f} ms); exit at {seen['exit']:.2f} s", flush=True)
    return reference, timings


def kill_target(phase: str, out: Path, start: int, steps: int, inode: int | None, timings: Timings,
                rng: random.Random):
    """(event, delay): kill ``delay`` seconds after ``event()`` first holds; None: no kill (a run
    resumed at its last step has no training or checkpoint left, only its final writes)."""
    if start >= steps:
        return (started_training(out, inode), rng.uniform(0, timings.final_resumed)) if phase == "final" else None
    if phase == "train":
        return started_training(out, inode), rng.uniform(0, timings.train)
    k = rng.randint(start + 1, steps) if phase == "checkpoint" else steps
    delay = rng.uniform(0, timings.checkpoint if phase == "checkpoint" else timings.final)
    return (lambda: staging_exists(out, k) or latest_step(out) >= k), delay


def trial(workload: Workload, launcher: Launcher, phase: str, data: Path, out: Path, reference: Path,
          timings: Timings, rng: random.Random, kills_wanted: int, cell: Cell) -> None:
    """One run killed up to ``kills_wanted`` times (each resume may be killed again), then
    finished and compared with ``reference``."""
    log = out.with_suffix(".log")
    kills = 0
    while True:
        start = latest_step(out)
        resume = start > 0
        if resume:
            cell.resumes += 1
        elif out.exists():
            cell.restarts += 1
        inode = metrics_inode(out)
        proc = launcher.start(workload.args(data, out, SAVE_EVERY[phase], resume), log)
        target = kill_target(phase, out, start, workload.steps, inode, timings, rng) if kills < kills_wanted else None
        if target is not None:
            event, delay = target
            if wait_until(proc, event, timeout=300) and kill_after(proc, delay):
                kills += 1
                cell.kills += 1
                cell.landed[landed(out, workload.steps)] += 1
                problem = checkpoint_problem(out)
                if problem:
                    cell.bad_resume_point += 1
                    cell.notes.append(f"{out.name} after kill {kills}: {problem}")
                continue
            if proc.returncode is None or proc.returncode == 0:
                cell.misses += 1
        code = proc.wait()
        if code != 0:
            cell.failed += 1
            cell.notes.append(f"{out.name}: exit {code} after {kills} kill(s): "
                              + " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]))
            return
        break
    result = compare(out, reference)
    if not result.matches:
        cell.mismatches += 1
        cell.notes.append(f"{out.name} ({kills} kill(s)): {result.describe()}")
    if result.leftovers:
        tops = [p for p in result.leftovers if not any(p.startswith(q + "/") for q in result.leftovers)]
        cell.leftovers += len(tops)
        if result.matches:
            cell.notes.append(f"{out.name}: leftovers {', '.join(tops)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per phase and workload")
    parser.add_argument("--kills-per-trial", type=int, default=4,
                        help="kills of one run (and its resumes) before it is left to finish")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES))
    parser.add_argument("--launcher", choices=("fork", "exec"), default="fork",
                        help="fork: runs forked from a process that imported prefkit once (milliseconds a start); "
                             "exec: a fresh `python -m prefkit` per run (~6-10 s a start)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--prefkit-root", type=Path, default=None,
                        help="run another checkout's prefkit package (a directory holding prefkit/), e.g. "
                             "`git archive COMMIT prefkit | tar -x -C DIR`, for before/after tables")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="prefkit-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    env = subprocess_env(cache, args.prefkit_root)
    data = work / "pairs.jsonl"
    from prefkit.data import write_jsonl

    write_jsonl(make_pairs(16), data)
    began = time.time()
    cells: dict[tuple[str, str], Cell] = {}
    launcher = ForkLauncher(env, work) if args.launcher == "fork" else ExecLauncher(env, work)
    try:
        for name in args.workloads:
            workload = WORKLOADS[name]
            print(f"calibrating {name} ...", flush=True)
            reference, timings = calibrate(workload, launcher, data, work)
            for phase in args.phases:
                cell = cells[(phase, name)] = Cell()
                rng = random.Random(f"{args.seed}-{name}-{phase}")
                while cell.kills < args.kills and cell.trials < 3 * args.kills:
                    out = work / f"{name}-{phase}-{cell.trials:03d}"
                    cell.trials += 1
                    trial(workload, launcher, phase, data, out, reference, timings, rng,
                          min(args.kills_per_trial, args.kills - cell.kills), cell)
                print(f"  {phase:10s} {name:10s} kills {cell.kills}, trials {cell.trials}, "
                      f"mismatches {cell.mismatches}, failed {cell.failed} ({time.time() - began:.0f} s)", flush=True)
        cache_left = leftovers(cache) if cache.exists() else []
    finally:
        launcher.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report(cells, cache_left, time.time() - began, args, env)


def report(cells: dict[tuple[str, str], Cell], cache_left: list[str], seconds: float, args: argparse.Namespace,
           env: dict[str, str]) -> None:
    import subprocess

    import torch

    ran = subprocess.run([sys.executable, "-c", "import prefkit; print(prefkit.__file__)"], env=env, cwd=tempfile.gettempdir(),
                         capture_output=True, text=True).stdout.strip()
    print(f"\nprefkit from {ran}, {args.launcher} launcher, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{platform.machine()}; {seconds / 60:.1f} min; seed {args.seed}, {args.kills} kills per cell, "
          f"up to {args.kills_per_trial} per trial")
    print("\n| phase | workload | kills | landed in | trials | resumes | fresh restarts | missed kills "
          "| mismatches | leftover files | bad `latest` | failed resumes |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (phase, name), c in cells.items():
        where = ", ".join(f"{k} {v}" for k, v in sorted(c.landed.items()))
        print(f"| {phase} | {name} | {c.kills} | {where} | {c.trials} | {c.resumes} | {c.restarts} | {c.misses} "
              f"| {c.mismatches} | {c.leftovers} | {c.bad_resume_point} | {c.failed} |")
    print(f"\nleftovers in the reference-log-prob cache: {len(cache_left)}" + (f" ({', '.join(cache_left)})"
                                                                            if cache_left else ""))
    notes = [f"{phase}/{name}: {n}" for (phase, name), c in cells.items() for n in c.notes]
    if notes:
        print("\nfindings:")
        for note in notes:
            print(f"- {note}")
    print(json.dumps({f"{p}/{n}": {"kills": c.kills, "mismatches": c.mismatches, "leftovers": c.leftovers,
                                   "bad_resume_point": c.bad_resume_point, "failed": c.failed} for (p, n), c in cells.items()}))


if __name__ == "__main__":
    main()
