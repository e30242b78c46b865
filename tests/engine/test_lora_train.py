"""LoRA runs through the engine (lora.*): offline, online and preference-model training, their
outputs (adapter/ and the merged policy/), resume, the reference log-prob cache, data
parallelism, and the refusals before any training."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefkit.config import RunConfig, load
from prefkit.engine import TrainData, train
from prefkit.errors import InputError
from prefkit.policy import Policy

from .conftest import make_pairs, tiny_config

peft = pytest.importorskip("peft")

LORA = ("lora.r=4", "lora.alpha=8")


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _scored(policy: Policy, pairs) -> torch.Tensor:
    return policy.logprob([p.prompt for p in pairs], [p.chosen for p in pairs])


# ------------------------------------------------------------------ offline


def test_lora_dpo_writes_an_adapter_and_a_merged_policy_that_reproduce_the_trained_one(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = make_pairs(12)
    data = TrainData(pairs=pairs)
    cfg = tiny_config(tmp_path, "dpo", *LORA)
    result = train(cfg, data=data, progress=False)
    run = tmp_path / "run"
    assert {"policy", "adapter", "reference", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert result.metrics["lora_trainable_params"] < result.metrics["lora_total_params"] / 2
    assert result.history[0]["loss"] == pytest.approx(0.693147, abs=1e-6)  # starts at the reference
    trained = _scored(result.policy, pairs)

    # policy/: a plain transformers checkpoint (no PEFT files), with its tokenizer and chat template
    assert not (run / "policy" / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(run / "policy")
    assert tokenizer.chat_template and tokenizer.chat_template == result.policy.tokenizer.chat_template
    merged = Policy(AutoModelForCausalLM.from_pretrained(run / "policy"), tokenizer)
    torch.testing.assert_close(_scored(merged, pairs), trained, rtol=0, atol=1e-5)

    # reference/: the base, i.e. the initial tiny policy, bit for bit; adapter/ loads on it
    initial = Policy.tiny(data.texts(), cfg.tiny, seed=cfg.seed)
    base = Policy.load(run / "reference", device="cpu")
    assert torch.equal(_scored(base, pairs), _scored(initial, pairs))
    assert (trained - _scored(initial, pairs)).abs().max() > 1e-3  # training did move the policy
    adapter_cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str((run / "reference").resolve())
    assert adapter_cfg["r"] == 4 and adapter_cfg["lora_alpha"] == 8 and adapter_cfg["task_type"] == "CAUSAL_LM"
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run / "reference"), run / "adapter")
    torch.testing.assert_close(_scored(Policy(adapted, tokenizer), pairs), trained, rtol=0, atol=1e-5)


def test_lora_run_from_a_checkpoint_directory_points_its_adapter_at_it(tmp_path):
    from prefkit.policy import build_tiny_checkpoint

    pairs = make_pairs(8)
    base_dir = build_tiny_checkpoint(tmp_path / "base", TrainData(pairs=pairs).texts(), tiny_config(tmp_path).tiny)
    cfg = tiny_config(tmp_path, "dpo", f"model={base_dir}", "train.steps=2", *LORA)
    train(cfg, data=TrainData(pairs=pairs), progress=False)
    run = tmp_path / "run"
    assert not (run / "reference").exists() and not (run / "base").exists()  # the base is model=
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve())


def test_lora_reference_log_probs_share_the_cache_of_the_full_model(tmp_path):
    data = TrainData(pairs=make_pairs(8))
    plain = train(tiny_config(tmp_path / "plain", "dpo", "train.steps=1"), data=data, progress=False)
    lora = train(tiny_config(tmp_path / "lora", "dpo", "train.steps=1", *LORA), data=data, progress=False)
    assert not plain.metrics["ref_cache_hit"]
    assert lora.metrics["ref_cache_hit"]  # the adapters-off reference fingerprints as the base model


def test_lora_resume_continues_exactly(tmp_path):
    data = TrainData(pairs=make_pairs(12))
    full = train(tiny_config(tmp_path / "full", "dpo", "train.steps=6", *LORA), data=data, progress=False)
    part = tiny_config(tmp_path / "part", "dpo", "train.steps=3", *LORA)
    train(part, data=data, progress=False)
    resumed = train(dataclasses.replace(part, train=dataclasses.replace(part.train, steps=6)), data=data,
                    resume=True, progress=False)
    assert _losses(tmp_path / "part" / "run") == _losses(tmp_path / "full" / "run")
    for (name, a), (_, b) in zip(full.policy.model.named_parameters(), resumed.policy.model.named_parameters()):
        assert torch.equal(a, b), name


def test_lora_with_gradient_checkpointing_trains_exactly_as_without(tmp_path):
    data = TrainData(pairs=make_pairs(8))
    plain = train(tiny_config(tmp_path / "a", "dpo", *LORA), data=data, progress=False)
    checkpointed = train(tiny_config(tmp_path / "b", "dpo", "train.gradient_checkpointing=true", *LORA), data=data,
                         progress=False)
    assert [h["loss"] for h in checkpointed.history] == pytest.approx([h["loss"] for h in plain.history], rel=1e-6)
    assert plain.history[-1]["loss"] < plain.history[0]["loss"]


def test_world_evaluation_samples_and_scores_the_adapters_off_reference(tmp_path, monkeypatch):
    import prefkit.engine.models as models
    from prefkit.engine.evaluation import world_evaluator

    data = TrainData(pairs=make_pairs(8))
    scores = []
    for name in ("view", "copy"):
        if name == "copy":
            monkeypatch.setattr(models, "adapters_off", lambda model: None)  # a deep-copied reference
        cfg = tiny_config(tmp_path / name, "dpo", "train.steps=2", "eval.world=transitive", "eval.prompts=4",
                          "eval.samples=2", "eval.max_new_tokens=4", "eval.temperature=1.0", *LORA)
        result = train(cfg, data=data, evaluate=world_evaluator(cfg), progress=False)
        scores.append({k: v for k, v in result.metrics.items() if k.startswith("eval/")})
    assert scores[0] == scores[1] and scores[0]["eval/kl"] != 0


def test_lora_sft_run_saves_the_base_as_its_reference(tmp_path):
    pairs = make_pairs(8)
    result = train(tiny_config(tmp_path, "sft", "train.steps=2", *LORA), data=TrainData(pairs=pairs), progress=False)
    run = tmp_path / "run"
    assert (run / "adapter").is_dir() and (run / "reference").is_dir()
    initial = Policy.tiny(TrainData(pairs=pairs).texts(), tiny_config(tmp_path).tiny, seed=0)
    assert torch.equal(_scored(Policy.load(run / "reference", device="cpu"), pairs), _scored(initial, pairs))
    assert result.metrics["lora_trainable_params"] > 0


def test_eval_and_another_runs_model_take_a_lora_run(tmp_path, capsys):
    from prefkit.cli.main import main
    from prefkit.data import write_jsonl

    data = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(16), data)
    tiny = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32",
            "train.lr=1e-2", "train.steps=4", *LORA]
    out = tmp_path / "run"
    assert main(["train", "--method", "dpo", "--data", str(data), "--model", "tiny", "--out", str(out), *tiny]) == 0
    capsys.readouterr()
    assert main(["eval", "--policy", str(out), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 16 and result["accuracy"] > 0.5
    second = tmp_path / "second"
    assert main(["train", "--method", "sft", "--data", str(data), "--model", str(out / "policy"), "--out",
                 str(second), *tiny]) == 0
    assert (second / "adapter").is_dir()
    config = json.loads((second / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((out / "policy").resolve())


# ------------------------------------------------------------------ refusals before training


@pytest.mark.parametrize("overrides, message", [
    (["lora.r=4", "lora.target_modules=[nonexistent]"], r"\[lora\.target_modules\].*match no module"),
    (["lora.r=4", "lora.quantize=4bit"], r"\[lora\.quantize\].*needs a CUDA device"),
])
def test_bad_lora_settings_stop_before_any_training(tmp_path, overrides, message):
    cfg = tiny_config(tmp_path, "dpo", *overrides)
    with pytest.raises(InputError, match=message):
        train(cfg, data=TrainData(pairs=make_pairs(4)), progress=False)
    run = tmp_path / "run"
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()


def test_quantize_with_an_in_memory_policy_is_refused(tmp_path, monkeypatch):
    from prefkit.engine.models import with_lora

    cfg = tiny_config(tmp_path, "dpo", "lora.r=4", "lora.quantize=8bit")
    policy = Policy.tiny(["a b c"], cfg.tiny)
    with pytest.raises(InputError, match=r"\[lora\.quantize\].*policy given in memory"):
        with_lora(cfg, policy)


# ------------------------------------------------------------------ online


def _world_config(tmp_path, method, *overrides) -> RunConfig:
    return load(RunConfig, None, [
        f"method={method}", f"out={tmp_path / 'run'}", "eval.world=transitive", "tiny.hidden_size=16",
        "tiny.layers=1", "tiny.heads=2", "train.steps=2", "train.max_length=48", "train.lr=1e-2",
        "train.log_every=1", "online.prompts_per_step=3", "online.max_new_tokens=6", *LORA, *overrides,
    ])


@pytest.mark.parametrize("method, overrides", [
    ("nash_md", []),  # mixture sampling interleaves policy and reference forwards
    ("superhf", ["loss.beta=0.1", "online.reward=win_rate"]),  # the exact KL runs the reference in the step
])
def test_online_lora_with_adapters_off_equals_a_copied_reference(tmp_path, monkeypatch, method, overrides):
    import prefkit.engine.models as models
    from prefkit.sim import make_world

    prompts = make_world("transitive", seed=0).prompts("train", 6)
    viewed = train(_world_config(tmp_path / "view", method, *overrides), data=TrainData(prompts=prompts),
                   progress=False)
    monkeypatch.setattr(models, "adapters_off", lambda model: None)  # forces a deep-copied reference
    copied = train(_world_config(tmp_path / "copy", method, *overrides), data=TrainData(prompts=prompts),
                   progress=False)
    def untimed(history):
        return [{k: v for k, v in h.items() if not k.endswith("_s") and k != "gen_share"} for h in history]

    assert untimed(viewed.history) == untimed(copied.history)  # same samples, judgements, losses, bit for bit
    assert viewed.metrics["queries"] == copied.metrics["queries"] > 0
    run = tmp_path / "view" / "run"
    assert (run / "adapter").is_dir() and (run / "policy" / "config.json").is_file() and (run / "reference").is_dir()


def test_online_lora_refuses_what_it_cannot_honour(tmp_path):
    from prefkit.sim import make_world

    prompts = make_world("transitive", seed=0).prompts("train", 3)
    with pytest.raises(InputError, match=r"\[lora\.r\].*trains nothing"):
        train(_world_config(tmp_path / "a", "best_of_n", "online.reward=win_rate"), data=TrainData(prompts=prompts),
              progress=False)
    with pytest.raises(InputError, match=r"\[online\.backend\].*prefkit\[vllm\]"):  # LoRA + vLLM syncs merged weights: needs vLLM
        train(_world_config(tmp_path / "b", "online_dpo", "online.backend=vllm"), data=TrainData(prompts=prompts),
              progress=False)


# ------------------------------------------------------------------ preference models


def _rm_config(tmp_path, *overrides) -> RunConfig:
    return load(RunConfig, None, [f"out={tmp_path / 'run'}", "train.steps=4", "train.batch_size=3", "train.lr=0.01",
                                  "train.log_every=1", "rm.dropout=0.0", "tiny.hidden_size=16", "tiny.layers=1",
                                  "tiny.heads=2", *LORA, *overrides])


def test_lora_preference_model_trains_adapters_and_head_and_saves_the_merged_backbone(tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    from prefkit.engine.preference.train import build_preference_model, train_preference_model
    from prefkit.preference import load_preference_model
    from tests.preference.conftest import example_records

    records = example_records()
    cfg = _rm_config(tmp_path)
    initial = build_preference_model(cfg, records, torch.device("cpu"))
    initial_head = {k: v.clone() for k, v in initial.head.state_dict().items()}
    initial_base = {k: v.clone() for k, v in initial.backbone.model.get_base_model().state_dict().items()
                    if "lora_" not in k}
    trained = train_preference_model(cfg, records=records).model
    assert any(not torch.equal(v, trained.head.state_dict()[k]) for k, v in initial_head.items())  # head trained
    now_base = {k: v for k, v in trained.backbone.model.get_base_model().state_dict().items() if "lora_" not in k}
    assert all(torch.equal(v, now_base[k]) for k, v in initial_base.items())  # backbone weights frozen
    assert any(not bool((p == 0).all()) for n, p in trained.named_parameters() if ".lora_B." in n)  # adapters moved

    run = tmp_path / "run"
    assert {"model", "adapter", "base"} <= {p.name for p in run.iterdir()}
    assert not (run / "model" / "adapter_config.json").exists()  # the same format as without LoRA
    loaded = load_preference_model(run)
    prompts, responses = [r.prompt for r in records], [r.chosen for r in records]
    trained.eval()
    torch.testing.assert_close(loaded.score(prompts, responses), trained.score(prompts, responses), rtol=0,
                               atol=1e-5)
    backbone = trained.backbone
    batch = backbone.collate(backbone.prepare(prompts, responses))
    with torch.no_grad():
        expected = backbone.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        adapted = PeftModel.from_pretrained(AutoModel.from_pretrained(run / "base"), run / "adapter").eval()
        got = adapted(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_lora_with_gradient_checkpointing_in_online_and_preference_runs(tmp_path):
    from prefkit.engine.preference.train import train_preference_model
    from prefkit.sim import make_world
    from tests.preference.conftest import example_records

    prompts = make_world("transitive", seed=0).prompts("train", 3)
    histories = []
    for flag in ("false", "true"):
        gc = f"train.gradient_checkpointing={flag}"
        online = train(_world_config(tmp_path / f"o{flag}", "online_dpo", gc), data=TrainData(prompts=prompts),
                       progress=False)
        rm = train_preference_model(_rm_config(tmp_path / f"r{flag}", gc), records=example_records())
        histories.append(([h["loss"] for h in online.history], [h["loss"] for h in rm.history]))
        for model in (online.policy.model.get_base_model(), rm.model.backbone.model.get_base_model()):
            assert model.is_activation_checkpointing == (flag == "true")
    assert histories[1][0] == pytest.approx(histories[0][0], rel=1e-6)
    assert histories[1][1] == pytest.approx(histories[0][1], rel=1e-6)


def test_lora_with_a_frozen_backbone_is_refused(tmp_path):
    from prefkit.engine.preference.train import train_preference_model
    from tests.preference.conftest import example_records

    with pytest.raises(InputError, match=r"\[lora\.r\].*rm\.freeze_backbone"):
        train_preference_model(_rm_config(tmp_path, "rm.freeze_backbone=true"), records=example_records())


# ------------------------------------------------------------------ data parallelism


@pytest.mark.slow
def test_two_gloo_processes_train_lora_as_one(tmp_path):
    """DDP over a PeftModel (accelerate prepares it): no unused-parameter error, and two CPU
    processes at the same global batch give one process's losses and adapter weights."""
    from prefkit.data import write_jsonl

    data = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(16), data)
    args = ["train", "--method", "dpo", "--data", str(data), "--model", "tiny", "tiny.hidden_size=16",
            "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32", "train.lr=1e-2",
            "train.steps=3", "train.log_every=1", "train.device=cpu", "train.max_grad_norm=null", *LORA]
    from prefkit.cli.main import main

    runs = {1: tmp_path / "w1", 2: tmp_path / "w2"}
    assert main([*args, "--out", str(runs[1])]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(29_500 + os.getpid() % 1000), "-m", "prefkit"]
    done = subprocess.run([*launcher, *args, "--out", str(runs[2])], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _losses(runs[2]) == pytest.approx(_losses(runs[1]), abs=1e-5)
    assert json.loads((runs[2] / "metrics.json").read_text())["processes"] == 2
    from safetensors.torch import load_file

    one = load_file(runs[1] / "adapter" / "adapter_model.safetensors")
    two = load_file(runs[2] / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)


def test_in_memory_policy_is_wrapped_and_its_reference_is_adapters_off(tmp_path):
    from prefkit.engine.models import initial_reference, with_lora
    from prefkit.policy.lora import AdaptersOff

    cfg = tiny_config(tmp_path, "dpo", *LORA)
    policy = Policy.tiny(TrainData(pairs=make_pairs(4)).texts(), cfg.tiny)
    untouched = Policy(copy.deepcopy(policy.model), policy.tokenizer)
    wrapped = with_lora(cfg, policy)
    assert isinstance(initial_reference(wrapped).model, AdaptersOff)
    assert with_lora(tiny_config(tmp_path, "dpo"), untouched) is untouched  # lora.r=0: as given
