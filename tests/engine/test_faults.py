"""Fault injection: ``prefkit train`` processes killed with SIGKILL during training, during a
checkpoint's write and during the final outputs, resumed with ``--resume``, give the
uninterrupted run (weights, optimizer and generator state bit for bit, metrics.jsonl rows,
metrics.json) and leave no staging files, extra checkpoints or locks; a second run on a locked
directory, killed, leaves the holder's lock alone. ``benchmarks/faults.py`` is the long version.

The runs are forked from a zygote that imported prefkit once (``fault_tools.ForkLauncher``;
each child runs the CLI's ``main``), so a start costs milliseconds; the kill instants are
seeded. Instants that must fall inside a write are made certain by freezing the process when
the write is seen (SIGSTOP), checking the frozen state, then killing it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from prefkit.data import write_jsonl
from prefkit.engine.rundir import LOCK, latest_checkpoint, open_run_dir

from .conftest import make_pairs
from .fault_tools import (
    ForkLauncher,
    checkpoint_in_progress,
    checkpoint_problem,
    compare,
    kill_after,
    kill_while,
    landed,
    latest_step,
    leftovers,
    logged_step,
    started_training,
    subprocess_env,
    wait_until,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, SIGSTOP and /proc")]

STEPS = 12
TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32",
        "train.lr=1e-2", "train.log_every=1", "train.threads=1", f"train.steps={STEPS}"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    write_jsonl(make_pairs(16), root / "pairs.jsonl")
    return root


@pytest.fixture(scope="module")
def launcher(work):
    zygote = ForkLauncher(subprocess_env(work / "cache"), work)
    yield zygote
    zygote.close()


def _args(work: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--method", "dpo", "--data", str(work / "pairs.jsonl"), "--model", "tiny", "--out", str(out),
            *TINY, *extra]


def _finish(launcher: ForkLauncher, args: list[str], out: Path) -> None:
    log = out.parent / f"{out.name}.log"
    code = launcher.start(args, log).wait()
    assert code == 0, f"exit {code}:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def reference(launcher, work) -> Path:
    out = work / "reference"
    _finish(launcher, _args(work, out, "train.save_every=1"), out)
    return out


def _resume_until_done(launcher, work, out, *extra: str) -> None:
    resume = ["--resume"] if latest_checkpoint(out / "checkpoints") is not None else []
    _finish(launcher, [*_args(work, out, *extra), *resume], out)


def _assert_same(out: Path, reference: Path) -> None:
    result = compare(out, reference)
    assert result.matches and not result.leftovers, result.describe()


def _past_checkpoint(out: Path, step: int) -> bool:
    """Rows up to ``step`` or later are logged, some of them past the last checkpoint."""
    logged = logged_step(out)
    return logged >= step and logged > latest_step(out)


def test_kills_between_checkpoints_resume_to_the_uninterrupted_run(launcher, work, reference):
    """save_every=4, killed at seeded steps after rows past the last checkpoint were logged
    (checked on the frozen process): the resume drops those rows and redoes their steps."""
    out = work / "between-checkpoints"
    targets = sorted(random.Random(14).sample([s for s in range(2, STEPS) if s % 4], 3))
    for target in targets:
        resume = ["--resume"] if latest_checkpoint(out / "checkpoints") is not None else []
        proc = launcher.start([*_args(work, out, "train.save_every=4"), *resume], work / "between-checkpoints.log")
        assert kill_while(proc, lambda t=target: _past_checkpoint(out, t), timeout=120), target
        assert checkpoint_problem(out) is None
        assert logged_step(out) > latest_step(out)
    _resume_until_done(launcher, work, out, "train.save_every=4")
    _assert_same(out, reference)


def test_a_run_killed_before_its_first_checkpoint_is_started_again_without_resume(launcher, work, reference):
    out = work / "before-first-checkpoint"
    proc = launcher.start(_args(work, out, "train.save_every=4"), work / "before-first-checkpoint.log")
    assert kill_while(proc, lambda: logged_step(out) >= 1 and latest_step(out) == 0, timeout=120)
    log = work / "before-first-checkpoint-resume.log"
    assert launcher.start([*_args(work, out, "train.save_every=4"), "--resume"], log).wait() == 2
    assert "no checkpoint under" in log.read_text() and "without --resume" in log.read_text()
    _finish(launcher, _args(work, out, "train.save_every=4"), out)  # the dead run's lock is stale
    _assert_same(out, reference)


def test_kills_inside_checkpoint_writes_resume_to_the_uninterrupted_run(launcher, work, reference):
    """Each kill lands while a checkpoint's staging directory is being written (checked on the
    frozen process), at a seeded step or later; ``latest`` names a complete checkpoint after each."""
    rng = random.Random(7)
    out = work / "in-checkpoint"
    done = 0
    for step in sorted(rng.sample(range(2, STEPS + 1), 3)):
        resume = ["--resume"] if latest_checkpoint(out / "checkpoints") is not None else []
        proc = launcher.start([*_args(work, out, "train.save_every=1"), *resume], work / "in-checkpoint.log")
        if kill_while(proc, lambda s=step: any(checkpoint_in_progress(out, k) for k in range(s, STEPS + 1)),
                      timeout=120):
            done += 1
            assert checkpoint_problem(out) is None
            assert landed(out, STEPS) == "staging"
            staged = [int(p.name[-8:]) for p in (out / "checkpoints").glob(".tmp-step-*")]
            assert latest_step(out) < min(staged)
        else:  # the poller never saw that staging directory (a very busy machine): the run finished
            assert proc.wait() == 0
            break
    assert done >= 1, "no kill landed inside a checkpoint write"
    _resume_until_done(launcher, work, out, "train.save_every=1")
    _assert_same(out, reference)


def test_a_kill_inside_the_final_outputs_leaves_nothing_behind_after_the_resume(launcher, work, reference):
    """Killed while policy/ is being written (its staging directory exists), twice: the resume
    (from the final checkpoint) rewrites the outputs and removes what the kills left."""
    out = work / "in-final"
    for attempt in range(2):
        resume = ["--resume"] if attempt else []
        proc = launcher.start([*_args(work, out, "train.save_every=1"), *resume], work / "in-final.log")
        assert kill_while(proc, lambda: any(out.glob(".policy.tmp-*")), timeout=120)
        assert latest_checkpoint(out / "checkpoints").name == f"step-{STEPS:08d}"
        assert any(out.glob(".policy.tmp-*"))
    _resume_until_done(launcher, work, out, "train.save_every=1")
    _assert_same(out, reference)


def test_a_second_run_killed_while_the_first_holds_the_lock_leaves_the_lock_alone(launcher, work, reference):
    """The holder is frozen (SIGSTOP) while a second run is refused and a third is killed at a
    seeded instant of its start; the holder's lock is untouched and it finishes as if alone."""
    out = work / "locked"
    holder = launcher.start(_args(work, out, "train.save_every=1"), work / "locked.log")
    try:
        assert wait_until(holder, started_training(out, None), timeout=120)
        os.kill(holder.pid, signal.SIGSTOP)
        second = launcher.start(_args(work, out, "train.save_every=1"), work / "locked-second.log")
        assert second.wait() == 2
        assert f"in use by process {holder.pid}" in (work / "locked-second.log").read_text()
        killed = launcher.start([*_args(work, out, "train.save_every=1"), "--resume"], work / "locked-killed.log")
        kill_after(killed, random.Random(3).uniform(0.0, 0.02))
        assert json.loads((out / LOCK).read_text())["pid"] == holder.pid
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.wait() == 0
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
    _assert_same(out, reference)


