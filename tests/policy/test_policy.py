import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from prefkit.config import TinyConfig
from prefkit.errors import InputError
from prefkit.policy import Policy, build_tiny_checkpoint, resolve_device, resolve_dtype

from .conftest import TEXTS, TINY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "policy", TEXTS, TINY, seed=0)


def test_tiny_model_follows_the_config():
    cfg = TinyConfig(
        hidden_size=32,
        layers=1,
        heads=4,
        kv_heads=2,
        max_vocab=40,
        tie_word_embeddings=True,
        max_position_embeddings=64,
    )
    policy = Policy.tiny(TEXTS, cfg, seed=0)
    config = policy.model.config
    assert (config.hidden_size, config.num_hidden_layers) == (32, 1)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.intermediate_size == 4 * 32
    assert config.vocab_size == len(policy.tokenizer) == 40
    assert config.max_position_embeddings == 64
    assert policy.model.lm_head.weight is policy.model.model.embed_tokens.weight


def test_num_parameters_worked_example():
    cfg = TinyConfig(hidden_size=32, layers=2, heads=4, kv_heads=2, max_vocab=40)
    policy = Policy.tiny(TEXTS, cfg, seed=0)
    h, vocab, mlp, kv = 32, 40, 128, 2 * 8  # kv: 2 heads of dimension 32 / 4
    attention = h * h + 2 * h * kv + h * h  # q, k, v, o
    layer = attention + 3 * h * mlp + 2 * h  # gate, up, down, two RMSNorms
    assert policy.num_parameters() == vocab * h + 2 * layer + h + vocab * h
    policy.model.lm_head.weight.requires_grad_(False)
    assert policy.num_parameters(trainable_only=True) == policy.num_parameters() - vocab * h


def test_tiny_is_seeded_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = Policy.tiny(TEXTS, TINY, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = Policy.tiny(TEXTS, TINY, seed=5)
    c = Policy.tiny(TEXTS, TINY, seed=6)
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.lm_head.weight, c.model.lm_head.weight)


def test_save_then_load_round_trips_logits_tokenizer_and_template(checkpoint):
    original = Policy.tiny(TEXTS, TINY, seed=0)
    loaded = Policy.load(checkpoint, device="cpu")
    assert (checkpoint / "model.safetensors").is_file()
    assert not list(checkpoint.glob("*.bin"))
    ids = torch.tensor([[1, 5, 9, 12, 7, 2]])
    with torch.no_grad():
        assert torch.equal(original.model(input_ids=ids).logits, loaded.model(input_ids=ids).logits)
    prompt = [{"role": "user", "content": "hello world"}]
    assert loaded.render_prompt(prompt) == original.render_prompt(prompt)
    assert loaded.prompt_ids([prompt]) == original.prompt_ids([prompt])
    assert loaded.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"


def test_saved_directory_is_a_plain_hugging_face_checkpoint(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_save_replaces_an_existing_directory_and_leaves_no_temporary_files(tmp_path, policy):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    policy.save(target)
    assert not (target / "stale.txt").exists()
    assert (target / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_load_in_bf16(checkpoint):
    loaded = Policy.load(checkpoint, device="cpu", dtype="bf16")
    assert loaded.dtype == torch.bfloat16
    batch = loaded.encode(["the cat"], ["sat on the mat"], max_length=32)
    from prefkit.policy import sequence_logps

    sums, _ = sequence_logps(loaded.model, batch)
    assert sums.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("fp16")


def test_missing_pad_token_falls_back_to_eos(tmp_path, policy):
    target = policy.save(tmp_path / "nopad")
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["pad_token"]
    config_path.write_text(json.dumps(config))
    loaded = Policy.load(target, device="cpu")
    assert loaded.tokenizer.pad_token_id == loaded.tokenizer.eos_token_id
    batch = loaded.encode(["the cat", "hello"], ["sat on the mat", "world"], max_length=32)
    assert batch.input_ids[1, -1] == loaded.tokenizer.eos_token_id
    assert batch.attention_mask[1, -1] == 0


def test_tokenizer_without_eos_or_pad_is_an_input_error(tmp_path, policy):
    target = policy.save(tmp_path / "noeos")
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["pad_token"], config["eos_token"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="no eos token"):
        Policy.load(target, device="cpu")


def test_bad_paths_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist") as missing:
        Policy.load(tmp_path / "missing")
    assert missing.value.file == str(tmp_path / "missing")
    with pytest.raises(InputError, match=r"no config\.json"):
        Policy.load(tmp_path)
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(InputError, match=r"no config\.json"):
        Policy.load(file)


def test_unreachable_hub_id_is_an_input_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="cannot load a causal LM") as error:
        Policy.load("no-such-org/no-such-model", device="cpu")
    assert error.value.file == "no-such-org/no-such-model"


def test_remote_code_is_not_run_unless_trusted(tmp_path, checkpoint):
    import shutil

    target = tmp_path / "remote"
    shutil.copytree(checkpoint, target)
    marker = tmp_path / "remote-code-ran"
    (target / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaForCausalLM as CustomForCausalLM\n"
    )
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (target / "config.json").write_text(json.dumps(config))
    loaded = Policy.load(target, device="cpu")
    assert not marker.exists()
    assert type(loaded.model).__name__ == "LlamaForCausalLM"


def test_render_prompt_and_response(policy):
    assert policy.render_prompt("as is") == "as is"
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
    assert policy.render_prompt(messages) == "<s>system: be kind\nuser: hi\nassistant:"
    assert policy.render_response("as is") == "as is"
    two = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert policy.render_response(two) == "a\nb"
    with pytest.raises(ValueError, match="role"):
        policy.render_prompt([{"content": "no role"}])
    with pytest.raises(ValueError, match="non-empty list"):
        policy.render_response([])


def test_prompt_without_chat_template_must_be_a_string(tmp_path, policy):
    target = policy.save(tmp_path / "notemplate")
    (target / "chat_template.jinja").unlink()
    loaded = Policy.load(target, device="cpu")
    with pytest.raises(ValueError, match="no chat template"):
        loaded.render_prompt([{"role": "user", "content": "hi"}])


def test_auto_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
