"""The LLM backends: the local HF backend, the OpenAI-compatible client against a local server
(same answers as the local model), the request cache, counters, and every failure mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from prefkit.llm import (
    ChatRequest,
    CompletionRequest,
    EndpointError,
    LLMConfig,
    MalformedResponseError,
    RequestCache,
    make_backend,
)
from prefkit.llm.openai_compat import OpenAIBackend
from tests.llm.conftest import free_port

SKY = ({"role": "user", "content": "the sky is"},)


def client(server, **kwargs) -> OpenAIBackend:
    kwargs = {"retry_delay": 0.0, "max_retries": 2, "timeout": 10.0, **kwargs}
    return OpenAIBackend("tiny", base_url=server.base_url, **kwargs)


# -- the local backend --------------------------------------------------------------------------


def test_hf_chat_gives_n_samples_reproducible_by_seed_and_greedy_at_temperature_zero(hf_backend):
    one = hf_backend.chat([ChatRequest(messages=SKY, n=3, max_tokens=4, seed=1)])[0]
    again = hf_backend.chat([ChatRequest(messages=SKY, n=3, max_tokens=4, seed=1)])[0]
    assert len(one.texts) == 3 and one.texts == again.texts
    assert one.prompt_tokens > 0 and 0 < one.completion_tokens <= 12
    greedy = hf_backend.chat([ChatRequest(messages=SKY, n=2, max_tokens=4, temperature=0.0, seed=s) for s in (1, 2)])
    assert greedy[0].texts[0] == greedy[0].texts[1] == greedy[1].texts[0]


def test_hf_stop_strings_cut_the_text(hf_backend):
    full = hf_backend.complete([CompletionRequest(prompt="the sky is", max_tokens=6, temperature=0.0)])[0].texts[0]
    word = full.split()[1]
    cut = hf_backend.complete([CompletionRequest(prompt="the sky is", max_tokens=6, temperature=0.0,
                                                 stop=(word,))])[0]
    assert cut.texts[0] == full[: full.find(word)] and cut.finish_reasons == ["stop"]


def test_hf_choice_logprobs_are_the_next_token_log_softmax(hf_backend):
    scores = hf_backend.choice_logprobs([list(SKY)], ["A", "B"])
    policy = hf_backend.policy
    ids = torch.tensor([policy.prompt_ids([hf_backend.render(list(SKY))])[0]])
    with torch.no_grad():
        log_probs = torch.log_softmax(policy.model(input_ids=ids).logits[0, -1].float(), dim=-1)
    expected = [float(torch.logsumexp(log_probs[hf_backend.choice_token_ids(c)], 0)) for c in ("A", "B")]
    np.testing.assert_allclose(scores[0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        hf_backend.choice_logprobs([list(SKY)], ["A", "zebra"])


def test_bad_requests_are_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        ChatRequest(messages=())
    with pytest.raises(ValueError, match="n must be"):
        ChatRequest(messages=SKY, n=0)
    with pytest.raises(ValueError, match="temperature"):
        ChatRequest(messages=SKY, temperature=-1)
    with pytest.raises(ValueError, match="role"):
        ChatRequest(messages=({"content": "x"},))


# -- the OpenAI-compatible client against the local server -------------------------------------


def test_the_endpoint_answers_exactly_as_the_local_model(server, hf_backend, faults):
    remote = client(server)
    request = ChatRequest(messages=SKY, n=2, max_tokens=4, seed=3)
    assert remote.chat([request])[0].texts == hf_backend.chat([request])[0].texts
    completion = CompletionRequest(prompt="the sky is", max_tokens=3, seed=3)
    assert remote.complete([completion])[0].texts == hf_backend.complete([completion])[0].texts
    np.testing.assert_allclose(remote.choice_logprobs([list(SKY)], ["A", "B"]),
                               hf_backend.choice_logprobs([list(SKY)], ["A", "B"]), atol=1e-5)
    counters = remote.counters
    assert counters.requests == 3 and counters.retries == 0 and counters.prompt_tokens > 0
    assert counters.seconds > 0 and remote.summary()["mean_latency_s"] > 0


def test_concurrent_requests_keep_their_order(server, faults):
    requests = [ChatRequest(messages=({"role": "user", "content": f"the sky is {w}"},), max_tokens=3, seed=i)
                for i, w in enumerate(["blue", "red", "green", "sea", "blue", "red"])]
    sequential = client(server, concurrency=1).chat(requests)
    parallel = client(server, concurrency=3).chat(requests)
    assert [r.texts for r in parallel] == [r.texts for r in sequential]


def test_costs_are_counted_from_the_token_prices(server, faults):
    remote = client(server, price_prompt=2.0, price_completion=10.0)
    result = remote.chat([ChatRequest(messages=SKY, max_tokens=2)])[0]
    expected = (result.prompt_tokens * 2.0 + result.completion_tokens * 10.0) / 1e6
    assert remote.counters.cost == pytest.approx(expected) and expected > 0


def test_the_cache_is_keyed_by_the_full_request_and_survives_corruption(server, faults, tmp_path):
    cache = RequestCache(tmp_path / "cache")
    remote = client(server, cache=cache)
    request = ChatRequest(messages=SKY, n=2, max_tokens=3, seed=5)
    first = remote.chat([request])[0]
    seen = server.seen
    again = remote.chat([request])[0]
    assert again.cached and again.texts == first.texts and server.seen == seen
    assert remote.counters.cache_hits == 1 and remote.counters.requests == 1
    for changed in (ChatRequest(messages=SKY, n=2, max_tokens=3, seed=6),
                    ChatRequest(messages=SKY, n=2, max_tokens=3, seed=5, temperature=0.5),
                    ChatRequest(messages=SKY, n=1, max_tokens=3, seed=5)):
        assert not remote.chat([changed])[0].cached
    assert server.seen == seen + 3
    path = cache.path(remote._full_key(request.key()))
    entry = json.loads(path.read_text())  # plain JSON, with the request beside the answer
    assert entry["request"]["messages"] == [dict(m) for m in SKY] and entry["response"]["texts"] == first.texts
    path.write_text("{ not json")
    assert not remote.chat([request])[0].cached  # a corrupt entry is a miss, then rewritten
    assert remote.chat([request])[0].cached
    other = client(server, cache=cache)
    other.model = "other"
    other.identity = {**other.identity, "model": "other"}
    assert other._cache_get(request.key()) is None  # another model never reads this model's answers


def test_an_unreachable_endpoint_is_a_clear_error_after_the_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"
    remote = OpenAIBackend("tiny", base_url=url, retry_delay=0.0, max_retries=2, timeout=2.0)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1.*3 attempt\(s\) \(2 retries\).*cannot connect"):
        remote.chat([ChatRequest(messages=SKY, max_tokens=2)])
    assert remote.counters.retries == 2 and remote.counters.failures == 1 and remote.counters.requests == 0


def test_a_timeout_is_retried_then_a_clear_error(server, faults):
    server.slow_seconds = 1.0
    faults.extend(["slow", "slow"])
    remote = client(server, timeout=0.3, max_retries=1)
    with pytest.raises(EndpointError, match=r"2 attempt\(s\) \(1 retries\).*0\.3 s timeout"):
        remote.chat([ChatRequest(messages=SKY, max_tokens=2)])
    assert remote.counters.retries == 1


def test_a_rate_limit_is_retried_and_then_succeeds(server, faults):
    faults.extend(["429", "429"])
    remote = client(server, max_retries=3)
    assert len(remote.chat([ChatRequest(messages=SKY, max_tokens=2)])[0].texts) == 1
    assert remote.counters.retries == 2 and remote.counters.failures == 0


def test_a_persistent_rate_limit_names_the_endpoint_and_the_count(server, faults):
    faults.extend(["429"] * 5)
    slept = []
    remote = client(server, max_retries=2, retry_delay=0.5, sleep=slept.append)
    with pytest.raises(EndpointError) as info:
        remote.chat([ChatRequest(messages=SKY, max_tokens=2)])
    message = str(info.value)
    assert server.base_url in message and "HTTP 429" in message and "3 attempt(s) (2 retries)" in message
    assert slept == [0.5, 1.0]  # exponential back-off
    assert remote.counters.failures == 1


def test_client_errors_are_not_retried(server, faults):
    remote = OpenAIBackend("not-served", base_url=server.base_url, retry_delay=0.0, max_retries=3)
    with pytest.raises(EndpointError, match=r"HTTP 404.*not served"):
        remote.chat([ChatRequest(messages=SKY, max_tokens=2)])
    assert remote.counters.retries == 0


@pytest.mark.parametrize("fault, match", [("malformed", "no choices"), ("garbage", "not a valid completion")])
def test_a_malformed_answer_is_counted_never_cached_never_used(server, faults, tmp_path, fault, match):
    faults.append(fault)
    remote = client(server, cache=RequestCache(tmp_path / "c"))
    request = ChatRequest(messages=SKY, max_tokens=2)
    with pytest.raises(MalformedResponseError, match=match):
        remote.chat([request])
    assert remote.counters.malformed == 1 and len(remote.cache) == 0
    assert not remote.chat([request])[0].cached  # the rerun asks again


def test_missing_logprobs_are_malformed(server, faults):
    faults.append("no_logprobs")
    remote = client(server)
    with pytest.raises(MalformedResponseError, match="no log-probs"):
        remote.choice_logprobs([list(SKY)], ["A", "B"])
    assert remote.counters.malformed == 1


def test_fewer_choices_than_asked_is_malformed_unless_split(server, faults):
    faults.append({"content": "A"})
    with pytest.raises(MalformedResponseError, match="n=2"):
        client(server).chat([ChatRequest(messages=SKY, n=2, max_tokens=2)])
    faults.extend([{"content": "A"}, {"content": "B"}])
    assert client(server, split_n=True).chat([ChatRequest(messages=SKY, n=2, max_tokens=2)])[0].texts == ["A", "B"]


# -- configuration -------------------------------------------------------------------------------


def test_settings_come_from_the_environment_then_overrides():
    env = {"PREFKIT_LLM_BASE_URL": "http://127.0.0.1:9/v1", "PREFKIT_LLM_MODEL": "m", "PREFKIT_LLM_TIMEOUT": "5",
           "PREFKIT_LLM_MAX_RETRIES": "7", "PREFKIT_LLM_SPLIT_N": "1", "PREFKIT_LLM_CACHE": ""}
    cfg = LLMConfig.from_env(env, concurrency=2)
    assert (cfg.base_url, cfg.model, cfg.timeout, cfg.max_retries, cfg.split_n, cfg.concurrency) == (
        "http://127.0.0.1:9/v1", "m", 5.0, 7, True, 2)
    assert cfg.cache_dir() is not None  # an empty variable is unset; cache="" turns the cache off
    assert LLMConfig(cache="").cache_dir() is None
    with pytest.raises(ValueError, match="PREFKIT_LLM_TIMEOUT"):
        LLMConfig.from_env({"PREFKIT_LLM_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="timeout"):
        LLMConfig(timeout=0)
    with pytest.raises(ValueError, match="names no model"):
        make_backend("openai", LLMConfig(model=""))


def test_make_backend_builds_both_kinds(server, tiny_model_dir, tmp_path):
    cfg = LLMConfig(base_url=server.base_url, cache=str(tmp_path / "c"), max_retries=0)
    remote = make_backend("openai:tiny", cfg)
    assert isinstance(remote, OpenAIBackend) and remote.cache is not None
    local = make_backend(f"hf:{tiny_model_dir}", LLMConfig(cache="", device="cpu"))
    assert local.identity["fingerprint"] and local.cache is None


def test_prefkit_llm_serve_serves_a_model_directory(tiny_model_dir):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prefkit", "llm", "serve", "--model", str(tiny_model_dir),
                             "--port", str(port), "--name", "tiny", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in line
        remote = OpenAIBackend("tiny", base_url=f"http://127.0.0.1:{port}/v1", retry_delay=0.0)
        assert len(remote.chat([ChatRequest(messages=SKY, n=2, max_tokens=2)])[0].texts) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