ONLINE = ["train", "--method", "online_dpo", "--world", "transitive", "--model", "tiny", "tiny.hidden_size=16",
          "tiny.layers=1", "tiny.heads=2", "train.max_length=40", "train.log_every=1", "train.threads=1",
          "online.prompts_per_step=2", "online.max_new_tokens=6", "eval.prompts=4", "eval.samples=2",
          "eval.max_new_tokens=6", "train.steps=8", "train.save_every=3"]


def test_an_online_run_killed_between_checkpoints_resumes_its_sampling_exactly(launcher, work):
    """Online steps draw samples: the resume must restore every generator (and the round's
    state) to give the uninterrupted run's samples, losses and weights."""
    reference, out = work / "online-reference", work / "online-killed"
    _finish(launcher, [*ONLINE, "--out", str(reference)], reference)
    for target in (2, 7):
        resume = ["--resume"] if latest_checkpoint(out / "checkpoints") is not None else []
        proc = launcher.start([*ONLINE, "--out", str(out), *resume], work / "online-killed.log")
        assert kill_while(proc, lambda t=target: _past_checkpoint(out, t), timeout=120), target
    _finish(launcher, [*ONLINE, "--out", str(out), "--resume"], out)
    _assert_same(out, reference)


# ----------------------------------------------------------------------------- regressions

def test_what_a_killed_run_was_writing_is_removed_at_the_next_start(tmp_path):
    """Before: staging of atomic writes (``.policy.tmp-*``, ``.metrics.json.tmp-*``,
    ``checkpoints/.latest.tmp-*``) stayed in the run directory for good."""
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000003").mkdir(parents=True)
    (out / "checkpoints" / "step-00000003" / "state.json").write_text("{}")
    (out / "checkpoints" / "latest").write_text("step-00000003")
    (out / "config.yaml").write_text("method: dpo\n")
    for orphan in (".policy.tmp-abc/config.json", ".model.old-xyz/previous/config.json"):
        (out / orphan).parent.mkdir(parents=True)
        (out / orphan).write_text("{}")
    for orphan in (".metrics.json.tmp-1", "checkpoints/.latest.tmp-2", f"{LOCK}.tmp-3"):
        (out / orphan).write_text("half")
    run = open_run_dir(out, resume=True)
    try:
        assert leftovers(out) == [LOCK]  # this run's own lock, nothing else
        assert run.resume_from == out / "checkpoints" / "step-00000003"
    finally:
        run.release()
    assert leftovers(out) == []


def test_checkpoints_left_beyond_the_newest_two_are_pruned_at_start_never_latest(tmp_path):
    """Before: a kill between a checkpoint and the pruning after it left a third checkpoint,
    which a run resumed at its last step never removed."""
    root = tmp_path / "run" / "checkpoints"
    for step in (3, 4, 5, 6):
        (root / f"step-{step:08d}").mkdir(parents=True)
        (root / f"step-{step:08d}" / "state.json").write_text("{}")
    (root / "latest").write_text("step-00000005")  # step 6 renamed into place, latest not yet moved
    open_run_dir(tmp_path / "run", resume=True).release()
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000005", "step-00000006"]


def test_a_process_killed_while_taking_the_lock_never_leaves_an_empty_lock(tmp_path):
    """Before: the lock was created empty and then written, so a kill in between left an empty
    lock that no later run could tell was stale ("in use by another process" for good)."""
    out = tmp_path / "run"
    out.mkdir()
    pid = os.fork()
    if pid == 0:  # the child dies while writing the lock's content
        import prefkit.engine.rundir as rundir

        rundir.json.dump = lambda *args, **kwargs: os._exit(9)
        try:
            open_run_dir(out, resume=False)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    assert not (out / LOCK).exists()
    open_run_dir(out, resume=False).release()
    assert leftovers(out) == []
