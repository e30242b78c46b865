from dataclasses import dataclass, field
from typing import Literal

import pytest

from prefkit.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    from_dict,
    load,
    save_yaml,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    steps: int = 3
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested_values():
    cfg = from_dict(Outer, {"steps": 5, "inner": {"rate": 1, "mode": "b"}})
    assert cfg == Outer(steps=5, inner=Inner(rate=1.0, mode="b"))
    assert isinstance(cfg.inner.rate, float)


def test_unknown_key_is_rejected_with_suggestion_and_path():
    with pytest.raises(ConfigError, match=r"inner\.rat: unknown key; did you mean 'rate'"):
        from_dict(Outer, {"inner": {"rat": 0.2}})
    with pytest.raises(ConfigError, match=r"^stepz: unknown key; did you mean 'steps'"):
        from_dict(Outer, {"stepz": 1})


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"steps": "many"}, r"steps: expected an integer"),
        ({"steps": 2.5}, r"steps: expected an integer"),
        ({"steps": True}, r"steps: expected an integer"),
        ({"inner": {"mode": "c"}}, r"inner\.mode: 'c' is not one of \['a', 'b'\]"),
        ({"tags": "x"}, r"tags: expected a list"),
        ({"inner": 3}, r"inner: expected a mapping"),
    ],
)
def test_wrong_types_are_rejected(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        from_dict(Outer, data)


def test_overrides_parse_yaml_values_and_validate_paths():
    data = apply_overrides(Outer, {}, ["steps=7", "inner.rate=3e-4", "tags=[x, y]", "name=null"])
    cfg = from_dict(Outer, data)
    assert cfg.steps == 7 and cfg.inner.rate == pytest.approx(3e-4) and cfg.tags == ["x", "y"]
    with pytest.raises(ConfigError, match=r"inner\.mdoe: unknown key; did you mean 'mode'"):
        apply_overrides(Outer, {}, ["inner.mdoe=b"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(Outer, {}, ["steps"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides(Outer, {}, ["steps.x=1"])


def test_run_config_contract_overrides(tmp_path):
    overrides = [
        "tiny.hidden_size=128",
        "tiny.layers=2",
        "tiny.heads=4",
        "train.batch_size=8",
        "train.max_length=128",
        "train.steps=256",
        "train.lr=5e-5",
        "loss.beta=0.1",
        "seed=3",
    ]
    cfg = load(RunConfig, None, overrides)
    assert (cfg.tiny.hidden_size, cfg.train.steps, cfg.loss.beta, cfg.seed) == (128, 256, 0.1, 3)


def test_yaml_round_trip_and_file_errors(tmp_path):
    cfg = load(RunConfig, None, ["train.lr=1e-3", "loss.params={label_smoothing: 0.1}"])
    path = save_yaml(cfg, tmp_path / "config.yaml")
    again = load(RunConfig, path)
    assert again == cfg and to_dict(again)["loss"]["params"] == {"label_smoothing": 0.1}

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1e-3\n  stpes: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.stpes: unknown key; did you mean 'steps'"):
        load(RunConfig, bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: invalid YAML"):
        load(RunConfig, broken)
    with pytest.raises(ConfigError, match="no such config file"):
        load(RunConfig, tmp_path / "missing.yaml")


def test_semantic_checks_name_the_field():
    with pytest.raises(ConfigError, match=r"train\.grad_accum \(3\) must divide train\.batch_size \(8\)"):
        load(RunConfig, None, ["train.grad_accum=3"])
    with pytest.raises(ConfigError, match=r"tiny\.hidden_size \(30\) must be divisible"):
        load(RunConfig, None, ["tiny.hidden_size=30"])
