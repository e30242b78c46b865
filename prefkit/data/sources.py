"""Where training and held-out data come from: a file, a ``save_to_disk`` directory (a Dataset
or a DatasetDict with splits), a ``datasets`` object, or a Hugging Face hub dataset name.

A :class:`DataSource` bundles the location with the split and the column map; every reader
(``read_pairs``, ``read_lists``, ``read_prompts``, ``read_unpaired``, ``read_feedback``,
``validate``) accepts one wherever it accepts a path. :func:`train_source` and
:func:`eval_source` build them from the ``data`` section of a run's config::

    records, report = read_pairs(train_source(cfg.data))
    held_out = eval_source(cfg.data)          # None when there is no held-out data
    if held_out is not None:
        eval_records, _ = read_pairs(held_out)

Split rules (``docs/data.md``): ``data.split`` (default ``train``) picks the training split of a
DatasetDict or hub dataset; ``data.eval_split`` picks the held-out split, of ``data.eval_path``
when given, else of ``data.path``; with neither, a DatasetDict's ``test`` split is the held-out
data when it has one. A split named for a single file is an error, as is a split that is not
there (the error lists the splits).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.errors import InputError

DEFAULT_TRAIN_SPLIT = "train"
DEFAULT_EVAL_SPLIT = "test"
_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".pq", ".csv", ".tsv", ".txt", ".arrow")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class DataSource:
    """A dataset location with its split and column map.

    ``location``: a path (JSONL, Parquet, ``save_to_disk`` directory), a hub dataset name, or a
    ``datasets.Dataset`` / ``DatasetDict``. ``split``: the split of a DatasetDict or hub dataset
    (``None``: ``train``). ``columns``: ``{prefkit column: file column}``. ``role`` names the
    config key a split error points to (``data.split`` or ``data.eval_split``).
    """

    location: Any
    split: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    role: str = "data.split"

    @property
    def name(self) -> str:
        base = str(self.location) if isinstance(self.location, str | os.PathLike) else "<datasets object>"
        return f"{base}[{self.split}]" if self.split is not None else base


def is_dataset_dict_dir(path: str | os.PathLike[str]) -> bool:
    """A directory written by ``DatasetDict.save_to_disk``."""
    return (Path(path) / "dataset_dict.json").is_file()


def looks_like_hub_name(text: str) -> bool:
    """``name`` or ``org/name`` that is no local path and has no file suffix."""
    return (
        bool(_HUB_NAME.match(text))
        and not os.path.exists(text)
        and not text.lower().endswith(_FILE_SUFFIXES)
    )


def _local_splits(path: Path) -> list[str]:
    try:
        listed = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits")
    except (OSError, json.JSONDecodeError):
        listed = None
    if isinstance(listed, list) and all(isinstance(s, str) for s in listed):
        return listed
    return sorted(p.name for p in path.iterdir() if p.is_dir())


def load_hub_dataset(name: str) -> Any:
    """``datasets.load_dataset(name)`` (every split), or an :class:`InputError` that says the
    name is neither a local path nor a loadable hub dataset (no network, unknown name)."""
    import datasets

    try:
        return datasets.load_dataset(name)
    except Exception as err:  # datasets raises many types (network, not found, offline mode)
        raise InputError(
            "not a local file or directory, and not loadable as a Hugging Face hub dataset "
            f"(datasets.load_dataset: {type(err).__name__}: {err})",
            file=name,
        ) from err


def splits_of(location: Any) -> list[str] | None:
    """The split names of a DatasetDict (a directory, an object or a hub name), or ``None`` for a
    single file or Dataset."""
    if isinstance(location, str | os.PathLike):
        path = Path(location)
        if path.is_dir():
            return _local_splits(path) if is_dataset_dict_dir(path) else None
        if path.exists() or not looks_like_hub_name(str(location)):
            return None
        location = load_hub_dataset(str(location))
    return list(location.keys()) if _is_dataset_dict(location) else None


def _is_dataset_dict(value: Any) -> bool:
    return isinstance(getattr(value, "column_names", None), dict)


def _pick(dataset_dict: Any, split: str, name: str, role: str) -> Any:
    splits = list(dataset_dict.keys())
    if split not in splits:
        raise InputError(
            f"no split '{split}' (splits: {', '.join(splits) or 'none'}); set {role} to one of them",
            file=name,
            field=role,
        )
    return dataset_dict[split]


def resolve(source: DataSource) -> tuple[Any, str]:
    """``(what to open, display name)``: a path or a ``datasets.Dataset`` of the chosen split."""
    location, split, role = source.location, source.split, source.role
    if isinstance(location, str | os.PathLike):
        path = Path(location)
        if path.is_dir() and is_dataset_dict_dir(path):
            from datasets import load_from_disk

            chosen = split or DEFAULT_TRAIN_SPLIT
            splits = _local_splits(path)
            if chosen not in splits:
                raise InputError(
                    f"a DatasetDict without a '{chosen}' split (splits: {', '.join(splits) or 'none'}); "
                    f"set {role} to one of them",
                    file=str(path),
                    field=role,
                )
            try:
                dataset = load_from_disk(str(path / chosen))
            except Exception as err:
                raise InputError(f"cannot load split '{chosen}': {err}", file=str(path)) from err
            return dataset, f"{path}[{chosen}]"
        if path.exists() or not looks_like_hub_name(str(location)):
            if split is not None:
                raise InputError(
                    f"{role}={split!r} applies to a DatasetDict directory or a hub dataset; this is a "
                    "single file or Dataset (remove the split, or point at the DatasetDict)",
                    file=str(location),
                    field=role,
                )
            return location, str(location)
        location = load_hub_dataset(str(location))
        name = str(source.location)
    else:
        name = "<datasets object>"
    if _is_dataset_dict(location):
        chosen = split or DEFAULT_TRAIN_SPLIT
        return _pick(location, chosen, name, role), f"{name}[{chosen}]"
    if split is not None:
        raise InputError(f"{role}={split!r} given, but the dataset has no splits", file=name, field=role)
    return location, name


def train_source(data: Any) -> DataSource:
    """The training data of a run's ``data`` config section (``data.path``)."""
    if data.path is None:
        raise InputError("no training data: pass --data FILE", field="data.path")
    return DataSource(data.path, split=data.split, columns=dict(data.columns), role="data.split")


