"""Paired feedback as unpaired rows, and the mismatched pairs of KTO's KL estimate.

:func:`unpair` turns each pair into a desirable row (the preferred response) and an
undesirable one (the other), as TRL's ``unpair_preference_dataset`` does, so paired data can
train the unpaired losses (``kto``, ``bco_unpaired``, ``apo_zero_unpaired``).
:func:`kl_partners` says which completion each row of a micro-batch is paired with for KTO's
reference-point estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefkit.data.records import PairRecord, UnpairedRecord
from prefkit.errors import InputError


def unpair(pairs: Sequence[PairRecord], *, ties: str = "error") -> list[UnpairedRecord]:
    """Every desirable row first, then every undesirable row (TRL's order), each pair's
    ``prompt``, ``weight``, ``annotator`` and ``source`` carried to both of its rows.

    A pair labelled below 1/2 prefers ``rejected``, which then becomes the desirable row. A tie
    (label 1/2) has no desirable response: an error naming its line, or dropped with
    ``ties="drop"``. A soft label (strictly between 0 and 1, not 1/2) cannot be said as
    thumbs up/down without losing its strength, so it is an error; so is a ``margin`` (no
    unpaired loss reads it).
    """
    if ties not in ("error", "drop"):
        raise ValueError(f"ties must be 'error' or 'drop', got {ties!r}")
    desirable: list[UnpairedRecord] = []
    undesirable: list[UnpairedRecord] = []
    for pair in pairs:
        file, line = pair.source if pair.source else (None, None)
        if pair.label == 0.5:
            if ties == "drop":
                continue
            raise InputError("a tie (label 0.5) has no desirable response to unpair; drop ties "
                             "(ties='drop') or label the pair", file=file, line=line, field="label")
        if pair.label not in (0.0, 1.0):
            raise InputError(f"a soft label ({pair.label}) cannot be split into a desirable and an undesirable "
                             "row; use hard labels (0 or 1) for unpaired losses", file=file, line=line, field="label")
        if pair.margin is not None:
            raise InputError("a margin has no meaning for unpaired losses; drop the margin column to unpair",
                             file=file, line=line, field="margin")
        good, bad = (pair.chosen, pair.rejected) if pair.label == 1.0 else (pair.rejected, pair.chosen)
        extra = {"weight": pair.weight, "annotator": pair.annotator, "source": pair.source}
        desirable.append(UnpairedRecord(prompt=pair.prompt, completion=good, label=True, **extra))
        undesirable.append(UnpairedRecord(prompt=pair.prompt, completion=bad, label=False, **extra))
    if not desirable:
        raise InputError("no pairs to unpair (every pair was a dropped tie)" if pairs else "no pairs to unpair")
    return desirable + undesirable


def kl_partners(batch_size: int) -> list[int]:
    """Row ``i`` of a micro-batch is paired with the completion of row ``i - 1`` (row 0 with the
    last) for KTO's KL estimate: TRL 1.16's ``KTOTrainer`` builds ``KL_completion_ids`` this way
    (the completions cycled by one within each batch of ``per_device_train_batch_size`` rows),
    so every prompt meets a completion written for another prompt. Needs ``batch_size >= 2``."""
    if batch_size < 2:
        raise ValueError("KTO's KL estimate needs at least 2 rows per micro-batch (mismatched pairs)")
    return [batch_size - 1, *range(batch_size - 1)]
