"""LoRA through PEFT (prefkit.policy.lora): the config, the wrapping, the adapters-off reference,
the merged and adapter outputs, and the refusals."""

import copy
import sys

import pytest
import torch

from prefkit.config import ConfigError, LoraConfig, RunConfig, load
from prefkit.engine.offline.refcache import model_fingerprint
from prefkit.errors import InputError
from prefkit.policy import Policy, sequence_logps, use_full_forward
from prefkit.policy._hf import innermost, logits_to_keep_argument
from prefkit.policy.lora import (
    AdaptersOff,
    adapters_off,
    apply_lora,
    base_state_dict,
    enable_gradient_checkpointing,
    is_lora,
    merged_state_dict,
    quantization_config,
)

from .conftest import TEXTS, TINY

peft = pytest.importorskip("peft")

PROMPTS = ["the cat", "hello world", "one two three", "a dog"]
RESPONSES = ["sat on the mat .", ", how are you today ?", "four five six", "ran far away"]
LORA = LoraConfig(r=4, alpha=8.0)


def _base() -> Policy:
    return Policy.tiny(TEXTS, TINY, seed=0)


def _wrapped(lora: LoraConfig = LORA) -> tuple[Policy, torch.nn.Module]:
    """A LoRA policy and a deep copy of its base taken before wrapping."""
    base = _base()
    original = copy.deepcopy(base.model).eval()
    return Policy(apply_lora(base.model, lora, seed=0), base.tokenizer), original


def _train_adapters(policy: Policy, steps: int = 3) -> None:
    """A few SGD steps on the adapters, so that B != 0."""
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    batch = policy.encode(PROMPTS, RESPONSES, max_length=32)
    policy.model.train()
    for _ in range(steps):
        sums, _ = sequence_logps(policy.model, batch)
        (-sums.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("override, message", [
    ("lora.r=-1", r"lora\.r must be an integer >= 0"),
    ("lora.alpha=0", r"lora\.alpha must be positive"),
    ("lora.dropout=1.0", r"lora\.dropout must be in \[0, 1\)"),
    ("lora.dropout=-0.1", r"lora\.dropout must be in \[0, 1\)"),
    ("lora.target_modules=[]", r"lora\.target_modules must be 'all-linear' or a non-empty list"),
    ("lora.target_modules=[q_proj, all-linear]", r"'all-linear' stands alone"),
    ("lora.quantize=3bit", r"lora\.quantize: '3bit' is not one of"),
])
def test_bad_lora_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load(RunConfig, None, ["lora.r=8", override])


@pytest.mark.parametrize("override", ["lora.alpha=32", "lora.dropout=0.1", "lora.target_modules=[q_proj]",
                                      "lora.quantize=4bit"])
def test_a_lora_key_without_lora_r_is_refused_not_ignored(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} is set but lora\.r=0 turns LoRA off"):
        load(RunConfig, None, [override])


def test_lora_config_defaults_and_target_forms():
    assert load(RunConfig, None, []).lora == LoraConfig(r=0, alpha=16.0, dropout=0.0, target_modules="all-linear",
                                                        quantize="none")
    assert not LoraConfig().enabled and LoraConfig(r=1).enabled
    cfg = load(RunConfig, None, ["lora.r=8", "lora.target_modules=q_proj, v_proj"])
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert load(RunConfig, None, ["lora.r=8", "lora.target_modules=[o_proj]"]).lora.target_modules == ["o_proj"]


# ------------------------------------------------------------------ wrapping


def test_lora_trains_only_the_adapters_and_starts_at_the_base():
    policy, original = _wrapped()
    assert is_lora(policy.model) and not is_lora(original)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # all-linear: the 7 projections of each of the 2 layers, never the output head
    assert len(trainable) == 2 * 7 * 2 and not any("lm_head" in n for n in trainable)
    batch = policy.encode(PROMPTS, RESPONSES, max_length=32)
    with torch.no_grad():
        assert torch.equal(sequence_logps(policy.model.eval(), batch)[0], sequence_logps(original, batch)[0])


def test_lora_init_is_a_function_of_the_seed_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    first, _ = _wrapped()
    assert torch.equal(torch.get_rng_state(), state)
    second, _ = _wrapped()
    for (name, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters()):
        assert torch.equal(a, b), name


def test_target_modules_that_match_nothing_are_an_error_naming_the_key():
    with pytest.raises(InputError, match=r"\[lora\.target_modules\].*\['nonexistent'\] match no module.*q_proj"):
        apply_lora(_base().model, LoraConfig(r=4, target_modules=["q_proj", "nonexistent"]))
    wrapped = apply_lora(_base().model, LoraConfig(r=4, target_modules=["v_proj"]))
    assert {n.split(".")[-4] for n, p in wrapped.named_parameters() if p.requires_grad} == {"v_proj"}


def test_adapters_on_adapters_are_refused():
    policy, _ = _wrapped()
    with pytest.raises(InputError, match=r"\[lora\.r\].*already carries PEFT adapters"):
        apply_lora(policy.model, LORA)


def test_quantize_is_refused_without_cuda_or_bitsandbytes(monkeypatch):
    quantized = LoraConfig(r=4, quantize="4bit")
    assert quantization_config(LORA, torch.device("cpu"), "fp32") is None
    with pytest.raises(InputError, match=r"\[lora\.quantize\].*needs a CUDA device.*lora\.quantize=none"):
        quantization_config(quantized, torch.device("cpu"), "fp32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    with pytest.raises(InputError, match=r"\[lora\.quantize\].*needs bitsandbytes"):
        quantization_config(LoraConfig(r=4, quantize="8bit"), torch.device("cuda"), "bf16")


def test_under_deepspeed_zero3_adapters_keep_the_base_dtype_and_checkpointing_is_reentrant(monkeypatch):
    base = _base()
    base.model.to(torch.bfloat16)
    dtypes = {p.dtype for p in apply_lora(copy.deepcopy(base.model), LORA).parameters() if p.requires_grad}
    assert dtypes == {torch.float32}  # PEFT's default: adapters upcast
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    wrapped = apply_lora(base.model, LORA)
    assert {p.dtype for p in wrapped.parameters() if p.requires_grad} == {torch.bfloat16}
    seen = {}
    monkeypatch.setattr(type(wrapped.get_base_model()), "activation_checkpointing_enable",
                        lambda self, activation_checkpointing_kwargs=None, **_: seen.update(activation_checkpointing_kwargs))
    enable_gradient_checkpointing(wrapped)
    assert seen == {"use_reentrant": True}


def test_logps_through_peft_keep_the_chunked_head_and_logits_to_keep():
    policy, _ = _wrapped()
    _train_adapters(policy, steps=1)
    assert innermost(policy.model) is policy.model.get_base_model()
    assert logits_to_keep_argument(policy.model) == "logits_to_keep"  # PeftModel's forward hides it
    batch = policy.encode(PROMPTS, RESPONSES, max_length=32)
    seen = []
    hook = innermost(policy.model).register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("logits_to_keep")), with_kwargs=True)
    try:
        chunked, _ = sequence_logps(policy.model, batch, chunk_size=3)
        full, _ = sequence_logps(policy.model, batch, chunk_size=None)
    finally:
        hook.remove()
    assert seen == [1, None]  # the chunked path asks for one position's logits only
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-5)


