"""Atomic writes: a file or a directory appears whole, or not at all (temp name + rename).

Every write goes to a new temporary name in the target's own directory and is renamed over the
target, so an existing path is never opened for writing: a symlink planted at the target is
replaced, not followed, and a crash leaves either the old file or the new one (plus, after a
kill, the temporary name itself: :func:`remove_orphans` clears them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STAGING_GLOBS = (".*.tmp-*", ".*.old-*")
"""The temporary names this module creates beside a target (``.NAME.tmp-XXXX``, and the
``.NAME.old-XXXX`` that holds a replaced directory for an instant)."""


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; on success it is renamed over ``target``.

    For libraries that write by path (``safetensors.torch.save_file``, ``to_parquet``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def atomic_write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 2) -> Path:
    """``value`` as JSON (one trailing newline) through :func:`atomic_write_text`."""
    return atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory beside ``target``; on success it replaces ``target`` by rename.

    A crash at any point leaves either the old ``target`` or the new one, never a mixture.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if os.path.lexists(target):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_orphans(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary names a killed writer left in ``directory`` (not recursive).

    Call it only where no other process may be writing (prefkit: under the run directory's
    lock). Symlinks are unlinked, never followed. Returns what was removed.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir() or directory.is_symlink():
        return removed
    for pattern in STAGING_GLOBS:
        for orphan in directory.glob(pattern):
            if orphan.is_dir() and not orphan.is_symlink():
                shutil.rmtree(orphan, ignore_errors=True)
            else:
                orphan.unlink(missing_ok=True)
            removed.append(orphan)
    return removed
