"""Values the schema refuses (finite, in range, known devices), cross-section rules, and the
strict YAML rules (duplicate keys, YAML 1.1 booleans, unreadable --config paths)."""

import pytest

from prefkit.config import ConfigError, RunConfig, load


def config(*overrides: str) -> RunConfig:
    return load(RunConfig, None, list(overrides))


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("train.lr=.inf", r"train\.lr: must be a finite number in \(0, 1\], got inf"),
        ("train.lr=.nan", r"train\.lr: must be a finite number in \(0, 1\], got nan"),
        ("train.lr=1e20", r"train\.lr: .*got 1e\+20 \(AdamW moves every weight"),
        ("train.lr=0", r"train\.lr: must be a finite number in \(0, 1\]"),
        ("train.weight_decay=-1", r"train\.weight_decay: must be a finite number in \[0, inf\)"),
        ("train.weight_decay=.inf", r"train\.weight_decay: .*got inf"),
        ("train.max_grad_norm=-1", r"train\.max_grad_norm: must be a finite number in \(0, inf\).*null disables"),
        ("train.max_grad_norm=.inf", r"train\.max_grad_norm: .*got inf"),
        ("train.adam_beta1=1.0", r"train\.adam_beta1: must be a finite number in \[0, 1\)"),
        ("train.adam_beta2=-0.1", r"train\.adam_beta2: must be a finite number in \[0, 1\)"),
        ("train.adam_eps=0", r"train\.adam_eps: must be a finite number in \(0, inf\)"),
        ("train.warmup_steps=-3", r"train\.warmup_steps: must be >= 0, got -3"),
        ("train.save_every=-1", r"train\.save_every: must be >= 0"),
        ("train.eval_every=-1", r"train\.eval_every: must be >= 0"),
        ("train.bucket_overhead=-1", r"train\.bucket_overhead: must be >= 0"),
        ("train.log_every=0", r"train\.log_every: must be >= 1"),
        ("train.max_length=1", r"train\.max_length: must be at least 2"),
        ("train.max_prompt_length=512", r"train\.max_prompt_length: must be in \[1, train\.max_length=512\)"),
        ("train.threads=-1", r"train\.threads: must be null \(torch's default\) or >= 1, got -1"),
        ("train.threads=0", r"train\.threads: must be null .* got 0"),
        ("train.device=tpu", r"train\.device: 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
        ("train.device=cuda:x", r"train\.device: 'cuda:x' is not one of"),
        ("loss.beta=.inf", r"loss\.beta: must be a finite number in \[0, inf\)"),
        ("loss.beta=-1", r"loss\.beta: must be a finite number in \[0, inf\)"),
        ("loss.nll_weight=.nan", r"loss\.nll_weight: must be a finite number in \[0, inf\)"),
        ("loss.nll_weight=-1", r"loss\.nll_weight: must be a finite number in \[0, inf\)"),
        ("loss.weights={dpo: .inf}", r"loss\.weights\.dpo: must be a finite number in \[0, inf\)"),
        ("loss.weights={dpo: -1}", r"loss\.weights\.dpo: must be a finite number"),
        ("online.temperature=.inf", r"online\.temperature: must be a finite number in \(0, inf\)"),
        ("eval.temperature=.inf", r"eval\.temperature: must be a finite number"),
        ("rm.tau=.inf", r"rm\.tau: must be a finite number in \(0, inf\)"),
        ("rm.margin=.inf", r"rm\.margin: must be a finite number in \[0, inf\)"),
        ("rm.adaptive_margin=.nan", r"rm\.adaptive_margin: must be a finite number"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config(override)


@pytest.mark.parametrize(
    "override",
    ["train.lr=1", "train.lr=1e-6", "train.max_grad_norm=null", "train.threads=1", "train.device=cuda:1",
     "train.device=mps", "train.adam_beta1=0", "loss.beta=0.5", "loss.weights={dpo: 0.5, ipo: 0}",
     "train.max_prompt_length=511"],
)
def test_values_at_the_edges_of_the_ranges_are_accepted(override):
    config(override)  # the device's presence is checked at run start, not here


def test_tiny_positions_must_cover_max_length():
    with pytest.raises(ConfigError, match=r"tiny\.max_position_embeddings \(16\) is smaller than train\.max_length \(64\)"):
        config("tiny.max_position_embeddings=16", "train.max_length=64")
    config("tiny.max_position_embeddings=64", "train.max_length=64")
    config("model=some/dir", "tiny.max_position_embeddings=16", "train.max_length=64")  # not the tiny model


def test_a_cross_section_rule_broken_by_the_file_can_be_fixed_by_an_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("tiny:\n  max_position_embeddings: 16\ntrain:\n  max_length: 64\n")
    with pytest.raises(ConfigError, match=r"tiny\.max_position_embeddings"):
        load(RunConfig, path)
    assert load(RunConfig, path, ["tiny.max_position_embeddings=64"]).tiny.max_position_embeddings == 64


def test_duplicate_keys_in_a_config_file_name_the_key_and_both_lines(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 1\n  lr: 0.001\n  steps: 2\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:4: duplicate key 'steps' \(first given at line 2\)"):
        load(RunConfig, path)
    path.write_text("seed: 1\ntrain: {}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r":3: duplicate key 'seed'"):
        load(RunConfig, path)


def test_duplicate_keys_in_an_override_mapping_are_refused():
    with pytest.raises(ConfigError, match="duplicate key 'label_smoothing'"):
        config("loss.params={label_smoothing: 0.1, label_smoothing: 0.2}")


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "OFF"])
def test_yaml_1_1_booleans_are_refused_with_write_true_false(tmp_path, word):
    with pytest.raises(ConfigError, match=rf"trust_remote_code: '{word}' is a YAML 1.1 boolean.*write true/false"):
        config(f"trust_remote_code={word}")
    path = tmp_path / "run.yaml"
    path.write_text(f"trust_remote_code: {word}\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: trust_remote_code: .* write true/false"):
        load(RunConfig, path)


def test_yaml_1_1_booleans_are_refused_inside_free_form_values_and_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"loss\.params\.flag: 'on' is a YAML 1\.1 boolean"):
        config("loss.params={flag: on}")
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  on: 1\n")
    with pytest.raises(ConfigError, match=r"train\.on: 'on' is a YAML 1\.1 boolean"):
        load(RunConfig, path)


def test_true_false_and_quoted_words_keep_their_meaning():
    assert config("trust_remote_code=true").trust_remote_code is True
    assert config("trust_remote_code=False").trust_remote_code is False
    assert config("train.shuffle=FALSE").train.shuffle is False
    assert config("model='yes'").model == "yes"  # quoted: the text
    assert config("loss.params={mode: y}").loss.params == {"mode": "y"}  # PyYAML never read y/n as booleans
    with pytest.raises(ConfigError, match="trust_remote_code: expected true or false, got 'yes'"):
        config("trust_remote_code='yes'")


def test_config_path_that_is_a_directory_or_missing_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; --config takes a YAML file"):
        load(RunConfig, tmp_path)
    with pytest.raises(ConfigError, match="no such config file"):
        load(RunConfig, tmp_path / "missing.yaml")
