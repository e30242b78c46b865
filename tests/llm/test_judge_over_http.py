"""The LLM judge on the OpenAI-compatible backend: the same preference as on the local model,
and a text-answering endpoint whose unreadable answers are counted, never used as votes."""

from __future__ import annotations

import pytest
import torch

from prefkit.llm import MalformedResponseError
from prefkit.llm.openai_compat import OpenAIBackend
from prefkit.preference.llm_judge import LLMJudge

PROMPTS = ["the sky is", "the sea is"]
A = ["blue", "green sea"]
B = ["red red", "blue"]


class TextOnly(OpenAIBackend):
    supports_logprobs = False


def test_the_endpoint_judge_equals_the_local_judge(server, hf_backend, faults):
    remote = LLMJudge(OpenAIBackend("tiny", base_url=server.base_url, retry_delay=0.0))
    local = LLMJudge(hf_backend)
    assert remote.labels == local.labels == ("A", "B")
    torch.testing.assert_close(remote.prob(PROMPTS, A, B), local.prob(PROMPTS, A, B), atol=1e-5, rtol=0)
    torch.testing.assert_close(remote.prob(PROMPTS, A, B) + remote.prob(PROMPTS, B, A), torch.ones(2),
                               atol=1e-6, rtol=0)


def test_a_text_judge_reads_the_first_label_and_refuses_unreadable_answers(server, faults):
    judge = LLMJudge(TextOnly("tiny", base_url=server.base_url, retry_delay=0.0), labels=("A", "B"))
    faults.extend([{"content": "A, clearly"}, {"content": "Answer: B"}])  # a first: A wins; b first: B wins
    assert judge.prob(PROMPTS[:1], A[:1], B[:1]).tolist() == [1.0]
    faults.extend([{"content": "I cannot say"}])
    with pytest.raises(MalformedResponseError, match="names neither"):
        judge.prob(PROMPTS[:1], A[:1], B[:1])
    assert judge.backend.counters.malformed == 1
