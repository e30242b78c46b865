"""The run directory: one run per ``--out``, never a write outside it.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``metrics.json``, ``checkpoints/``
and the saved model. :func:`open_run_dir` checks it before any data is loaded:

- ``--out`` that is a file, or a non-empty directory that is not a prefkit run, is refused;
- an exclusive lock (``.prefkit.lock``, holding the owner's pid and host, written whole: a
  temporary file hard-linked into place) is taken, so a second run on the same directory stops
  at once; a lock left by a dead process on this host is detected as stale and replaced;
- what a killed run was writing is removed: ``checkpoints/.tmp-*`` staging directories and the
  temporary names of atomic writes (``.NAME.tmp-*``, ``.NAME.old-*``) in the run directory and
  in ``checkpoints/``; checkpoints beyond the newest :data:`KEEP_CHECKPOINTS` (a kill between a
  checkpoint and the pruning after it leaves one more) are removed;
- the resume point is ``checkpoints/latest``, which must name a ``step-XXXXXXXX`` directory
  inside ``checkpoints/`` (a symlink or a path that leaves the directory is refused).

Every file is written by :func:`prefkit._atomic.atomic_write_text` (a temporary file in the
same directory renamed over the target), so a symlink planted in the run directory is replaced,
never followed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefkit._atomic import remove_orphans
from prefkit.errors import InputError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
LOCK = ".prefkit.lock"
CHECKPOINT_NAME = re.compile(r"step-\d{8}")
KEEP_CHECKPOINTS = 2
"""Checkpoints kept: the newest two (the one ``latest`` names is never removed)."""
RUN_MARKERS = ("config.yaml", CHECKPOINTS, "metrics.jsonl", "metrics.json", LOCK)
"""Names whose presence makes a directory a prefkit run (any one of them)."""


class RunDirectoryError(InputError):
    """``--out`` cannot be used for this run (the message says why and what to do)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="out")


@dataclass
class RunDir:
    """An opened run directory (the lock is held until :meth:`release`)."""

    path: Path
    resume_from: Path | None
    locked: bool = False
    created: bool = False
    """This run made the directory (an empty one is removed again when the run stops early)."""

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def release(self) -> None:
        if self.locked:
            lock = self.path / LOCK
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    lock.unlink()
            except (OSError, ValueError):
                pass
            self.locked = False
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when nothing was written


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``root/latest`` names, or ``None`` when there is none.

    ``latest`` must be a regular file naming a ``step-XXXXXXXX`` directory directly inside
    ``root`` (not a symlink); anything else is refused rather than followed.
    """
    root = Path(root)
    pointer = root / LATEST
    if not os.path.lexists(pointer):
        return None
    if pointer.is_symlink() or not pointer.is_file():
        raise RunDirectoryError(f"{pointer} is not a regular file; refusing to follow it. Remove it to start over")
    name = pointer.read_text(encoding="utf-8").strip()
    if not CHECKPOINT_NAME.fullmatch(name):
        raise RunDirectoryError(f"{pointer} names {name!r}, not a checkpoint directory step-XXXXXXXX inside "
                                f"{root}; refusing to resume from it")
    path = root / name
    if path.is_symlink():
        raise RunDirectoryError(f"{path} is a symlink; a checkpoint must be a directory inside {root}")
    return path if (path / "state.json").is_file() else None


def prune_checkpoints(root: Path, *, keep: int = KEEP_CHECKPOINTS) -> None:
    """Remove the checkpoint directories of ``root`` but the newest ``keep`` and the one
    ``latest`` names."""
    latest = latest_checkpoint(root)
    steps = sorted(p for p in root.glob("step-*")
                   if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    for old in steps[:-keep] if keep > 0 else []:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True)


def _is_run(path: Path) -> bool:
    """Whether ``path`` holds a prefkit run, or one that was killed while taking its lock."""
    return any(os.path.lexists(path / name) for name in RUN_MARKERS) or any(path.glob(f"{LOCK}.tmp-*"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(path: Path) -> None:
    lock = path / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        if _create_lock(lock, me):
            return
        try:
            holder = json.loads(lock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            holder = {}
        pid, host = holder.get("pid"), holder.get("host")
        if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid):
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        who = f"process {pid} on {host}" if pid else "another process"
        raise RunDirectoryError(
            f"{path} is in use by {who} (lock file {lock}); wait for it to finish, or remove the lock "
            "if that process is gone"
        )
    raise RunDirectoryError(f"could not take the lock {lock}")


def _create_lock(lock: Path, holder: dict[str, object]) -> bool:
    """Create ``lock`` holding ``holder`` whole, or return False when it exists.

    The content is written to a temporary file first and hard-linked into place (``link``
    fails if the lock exists), so a process killed at any instant never leaves an empty lock
    that no one can tell is stale. Where hard links are not supported, an exclusive create.
    """
    fd, name = tempfile.mkstemp(prefix=f"{LOCK}.tmp-", dir=lock.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(holder, handle)
        try:
            os.link(name, lock)
        except FileExistsError:
            return False
        except FileNotFoundError:
            return False  # the holder's start-up clean-up removed our temporary file: it is in use
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(holder, handle)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _remove_orphans(path: Path) -> None:
    """What a killed run was writing: checkpoint staging and atomic writes' temporary names."""
    checkpoints = path / CHECKPOINTS
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for orphan in checkpoints.glob(".tmp-*"):
            if orphan.is_dir() and not orphan.is_symlink():
                shutil.rmtree(orphan, ignore_errors=True)
            else:
                orphan.unlink(missing_ok=True)
        remove_orphans(checkpoints)  # e.g. .latest.tmp-*
    remove_orphans(path)  # e.g. .policy.tmp-*, .metrics.json.tmp-*


def open_run_dir(out: str | Path, *, resume: bool, lock: bool = True) -> RunDir:
    """Check ``out``, take its lock and find the resume point (see the module docstring)."""
    path = Path(out).absolute()
    if os.path.lexists(path) and not path.is_dir():
        raise RunDirectoryError(f"--out {path} exists and is not a directory; choose a directory")
    if path.is_symlink():
        raise RunDirectoryError(f"--out {path} is a symlink; give the directory itself")
    if path.is_dir() and any(path.iterdir()) and not _is_run(path):
        raise RunDirectoryError(
            f"--out {path} is a non-empty directory that is not a prefkit run; choose an empty or new directory"
        )
    created = not os.path.lexists(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable", str(path))
    except OSError as err:
        raise RunDirectoryError(f"--out {path} cannot be written ({err.strerror or err}); choose a writable "
                                "directory") from None
    if lock:
        _acquire_lock(path)
    run = RunDir(path, None, locked=lock, created=created)
    try:
        checkpoints = path / CHECKPOINTS
        if checkpoints.is_symlink():
            raise RunDirectoryError(f"{checkpoints} is a symlink; refusing to write checkpoints through it")
        if lock:
            _remove_orphans(path)
        latest = latest_checkpoint(checkpoints)
        if lock and checkpoints.is_dir():
            prune_checkpoints(checkpoints)
        if resume and latest is None:
            raise RunDirectoryError(f"--resume: no checkpoint under {checkpoints}; a run stopped before its first "
                                    "checkpoint has nothing to resume: run the command without --resume to start "
                                    "it again")
        if not resume and latest is not None:
            raise RunDirectoryError(
                f"{path} already holds a run; pass --resume to continue it or choose another --out"
            )
        run.resume_from = latest
    except BaseException:
        run.release()
        raise
    return run
