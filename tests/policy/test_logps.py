import pytest
import torch
from torch import nn

from prefkit.policy import check_fast_path, sequence_logps, token_logps
from prefkit.policy.logps import _FULL_FORWARD_MODELS, _LinearTargetLogProb

PROMPTS = ["the cat", "hello world ,", "one"]
RESPONSES = ["sat on the mat .", "how are you", "two three four five six seven"]


def naive_logps(model, batch):
    """Textbook computation: full logits everywhere, log_softmax, gather, mask."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logps = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    per_token = logps.gather(2, batch.input_ids[:, 1:, None]).squeeze(2)
    return (per_token * batch.response_mask[:, 1:]).sum(1)


@torch.no_grad()
def prefix_by_prefix_logps(model, batch):
    """Each response token scored by a separate forward over its own unpadded prefix."""
    out = []
    for row in range(batch.num_rows):
        ids = batch.input_ids[row, : int(batch.lengths[row])]
        start = int(batch.prompt_lengths[row])
        total = 0.0
        for t in range(start, len(ids)):
            logits = model(input_ids=ids[None, :t]).logits[0, -1].double()
            total += float(torch.log_softmax(logits, -1)[ids[t]])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [1, 3, 1000, "auto", None])
def test_chunked_equals_naive_in_float64(policy64, chunk_size):
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        sums, counts = sequence_logps(policy64.model, batch, chunk_size=chunk_size)
        expected = naive_logps(policy64.model, batch)
    assert sums.dtype == torch.float64  # float32 for float32 and bf16 models
    torch.testing.assert_close(sums, expected, rtol=0, atol=1e-10)
    assert counts.tolist() == batch.response_lengths.tolist() == [6, 4, 7]


def test_only_response_tokens_count_and_padding_does_not_matter(policy64):
    """Equals scoring each response token from its own unpadded prefix: prompt tokens are
    never targets, and a row is unaffected by longer rows padded next to it."""
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        sums, _ = sequence_logps(policy64.model, batch, chunk_size=4)
        alone = torch.cat(
            [sequence_logps(policy64.model, batch.select([i]))[0] for i in range(batch.num_rows)]
        )
    expected = prefix_by_prefix_logps(policy64.model, batch)
    torch.testing.assert_close(sums.double(), expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(alone, sums, rtol=0, atol=1e-9)


def test_float32_padding_invariance(policy):
    batch = policy.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        together, _ = sequence_logps(policy.model, batch)
        shortest_alone, _ = sequence_logps(policy.model, batch.select([0]))
    torch.testing.assert_close(shortest_alone[0], together[0], rtol=0, atol=1e-5)


def test_packed_batch_gives_the_same_logps(policy64):
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        padded, _ = sequence_logps(policy64.model, batch)
        packed, counts = sequence_logps(policy64.model, batch.pack())
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-9)
    assert counts.tolist() == batch.response_lengths.tolist()


def test_token_logps_are_aligned_with_input_ids_and_sum_to_sequence_logps(policy64):
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        per_token = token_logps(policy64.model, batch, chunk_size=2)
        sums, _ = sequence_logps(policy64.model, batch)
        logits = policy64.model(input_ids=batch.input_ids).logits.double()
    assert per_token.shape == batch.input_ids.shape
    assert (per_token[~batch.response_mask] == 0).all()
    torch.testing.assert_close(per_token.sum(1), sums, rtol=0, atol=1e-9)
    # Row 0, first response token (position 3) is predicted at position 2.
    expected = torch.log_softmax(logits[0, 2], -1)[batch.input_ids[0, 3]]
    torch.testing.assert_close(per_token[0, 3].double(), expected, rtol=0, atol=1e-6)


def _parameter_grads(model, batch, weights, chunk_size):
    model.zero_grad(set_to_none=True)
    sums, _ = sequence_logps(model, batch, chunk_size=chunk_size)
    (sums.double() * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradients_of_chunked_path_equal_full_logits_path(policy64):
    batch = policy64.encode_pairs(PROMPTS, RESPONSES, RESPONSES[::-1], max_length=64)
    weights = torch.linspace(-1.0, 2.0, batch.num_rows, dtype=torch.float64)
    naive = _parameter_grads(policy64.model, batch, weights, chunk_size=None)
    chunked = _parameter_grads(policy64.model, batch, weights, chunk_size=5)
    assert naive.keys() == chunked.keys()
    for name, grad in naive.items():
        torch.testing.assert_close(chunked[name], grad, rtol=1e-9, atol=1e-12, msg=name)
    assert naive["lm_head.weight"].abs().sum() > 0


def test_fused_head_gradcheck():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 11, (7,), generator=generator)
    function = lambda h, w, b: _LinearTargetLogProb.apply(h, w, b, targets, 3)  # noqa: E731
    assert torch.autograd.gradcheck(function, (hidden, weight, bias))
    expected = torch.log_softmax(hidden @ weight.T + bias, -1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(function(hidden, weight, bias), expected)


class ScaledHead(nn.Module):
    """A head that is not a plain nn.Linear: exercises the checkpointed generic path."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, hidden):
        return self.linear(hidden)


