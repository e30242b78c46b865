"""Typed, strict configuration (dataclasses as schema, YAML as the serialised form)."""

from prefkit.config.schema import (
    DataConfig,
    EvalConfig,
    GenerativeJudgeConfig,
    HindsightConfig,
    ILFConfig,
    LoraConfig,
    LossConfig,
    OnlineConfig,
    RewardModelConfig,
    RunConfig,
    TinyConfig,
    TrainConfig,
)
from prefkit.config.strict import (
    ConfigError,
    apply_overrides,
    from_dict,
    load,
    load_yaml,
    parse_override,
    save_yaml,
    to_dict,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "GenerativeJudgeConfig",
    "HindsightConfig",
    "ILFConfig",
    "LoraConfig",
    "LossConfig",
    "OnlineConfig",
    "RewardModelConfig",
    "RunConfig",
    "TinyConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "load",
    "load_yaml",
    "parse_override",
    "save_yaml",
    "to_dict",
]
