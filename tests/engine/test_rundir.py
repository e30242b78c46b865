"""The run directory under faults and hostile input: one run per directory, nothing written
outside it, no poisoned checkpoint marked latest, clear errors instead of tracebacks."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from prefkit.engine import TrainData, train
from prefkit.engine import checkpoint as ckpt
from prefkit.engine.rundir import LOCK, RunDirectoryError, latest_checkpoint, open_run_dir
from prefkit.errors import InputError, NonFiniteLossError

from .conftest import make_pairs, tiny_config


def _data() -> TrainData:
    return TrainData(pairs=make_pairs(8))


# ----------------------------------------------------------------------------- one run per directory

def test_a_second_run_on_a_locked_directory_stops_at_once(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename}))
        with pytest.raises(InputError, match=rf"in use by process {holder.pid}"):
            train(tiny_config(tmp_path), data=_data(), progress=False)
        assert not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_replaced_and_the_lock_released_after(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    train(tiny_config(tmp_path), data=_data(), progress=False)
    assert not (out / LOCK).exists()


def test_out_that_is_a_file_or_a_foreign_directory_is_refused_before_reading_data(tmp_path):
    missing = TrainData()  # no data at all: the --out check must come first
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        train(dataclasses.replace(tiny_config(tmp_path), out=str(tmp_path / "file")), data=missing, progress=False)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_text("x")
    with pytest.raises(InputError, match="non-empty directory that is not a prefkit run"):
        train(dataclasses.replace(tiny_config(tmp_path), out=str(foreign)), data=missing, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_an_unwritable_out_is_one_clear_error(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith("run") else real(path, mode))
    with pytest.raises(InputError, match=r"cannot be written.*choose a writable directory"):
        open_run_dir(tmp_path / "run", resume=False)


# ----------------------------------------------------------------------------- never write outside

def test_symlinks_planted_in_out_are_replaced_not_followed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("metrics.json", "metrics.jsonl", "config.yaml"):
        (outside / name).write_text("precious")
        (out / name).symlink_to(outside / name)
    train(tiny_config(tmp_path), data=_data(), progress=False)
    for name in ("metrics.json", "metrics.jsonl", "config.yaml"):
        assert (outside / name).read_text() == "precious", name
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0, name


def test_latest_pointing_outside_the_checkpoints_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "train.save_every=2")
    train(cfg, data=_data(), progress=False)
    root = tmp_path / "run" / "checkpoints"
    elsewhere = tmp_path / "elsewhere" / "step-00000004"
    elsewhere.mkdir(parents=True)
    (elsewhere / "state.json").write_text("{}")
    (root / "latest").write_text("../../elsewhere/step-00000004")
    with pytest.raises(InputError, match="not a checkpoint directory step-XXXXXXXX"):
        train(cfg, data=_data(), resume=True, progress=False)
    (root / "latest").unlink()
    (root / "latest").symlink_to(tmp_path / "elsewhere" / "pointer")
    with pytest.raises(RunDirectoryError, match="not a regular file"):
        latest_checkpoint(root)


def test_orphaned_staging_directories_are_removed_at_start(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "train.save_every=2", "train.steps=2")
    train(cfg, data=_data(), progress=False)
    orphan = tmp_path / "run" / "checkpoints" / ".tmp-step-00000004"
    orphan.mkdir()
    (orphan / "model.safetensors").write_bytes(b"half")
    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4)), data=_data(), resume=True,
          progress=False)
    assert not orphan.exists()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000004"


# ----------------------------------------------------------------------------- finite checkpoints

def test_parameters_that_stop_being_finite_are_never_checkpointed(tmp_path, monkeypatch):
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def poisoning_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third update diverges; the loss of step 3 was still finite
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoning_step)
    cfg = tiny_config(tmp_path, "dpo", "train.steps=6", "train.save_every=1")
    with pytest.raises(NonFiniteLossError, match=r"step 3: the parameters are no longer finite.*step 2\) is kept"):
        train(cfg, data=_data(), progress=False)
    root = tmp_path / "run" / "checkpoints"
    assert latest_checkpoint(root).name == "step-00000002"
    assert not (root / "step-00000003").exists() and not list(root.glob(".tmp-*"))


def test_resume_may_change_the_learning_rate_when_asked_and_records_it(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "train.steps=2", "train.save_every=1")
    train(cfg, data=_data(), progress=False)
    lower = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-3, steps=4))
    with pytest.raises(InputError, match=r"train\.lr.*--allow-config-change"):
        train(lower, data=_data(), resume=True, progress=False)
    result = train(lower, data=_data(), resume=True, progress=False, allow_config_change=["train.lr"])
    assert result.metrics["config_changes"] == [{"step": 2, "key": "train.lr", "from": 1e-2, "to": 1e-3}]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [1e-2, 1e-2, 1e-3, 1e-3]
    with pytest.raises(InputError, match="only optimisation keys"):
        train(lower, data=_data(), resume=True, progress=False, allow_config_change=["model"])


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    real = ckpt.write_main_state
    calls = {"n": 0}

    def full_disk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "write_main_state", full_disk)
    cfg = tiny_config(tmp_path, "dpo", "train.steps=4", "train.save_every=2")
    with pytest.raises(InputError, match=r"disk full while writing the checkpoint of step 4.*step-00000002 is intact"):
        train(cfg, data=_data(), progress=False)
    root = tmp_path / "run" / "checkpoints"
    assert latest_checkpoint(root).name == "step-00000002" and not list(root.glob(".tmp-*"))
    monkeypatch.setattr(ckpt, "write_main_state", real)
    resumed = train(cfg, data=_data(), resume=True, progress=False)
    assert resumed.metrics["steps"] == 4


def test_an_unwritable_reference_cache_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    from prefkit.engine.offline import refcache

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(refcache, "save_file", no_space)
    with pytest.warns(UserWarning, match="not writable.*going on without caching"):
        result = train(tiny_config(tmp_path), data=_data(), progress=False)
    assert result.metrics["steps"] == 4


# ----------------------------------------------------------------------------- resume robustness

def test_resuming_a_finished_run_reproduces_its_summary(tmp_path):
    cfg = tiny_config(tmp_path, "dpo", "train.save_every=2")
    first = train(cfg, data=_data(), progress=False).metrics
    again = train(cfg, data=_data(), resume=True, progress=False).metrics
    for key in ("steps", "final_loss", "tokens", "wall_s", "tokens_per_s", "examples"):
        assert again[key] == first[key], key
    assert again["final_loss"] is not None


def test_paths_are_compared_after_resolution_on_resume(tmp_path, monkeypatch):
    from prefkit.data import write_jsonl

    data_file = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(8), data_file)
    cfg = tiny_config(tmp_path, "dpo", f"data.path={data_file}", "train.steps=2", "train.save_every=1")
    train(cfg, progress=False)
    monkeypatch.chdir(tmp_path)
    relative = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path="pairs.jsonl"),
                                   train=dataclasses.replace(cfg.train, steps=3))
    assert train(relative, resume=True, progress=False).metrics["steps"] == 3
