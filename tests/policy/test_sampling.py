import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefkit.policy import Policy
from prefkit.policy.sampling import choose_tokens
from prefkit.policy.tokenizer import fit_word_tokenizer

from .conftest import TEXTS, TINY

PROMPTS = ["the cat", "hello world , how are you today ?", [{"role": "user", "content": "one"}]]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sharp() -> Policy:
    """A tiny policy with a scaled-up head, so distributions are peaked and eos gets sampled."""
    policy = Policy.tiny(TEXTS, TINY, seed=1)
    with torch.no_grad():
        policy.model.lm_head.weight.mul_(40.0)
    return policy


@pytest.fixture(scope="module")
def absolute() -> Policy:
    """GPT-2 (learned absolute positions): wrong position ids under left padding change its
    outputs, which rotary (relative) Llama positions would hide."""
    tokenizer = fit_word_tokenizer(TEXTS, 64)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
        model.transformer.wpe.weight.mul_(20.0)
    return Policy(model, tokenizer)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def peaked(request, sharp, absolute) -> Policy:
    return {"llama": sharp, "gpt2": absolute}[request.param]


@pytest.fixture(scope="module")
def reference() -> Policy:
    return Policy.tiny(TEXTS, TINY, seed=2)


def manual_greedy(policy, prompt, steps):
    """Greedy decoding by a full forward over the unpadded prefix at every step."""
    ids = policy.prompt_ids([prompt])[0]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = policy.model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] == policy.tokenizer.eos_token_id:
                break
    return out


def test_zero_temperature_is_greedy_and_matches_an_uncached_unpadded_decode(peaked):
    samples = peaked.sample(PROMPTS, 2, max_new_tokens=10, temperature=0.0)
    for i, prompt in enumerate(PROMPTS):
        expected = manual_greedy(peaked, prompt, 10)
        assert samples.token_ids[i] == [expected, expected]


def test_temperature_to_zero_and_tiny_top_p_are_greedy(sharp):
    greedy = sharp.sample(PROMPTS, 2, max_new_tokens=10, temperature=0.0)
    cold = sharp.sample(PROMPTS, 2, max_new_tokens=10, temperature=1e-6, generator=gen())
    nucleus = sharp.sample(PROMPTS, 2, max_new_tokens=10, top_p=1e-9, generator=gen())
    assert cold.token_ids == greedy.token_ids
    assert nucleus.token_ids == greedy.token_ids


def test_returned_logps_equal_teacher_forced_logprob(peaked):
    """Checks the KV cache, left padding and position ids against a right-padded forward."""
    sharp = peaked
    samples = sharp.sample(PROMPTS, 4, max_new_tokens=8, generator=gen(3))
    assert samples.finished.any() and not samples.finished.all()
    rescored = sharp.logprob_ids(samples.flat_prompt_ids, samples.flat_token_ids)
    torch.testing.assert_close(rescored, samples.logps.flatten(), rtol=0, atol=1e-4)
    # Text responses re-tokenize exactly (word-level tokenizer) and gain the eos, so finished
    # rows score the same from their text.
    finished = samples.finished.flatten()
    prompts = [p for p in PROMPTS for _ in range(4)]
    from_text = sharp.logprob(prompts, samples.flat_texts)
    torch.testing.assert_close(
        from_text[finished], samples.logps.flatten()[finished], rtol=0, atol=1e-4
    )
    assert samples.lengths.flatten().tolist() == [len(ids) for ids in samples.flat_token_ids]
    for ids, done in zip(samples.flat_token_ids, finished.tolist()):
        assert (ids[-1] == sharp.tokenizer.eos_token_id) == done
        assert sharp.tokenizer.eos_token_id not in ids[:-1]


def test_text_round_trip_of_sampled_ids(sharp):
    samples = sharp.sample(PROMPTS, 4, max_new_tokens=8, generator=gen(5))
    for text, ids, done in zip(
        samples.flat_texts, samples.flat_token_ids, samples.finished.flatten().tolist()
    ):
        expected = ids[:-1] if done else ids
        assert sharp.tokenizer(text, add_special_tokens=False)["input_ids"] == expected


def test_kv_cache_gives_the_same_draw_as_recomputing_the_prefix(peaked):
    policy = peaked
    cached = policy.sample(PROMPTS, 3, max_new_tokens=6, top_p=0.9, generator=gen(7))
    uncached = policy.sample(
        PROMPTS, 3, max_new_tokens=6, top_p=0.9, generator=gen(7), use_cache=False
    )
    assert cached.token_ids == uncached.token_ids
    torch.testing.assert_close(cached.logps, uncached.logps, rtol=0, atol=1e-5)