def test_a_full_forward_model_stays_full_forward_under_peft():
    base = _base()
    use_full_forward(base.model)
    wrapped = apply_lora(base.model, LORA)
    seen = []
    hook = innermost(wrapped).register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("output_hidden_states")), with_kwargs=True)
    try:
        sequence_logps(wrapped, base.encode(PROMPTS, RESPONSES, max_length=32))
    finally:
        hook.remove()
    assert seen == [None]  # full logits, not hidden states + head


def test_gradient_checkpointing_with_lora_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        policy, _ = _wrapped()
        if checkpointing:
            enable_gradient_checkpointing(policy.model)
            base = policy.model.get_base_model()
            assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
        policy.model.train()
        sums, _ = sequence_logps(policy.model, policy.encode(PROMPTS, RESPONSES, max_length=32))
        sums.sum().backward()
        grads.append({n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)
    assert any(bool(g.abs().sum() > 0) for g in grads[1].values())


# ------------------------------------------------------------------ the adapters-off reference


def test_reference_is_the_base_exactly_before_and_after_training():
    policy, original = _wrapped()
    reference = Policy(adapters_off(policy.model), policy.tokenizer)
    base_logps = Policy(original, policy.tokenizer).logprob(PROMPTS, RESPONSES)
    assert torch.equal(reference.logprob(PROMPTS, RESPONSES), base_logps)
    fingerprint = model_fingerprint(original)
    assert model_fingerprint(reference.model) == fingerprint  # the base weights' own hash
    _train_adapters(policy)
    assert policy.model.training  # the reference forwards never leave the policy in eval mode
    assert (policy.logprob(PROMPTS, RESPONSES) - base_logps).abs().max() > 1e-2
    assert torch.equal(reference.logprob(PROMPTS, RESPONSES), base_logps)
    assert model_fingerprint(reference.model) == fingerprint  # stable: training moved only the adapters
    assert adapters_off(policy.model) is None  # B != 0: the base is no longer the current policy


def test_the_view_holds_no_weights_and_never_changes_the_policy():
    policy, original = _wrapped(LoraConfig(r=4, dropout=0.5))
    q_proj = policy.model.get_base_model().model.layers[0].self_attn.q_proj
    assert q_proj.lora_dropout["default"].p == 0.5 and q_proj.scaling["default"] == 16.0 / 4  # lora.dropout, alpha
    view = AdaptersOff(policy.model)
    assert list(view.children()) == [] and list(view._parameters) == []
    assert [n for n, _ in view.named_parameters()] == [n for n, _ in original.named_parameters()]
    assert all(not p.requires_grad for p in view.parameters())
    assert base_state_dict(policy.model).keys() == original.state_dict().keys()
    policy.model.train()
    view.eval()
    view.requires_grad_(False)
    assert policy.model.training and all(m.training for m in policy.model.modules())
    assert sum(p.requires_grad for p in policy.model.parameters()) == 2 * 7 * 2
    with view.active() as model:
        assert not any(m.training for m in model.modules()) and not torch.is_grad_enabled()
    assert all(m.training for m in policy.model.modules())
    with pytest.raises(TypeError, match="copy the policy instead"):
        copy.deepcopy(view)
    with pytest.raises(TypeError, match="load weights into the PEFT model"):
        view.load_state_dict({})


def test_mixture_sampling_with_the_view_equals_a_copied_reference():
    policy, original = _wrapped()
    _train_adapters(policy)
    draws = []
    for reference in (AdaptersOff(policy.model), original):
        generator = torch.Generator().manual_seed(3)
        draws.append(policy.sample(PROMPTS, 3, max_new_tokens=6, generator=generator, mixture=(reference, 0.5)))
    assert draws[0].token_ids == draws[1].token_ids
    assert torch.equal(draws[0].logps, draws[1].logps)


# ------------------------------------------------------------------ outputs


def test_merged_state_dict_has_the_plain_names_and_adds_the_delta():
    policy, original = _wrapped()
    unmerged = merged_state_dict(policy.model, merge=False)
    assert unmerged.keys() == original.state_dict().keys()
    for key, value in original.state_dict().items():
        assert torch.equal(unmerged[key], value), key
    _train_adapters(policy)
    merged = merged_state_dict(policy.model)
    layer = policy.model.get_base_model().model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(merged["model.layers.0.self_attn.q_proj.weight"], expected, rtol=0, atol=1e-6)
    assert torch.equal(merged["lm_head.weight"], original.state_dict()["lm_head.weight"])  # not adapted


def test_saved_policy_is_the_merged_model_and_the_adapter_loads_on_the_base(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy, original = _wrapped()
    _train_adapters(policy)
    trained = policy.logprob(PROMPTS, RESPONSES)
    policy.save(tmp_path / "policy")
    Policy(original, policy.tokenizer).save(tmp_path / "original")
    policy.save_adapter(tmp_path / "adapter", base_model=str(tmp_path / "original"))
    assert not (tmp_path / "policy" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    assert tokenizer.chat_template == policy.tokenizer.chat_template
    merged = Policy(model, tokenizer).logprob(PROMPTS, RESPONSES)
    torch.testing.assert_close(merged, trained, rtol=0, atol=1e-5)
    adapted = PeftModel.from_pretrained(copy.deepcopy(original), tmp_path / "adapter")
    torch.testing.assert_close(Policy(adapted, policy.tokenizer).logprob(PROMPTS, RESPONSES), trained, rtol=0, atol=1e-5)
    assert peft.PeftConfig.from_pretrained(tmp_path / "adapter").base_model_name_or_path == str(tmp_path / "original")
    # the view saves the base, unchanged
    Policy(AdaptersOff(policy.model), policy.tokenizer).save(tmp_path / "base")
    base = Policy.load(tmp_path / "base", device="cpu")
    assert torch.equal(base.logprob(PROMPTS, RESPONSES), Policy(original, policy.tokenizer).logprob(PROMPTS, RESPONSES))


def test_tied_embeddings_merge_and_save():
    base = Policy.tiny(TEXTS, TINY.__class__(**{**TINY.__dict__, "tie_word_embeddings": True}), seed=0)
    policy = Policy(apply_lora(base.model, LORA), base.tokenizer)
    state = merged_state_dict(policy.model)
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]