def test_non_linear_head_uses_checkpointed_chunks_with_same_values_and_grads(policy64):
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    reference = _parameter_grads(policy64.model, batch, weights, chunk_size=None)
    original = policy64.model.lm_head
    policy64.model.lm_head = ScaledHead(original)
    try:
        generic = _parameter_grads(policy64.model, batch, weights, chunk_size=4)
    finally:
        policy64.model.lm_head = original
    torch.testing.assert_close(
        generic["lm_head.linear.weight"], reference["lm_head.weight"], rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(
        generic["model.embed_tokens.weight"],
        reference["model.embed_tokens.weight"],
        rtol=1e-9,
        atol=1e-12,
    )


def test_bf16_autocast_stays_close_to_fp32_and_keeps_fp32_weight_grads(policy):
    batch = policy.encode(PROMPTS, RESPONSES, max_length=64)
    with torch.no_grad():
        exact, _ = sequence_logps(policy.model, batch)
    policy.model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx, _ = sequence_logps(policy.model, batch)
    approx.sum().backward()
    assert approx.dtype == exact.dtype == torch.float32
    torch.testing.assert_close(approx.detach(), exact, rtol=0.02, atol=0.1)
    assert policy.model.lm_head.weight.grad.dtype == torch.float32
    assert torch.isfinite(policy.model.lm_head.weight.grad).all()
    policy.model.zero_grad(set_to_none=True)


def test_models_with_transformed_logits_fall_back_to_the_full_forward():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=0.5,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).double()
    with pytest.warns(UserWarning, match="full forward"):
        assert not check_fast_path(model)
    assert model in _FULL_FORWARD_MODELS
    from prefkit.policy.encoding import build_batch

    batch = build_batch([[2, 5, 6], [2, 7]], [[8, 9, 1], [10, 1]], pad_id=0, max_length=16)
    with torch.no_grad():
        sums, _ = sequence_logps(model, batch)
    torch.testing.assert_close(sums.double(), naive_logps(model, batch), rtol=0, atol=1e-5)


def test_llama_keeps_the_fast_path(policy):
    assert check_fast_path(policy.model)
    assert policy.model not in _FULL_FORWARD_MODELS


def test_wrapped_model_goes_through_the_wrapper_and_gives_the_same_logps(policy64):
    batch = policy64.encode(PROMPTS, RESPONSES, max_length=64)
    calls = []
    wrapper = nn.DataParallel(policy64.model)  # on CPU it simply calls the module
    handle = wrapper.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            wrapped, _ = sequence_logps(wrapper, batch, chunk_size=2)
            plain, _ = sequence_logps(policy64.model, batch, chunk_size=2)
    finally:
        handle.remove()
    assert calls == [1]
    torch.testing.assert_close(wrapped, plain, rtol=0, atol=0)


def test_tail_logps_and_wpo_weights_against_the_full_logits():
    from prefkit.config import TinyConfig
    from prefkit.policy import Policy, tail_logps, wpo_weight_logps

    policy = Policy.tiny(["a b c d e f g"], TinyConfig(hidden_size=16, layers=1, heads=2), seed=0)
    batch = policy.encode(["a b", "c"], ["c d e", "f"], max_length=16)
    sums, tails = tail_logps(policy.model, batch, torch.tensor([1, 1]))
    with torch.no_grad():
        logits = policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.double()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    mask = batch.response_mask[:, 1:]
    torch.testing.assert_close(sums.double(), (logp * mask).sum(1), rtol=1e-5, atol=1e-5)
    # past the first response token: row 0 has 3 tokens + eos, row 1 one token + eos
    position = mask.long().cumsum(1)
    torch.testing.assert_close(tails.double(), (logp * (mask & (position > 1))).sum(1), rtol=1e-5, atol=1e-5)
    log_sum_sq = torch.logsumexp(2 * torch.log_softmax(logits[:, :-1], -1), -1)
    expected = ((logp - log_sum_sq) * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(wpo_weight_logps(policy.model, batch).double(), expected, rtol=1e-5, atol=1e-5)