def test_seeded_generator_is_deterministic(policy):
    first = policy.sample(PROMPTS, 3, max_new_tokens=6, temperature=0.7, generator=gen(11))
    second = policy.sample(PROMPTS, 3, max_new_tokens=6, temperature=0.7, generator=gen(11))
    other = policy.sample(PROMPTS, 3, max_new_tokens=6, temperature=0.7, generator=gen(12))
    assert first.texts == second.texts
    assert first.token_ids != other.token_ids
    assert len(first.texts) == 3 and all(len(row) == 3 for row in first.texts)
    assert first.logps.shape == first.lengths.shape == first.finished.shape == (3, 3)


def test_mixture_coefficient_zero_is_plain_sampling(sharp, reference):
    plain = sharp.sample(PROMPTS, 3, max_new_tokens=8, generator=gen(13))
    mixed = sharp.sample(PROMPTS, 3, max_new_tokens=8, generator=gen(13), mixture=(reference, 0.0))
    assert mixed.token_ids == plain.token_ids
    torch.testing.assert_close(mixed.logps, plain.logps, rtol=0, atol=0)


def test_mixture_coefficient_one_samples_the_reference_but_scores_the_policy(sharp, reference):
    from_reference = reference.sample(PROMPTS, 3, max_new_tokens=8, generator=gen(17))
    mixed = sharp.sample(
        PROMPTS, 3, max_new_tokens=8, generator=gen(17), mixture=(reference.model, 1.0)
    )
    assert mixed.token_ids == from_reference.token_ids
    rescored = sharp.logprob_ids(mixed.flat_prompt_ids, mixed.flat_token_ids)
    torch.testing.assert_close(mixed.logps.flatten(), rescored, rtol=0, atol=1e-4)


def test_greedy_mixture_picks_the_argmax_of_the_mixed_logits(sharp, reference):
    ids = sharp.prompt_ids(PROMPTS)
    mixed = sharp.sample(PROMPTS, 1, max_new_tokens=1, temperature=0.0, mixture=(reference, 0.3))
    with torch.no_grad():
        for i, prompt_ids in enumerate(ids):
            x = torch.tensor([prompt_ids])
            logits = sharp.model(input_ids=x).logits[0, -1]
            ref_logits = reference.model(input_ids=x).logits[0, -1]
            assert mixed.token_ids[i][0] == [int((0.7 * logits + 0.3 * ref_logits).argmax())]


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.25, 0.15]])).expand(4000, 4)
    drawn = choose_tokens(logits, temperature=1.0, top_p=0.7, generator=gen())
    # 0.5 + 0.25 = 0.75 >= 0.7: only tokens 1 and 2, renormalised to 2/3 and 1/3.
    assert set(drawn.tolist()) == {1, 2}
    assert abs((drawn == 1).float().mean().item() - 2 / 3) < 0.03


def test_draws_follow_the_distribution_and_never_pick_zero_probability_tokens():
    probs = torch.tensor([0.1, 0.5, 0.0, 0.25, 0.15, 0.0])
    logits = probs.log().expand(20000, 6)
    drawn = choose_tokens(logits, temperature=1.0, top_p=1.0, generator=gen(1))
    frequencies = torch.bincount(drawn, minlength=6).float() / len(drawn)
    assert frequencies[2] == 0 and frequencies[5] == 0
    # Binomial standard errors are at most 0.0036 here; allow about 4 of them.
    torch.testing.assert_close(frequencies, probs, rtol=0, atol=0.015)


def test_bad_sampling_arguments_are_rejected(policy):
    with pytest.raises(ValueError, match="top_p"):
        policy.sample(["a"], 1, max_new_tokens=2, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        policy.sample(["a"], 1, max_new_tokens=2, temperature=-1.0)
    with pytest.raises(ValueError, match="n must be positive"):
        policy.sample(["a"], 0, max_new_tokens=2)
    with pytest.raises(ValueError, match="mixture coefficient"):
        policy.sample(["a"], 1, max_new_tokens=2, mixture=(policy, 1.5))
    with pytest.raises(ValueError, match="max_prompt_length"):
        policy.sample(["a"], 1, max_new_tokens=TINY.max_position_embeddings)


def test_max_prompt_length_keeps_bos_and_the_prompt_end(policy):
    samples = policy.sample(["one two three four five"], 1, max_new_tokens=1, max_prompt_length=3)
    expected = policy.prompt_ids(["four five"])[0]
    assert samples.prompt_ids == [expected]
