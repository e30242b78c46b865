"""What a run trains on, and which examples each optimizer step sees.

Data order is a pure function of ``(seed, step)`` (:func:`batch_indices`), so a resumed run sees
exactly the batches an uninterrupted one would have seen, and every rank of a multi-process run
agrees on the global batch before taking its slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prefkit.config import RunConfig
from prefkit.data import ListRecord, PairRecord, UnpairedRecord
from prefkit.engine.methods import Method
from prefkit.errors import InputError


@dataclass
class TrainData:
    """What a run trains on; whichever the method's step shape needs must be present."""

    pairs: Sequence[PairRecord] | None = None
    lists: Sequence[ListRecord] | None = None
    sequences: Sequence[tuple[Any, Any]] | None = None
    """(prompt, response) for SFT; built from pairs' chosen responses when absent."""
    prompts: Sequence[Any] | None = None
    """Prompts for online methods."""
    unpaired: Sequence[UnpairedRecord] | None = None
    """One completion per example with a desirable/undesirable label (KTO and the unpaired losses)."""
    sources: Sequence[Any] | None = None
    report: Any = None

    def texts(self) -> list[str]:
        """Every string in the data (to fit the tiny preset's tokenizer)."""
        out: list[str] = []

        def add(value: Any) -> None:
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, list):
                out.extend(m["content"] for m in value)

        for r in self.pairs or ():
            add(r.prompt), add(r.chosen), add(r.rejected)
        for r in self.lists or ():
            add(r.prompt)
            for resp in r.responses:
                add(resp)
        for r in self.unpaired or ():
            add(r.prompt), add(r.completion)
        for p, resp in self.sequences or ():
            add(p), add(resp)
        for p in self.prompts or ():
            add(p)
        return out


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(n: int, batch_size: int, step: int, seed: int, shuffle: bool) -> list[int]:
    """Example indices of optimizer step ``step``: a pure function of (seed, step)."""
    out: list[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        order = epoch_order(n, seed, epoch) if shuffle else torch.arange(n)
        take = min(batch_size - len(out), n - offset)
        out.extend(order[offset : offset + take].tolist())
    return out


def check_unpair(cfg: RunConfig, method: Method) -> None:
    """``data.unpair`` splits pairs for an unpaired loss; any other method refuses it (it would be
    read by nothing)."""
    if cfg.data.unpair and method.step != "unpaired":
        raise InputError(f"data.unpair splits pairs into desirable/undesirable rows for an unpaired method (kto, "
                         f"bco_unpaired, apo_zero_unpaired); --method {method.name} reads the data as it is: remove "
                         "data.unpair", field="data.unpair")


def require_plain_file(cfg: RunConfig, what: str) -> None:
    """Readers of one whole file (ratings, critiques) and pair readers that cannot unpair: the
    keys they would not read are refused, naming the key."""
    keys = {"data.split": cfg.data.split, "data.eval_split": cfg.data.eval_split, "data.columns": cfg.data.columns,
            "data.unpair": cfg.data.unpair}
    for key, value in keys.items():
        if value:
            raise InputError(f"{key} applies to pairs, lists, prompts and unpaired data read by `prefkit train`; {what} "
                             f"reads its file as it is: remove {key}", field=key)


def load_train_data(cfg: RunConfig, method: Method) -> TrainData:
    """Read ``cfg.data.path`` (its ``data.split``, through ``data.columns``) in the shape the
    method needs."""
    from prefkit.data import read_lists, read_options, read_pairs, read_prompts, train_source

    path = train_source(cfg.data)
    check_unpair(cfg, method)
    if method.step == "unpaired":
        from prefkit.data import read_unpaired

        rows, report = read_unpaired(path, split_pairs=cfg.data.unpair, **read_options(cfg.data))
        return TrainData(unpaired=rows, report=report)
    if method.step == "listwise":
        records, report = read_lists(path, **read_options(cfg.data))
        return TrainData(lists=records, report=report)
    if method.step == "online":
        prompts, report = read_prompts(path, **read_options(cfg.data))
        return TrainData(prompts=prompts, report=report)
    records, report = read_pairs(path, **read_options(cfg.data))
    if method.step == "sft":
        return TrainData(
            sequences=[(r.prompt, r.chosen) for r in records],
            sources=[r.source for r in records],
            report=report,
        )
    return TrainData(pairs=records, report=report)


def load_eval_data(cfg: RunConfig, method: Method) -> TrainData | None:
    """Held-out data (``data.eval_path``, ``data.eval_split``, or a DatasetDict's ``test`` split;
    ``prefkit.data.eval_source``), in the method's shape; ``None`` when there is none."""
    from prefkit.data import eval_source, read_lists, read_options, read_pairs

    if method.step == "online":
        if cfg.data.eval_path is not None or cfg.data.eval_split is not None:
            key = "data.eval_path" if cfg.data.eval_path is not None else "data.eval_split"
            raise InputError(f"{key}: held-out evaluation scores pairs or lists against the training loss; "
                             "online methods are evaluated on a world (--world)", field=key)
        return None
    held_out = eval_source(cfg.data)
    if held_out is None:
        return None
    if method.step == "listwise":
        records, report = read_lists(held_out, **read_options(cfg.data))
        return TrainData(lists=records, report=report)
    if method.step == "unpaired":
        from prefkit.data import read_unpaired

        rows, report = read_unpaired(held_out, split_pairs=cfg.data.unpair, **read_options(cfg.data))
        return TrainData(unpaired=rows, report=report)
    records, report = read_pairs(held_out, **read_options(cfg.data))
    if method.step == "sft":
        return TrainData(sequences=[(r.prompt, r.chosen) for r in records], sources=[r.source for r in records],
                         report=report)
    return TrainData(pairs=records, report=report)