def eval_source(data: Any) -> DataSource | None:
    """The held-out data of a run's ``data`` section, or ``None`` when there is none.

    ``data.eval_path`` with ``data.eval_split`` (a DatasetDict there needs one unless it has a
    ``test`` split); else ``data.eval_split`` of ``data.path``; else the ``test`` split of a
    DatasetDict ``data.path`` when it has one.
    """
    columns = dict(data.columns)
    if data.eval_path is not None:
        split = data.eval_split
        if split is None:
            splits = splits_of(data.eval_path)
            if splits is not None:
                if DEFAULT_EVAL_SPLIT not in splits:
                    raise InputError(
                        f"a DatasetDict without a '{DEFAULT_EVAL_SPLIT}' split (splits: {', '.join(splits)}); "
                        "set data.eval_split to the held-out one",
                        file=str(data.eval_path),
                        field="data.eval_split",
                    )
                split = DEFAULT_EVAL_SPLIT
        return DataSource(data.eval_path, split=split, columns=columns, role="data.eval_split")
    if data.path is None:
        if data.eval_split is not None:
            raise InputError("data.eval_split needs data.path or data.eval_path", field="data.eval_split")
        return None
    train_split = data.split or DEFAULT_TRAIN_SPLIT
    if data.eval_split is not None:
        if splits_of(data.path) is None:
            raise InputError(
                f"data.eval_split={data.eval_split!r} needs a DatasetDict or hub dataset in data.path "
                "(or data.eval_path for held-out data in another file)",
                file=str(data.path),
                field="data.eval_split",
            )
        if data.eval_split == train_split:
            raise InputError(
                f"data.eval_split is the training split ('{train_split}'): held-out data must be another split",
                field="data.eval_split",
            )
        return DataSource(data.path, split=data.eval_split, columns=columns, role="data.eval_split")
    splits = splits_of(data.path)
    if splits is not None and DEFAULT_EVAL_SPLIT in splits and train_split != DEFAULT_EVAL_SPLIT:
        return DataSource(data.path, split=DEFAULT_EVAL_SPLIT, columns=columns, role="data.eval_split")
    return None
