"""What a training run checks about its data: the reader options its config asks for, and a
batch that the data can fill.

Every training entry point reads files with ``read_*(path, **read_options(cfg.data))``, so each
``data.*`` reading key is honoured the same way everywhere, and calls :func:`check_batch_size`
once the examples are known.
"""

from __future__ import annotations

from typing import Any

from prefkit.config import DataConfig
from prefkit.errors import InputError


def read_options(data: DataConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`prefkit.data.read_pairs` (and the other readers) from
    ``cfg.data``: ``skip_invalid``, ``dedupe`` and ``max_row_bytes``."""
    return {"skip_invalid": data.skip_invalid, "dedupe": data.dedupe, "max_row_bytes": data.max_row_bytes}


def check_batch_size(
    batch_size: int,
    available: int,
    *,
    what: str = "examples",
    file: str | None = None,
    key: str = "train.batch_size",
) -> None:
    """Refuse a batch larger than the data: one optimizer step would hold some examples twice
    (a step's batch runs on into the next pass over the data).

    Args:
        batch_size: examples per optimizer step (``train.batch_size``).
        available: examples the run trains on (after invalid rows were skipped, ties excluded...).
        what: what an example is, for the message (``"pairs"``, ``"ranked lists"``...).
        file: the data file, when there is one.
        key: the config key that sets the batch.
    """
    if batch_size > available:
        raise InputError(
            f"{key}={batch_size} is larger than the {available} training {what}: one step would "
            f"hold some of them twice; set {key} to at most {available} (or add data)",
            file=file,
            field=key,
        )
