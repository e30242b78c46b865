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
from prefkit.data import ListRecord, PairRecord
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


def load_train_data(cfg: RunConfig, method: Method) -> TrainData:
    """Read ``cfg.data.path`` in the shape the method needs."""
    from prefkit.data import read_lists, read_options, read_pairs, read_prompts

    if cfg.data.path is None:
        raise InputError("no training data: pass --data FILE", field="data.path")
    path = cfg.data.path
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
    """Held-out data for ``data.eval_path`` (``None`` when not set), in the method's shape."""
    if cfg.data.eval_path is None:
        return None
    from prefkit.data import read_lists, read_options, read_pairs

    if method.step == "listwise":
        records, report = read_lists(cfg.data.eval_path, **read_options(cfg.data))
        return TrainData(lists=records, report=report)
    if method.step == "online":
        raise InputError("data.eval_path: held-out evaluation scores pairs or lists against the training loss; "
                         "online methods are evaluated on a world (--world)", field="data.eval_path")
    records, report = read_pairs(cfg.data.eval_path, **read_options(cfg.data))
    if method.step == "sft":
        return TrainData(sequences=[(r.prompt, r.chosen) for r in records], sources=[r.source for r in records],
                         report=report)
    return TrainData(pairs=records, report=report)
