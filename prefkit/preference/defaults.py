"""Training defaults that learn, per preference-model kind (``prefkit rm train``, ``rm strength``).

A preference model is a new head on a backbone: the head starts from random weights and needs a
much larger learning rate than the backbone, and small preference sets need passes over the
data rather than a fixed step count. The run config's generic defaults (``train.lr=5e-5``,
``train.steps=200``) are a policy's; for a preference model they learn nothing on a plain
rock-paper-scissors set (issue 10). :data:`KIND_DEFAULTS` replaces them, one layer below the
user's YAML file and ``key=value`` overrides, so any setting the user gives wins, and giving
``train.steps`` replaces the default ``train.epochs``. The values were chosen with
``benchmarks/gpm_defaults.py`` (table in ``benchmarks/RESULTS.md``).

A pretrained backbone (a checkpoint directory) fine-tunes in a few passes: 3 epochs, the
``num_train_epochs`` default of the transformers Trainer, which TRL 1.16's ``RewardConfig``
keeps (MiniLM reached 100% held-out on the benchmark's set within its first epoch). The built-in tiny preset
(``--model tiny``) is randomly initialised: there is nothing to preserve and everything to
learn, so it trains at a from-scratch rate for 40 epochs (:data:`FROM_SCRATCH_DEFAULTS`, over
the kind's). At the fine-tuning rate its random backbone barely moves and GPM fits the training
pairs without learning the types (held-out 0.66-0.84 on the benchmark's set); it found them
after 150-400 steps at 3e-4.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prefkit.config import ConfigError, RunConfig, load, load_yaml, parse_override

_SHARED = {"train.batch_size": 32, "train.warmup_ratio": 0.1, "train.schedule": "linear"}
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "bt": {**_SHARED, "train.lr": 1e-5, "rm.head_lr": 1e-2, "train.epochs": 3},
    "gpm": {**_SHARED, "train.lr": 1e-5, "rm.head_lr": 1e-2, "train.epochs": 3, "rm.dim": 8},
    "pairpm": {**_SHARED, "train.lr": 1e-5, "rm.head_lr": 1e-2, "train.epochs": 3},
}
"""Per ``rm.kind``: the settings ``prefkit rm train`` uses unless the user sets them. GPM's
``rm.dim=8`` (four 2-D blocks, as the authors' released Llama-3.1-8B GPM; Zhang et al. 2024,
arXiv 2410.02197) rather than the code's smallest ``value_head_dim=2``: with one block the tiny
preset memorised the training pairs instead of learning the types in 2 of 7 seeds on the
benchmark's set."""

FROM_SCRATCH_DEFAULTS: dict[str, Any] = {"train.lr": 3e-4, "train.epochs": 40}
"""For the randomly initialised tiny preset, over :data:`KIND_DEFAULTS` (any kind)."""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys |= _flatten(value, f"{path}.")
        else:
            keys.add(path)
    return keys


def user_keys(config: str | Path | None, overrides: Iterable[str]) -> set[str]:
    """Every dotted key the user set, in the YAML file or as ``key=value``."""
    keys = _flatten(load_yaml(config)) if config is not None else set()
    for text in overrides:
        keys.add(".".join(parse_override(text)[0]))
    return keys


def kind_defaults(kind: str, given: set[str], *, from_scratch: bool = False) -> list[str]:
    """The per-kind defaults (with :data:`FROM_SCRATCH_DEFAULTS` over them for a randomly
    initialised model) as dotted overrides, without any key in ``given`` (and without
    ``train.epochs`` when the user gave ``train.steps``)."""
    defaults = dict(KIND_DEFAULTS.get(kind, {}))
    if from_scratch and kind in KIND_DEFAULTS:
        defaults.update(FROM_SCRATCH_DEFAULTS)
    if "train.steps" in given:
        defaults.pop("train.epochs", None)
    return [f"{key}={value}" for key, value in defaults.items() if key not in given]


def preference_config(config: str | Path | None, overrides: Iterable[str]) -> RunConfig:
    """A preference-model run's config: dataclass defaults <- the kind's defaults <- YAML file
    <- overrides. Both ``train.steps`` and ``train.epochs`` set by the user is an error."""
    overrides = list(overrides)
    given = user_keys(config, overrides)
    if {"train.steps", "train.epochs"} <= given:
        raise ConfigError("train.epochs and train.steps are both set: give one (epochs sets the number of steps "
                          "from the data size)")
    plain = load(RunConfig, config, overrides)
    defaults = kind_defaults(plain.rm.kind, given, from_scratch=plain.model == "tiny")
    return load(RunConfig, config, overrides, defaults=defaults)
