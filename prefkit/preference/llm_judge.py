"""A causal language model as a pairwise judge (LLM-as-a-judge).

The judge is shown the prompt and two responses, asked which is better, and its preference is read
from the next-token distribution over the two answer labels: ``P(first) = softmax(l_A, l_B)_A``.
Judges prefer one position (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot
Arena", arXiv 2306.05685, Sec. 3.3; AlpacaFarm, Dubois et al. 2023, arXiv 2305.14387, randomises
the order for the same reason), so every pair is asked in both orders and the answers averaged:
``P(a beats b) = (P_A(a, b) + 1 - P_A(b, a)) / 2``, which makes ``P(a, b) + P(b, a) = 1`` exact.

Any local Hugging Face causal LM works (``LLMJudge.load(dir)``); prompts given as message lists
are rendered as text inside the judge's own instruction, which goes through the judge's chat
template when it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from prefkit.data.records import Text
from prefkit.policy.sampling import last_logits, left_pad

DEFAULT_TEMPLATE = (
    "Which response answers the instruction better?\n\n"
    "Instruction: {prompt}\n\n"
    "Response {first_label}: {first}\n\n"
    "Response {second_label}: {second}\n\n"
    "Answer with {first_label} or {second_label}.\nAnswer:"
)


def as_text(value: Text) -> str:
    """A string as is; a message list as ``role: content`` lines."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


class LLMJudge:
    """``prob(prompts, a, b)``: a causal LM's position-debiased preference between two responses.

    Args:
        policy: a ``prefkit.policy.Policy`` (model and tokenizer) used read-only.
        template: a ``str.format`` template with ``{prompt}``, ``{first}``, ``{second}``,
            ``{first_label}`` and ``{second_label}``; the label must be the next token after it.
        labels: the two answer labels; each must start with a token of its own (with and without a
            leading space; both spellings are summed), and the two must differ in that token.
        batch_size: judge prompts per forward pass (each pair costs two).
    """

    kind = "llm"

    def __init__(self, policy, *, template: str = DEFAULT_TEMPLATE, labels: tuple[str, str] = ("A", "B"),
                 batch_size: int = 8, name: str | None = None) -> None:
        for key in ("{prompt}", "{first}", "{second}"):
            if key not in template:
                raise ValueError(f"the judge template must contain {key}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.policy = policy
        self.template = template
        self.labels = labels
        self.batch_size = batch_size
        self.name = name or "llm judge"
        self.label_ids = [self._label_token_ids(label) for label in labels]
        if set(self.label_ids[0]) & set(self.label_ids[1]):
            raise ValueError(f"the judge labels {labels!r} share a first token; choose labels that differ in it")

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", trust_remote_code: bool = False, **kwargs) -> LLMJudge:
        from prefkit.policy import Policy

        policy = Policy.load(path, device=device, trust_remote_code=trust_remote_code)
        policy.model.eval()
        return cls(policy, name=f"llm:{path}", **kwargs)

    def _label_token_ids(self, label: str) -> list[int]:
        tokenizer = self.policy.tokenizer
        ids = []
        for spelling in (label, " " + label):
            encoded = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if encoded and encoded[0] != tokenizer.unk_token_id:
                ids.append(int(encoded[0]))
        if not ids:
            raise ValueError(f"the judge label {label!r} is not in the judge's vocabulary")
        return sorted(set(ids))

    def _judge_text(self, prompt: Text, first: Text, second: Text) -> str:
        instruction = self.template.format(prompt=as_text(prompt), first=as_text(first), second=as_text(second),
                                           first_label=self.labels[0], second_label=self.labels[1])
        if getattr(self.policy.tokenizer, "chat_template", None):
            return self.policy.render_prompt([{"role": "user", "content": instruction}])
        return instruction

    @torch.no_grad()
    def first_label_prob(self, prompts: Sequence[Text], first: Sequence[Text], second: Sequence[Text]) -> torch.Tensor:
        """``P(label A | judge text)`` against label B, for the responses in the order given; ``[N]``."""
        texts = [self._judge_text(p, x, y) for p, x, y in zip(prompts, first, second)]
        out = []
        for start in range(0, len(texts), self.batch_size):
            out.append(self._label_probs(texts[start:start + self.batch_size]))
        return torch.cat(out) if out else torch.zeros(0)

    def _label_probs(self, texts: list[str]) -> torch.Tensor:
        rows = self.policy.prompt_ids(texts)
        limit = getattr(self.policy.model.config, "max_position_embeddings", None)
        longest = max(len(r) for r in rows)
        if limit is not None and longest > limit:
            raise ValueError(f"a judge prompt has {longest} tokens, more than the judge model's {limit} positions; "
                             "shorten the responses or the template")
        ids, mask = left_pad(rows, self.policy.tokenizer.pad_token_id or 0)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        device = next(self.policy.model.parameters()).device
        last, _ = last_logits(self.policy.model, ids.to(device), mask.to(device), positions.to(device), None, False)
        log_probs = torch.log_softmax(last, dim=-1)
        scores = torch.stack([torch.logsumexp(log_probs[:, label], dim=-1) for label in self.label_ids], dim=-1)
        return torch.softmax(scores, dim=-1)[:, 0].cpu()

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor:
        """``P(a beats b | prompt)``, averaged over both presentation orders; ``[N]`` float32."""
        if not (len(prompts) == len(a) == len(b)):
            raise ValueError(f"prob needs equal lengths, got {len(prompts)}, {len(a)}, {len(b)}")
        a_first = self.first_label_prob(prompts, a, b)
        b_first = self.first_label_prob(prompts, b, a)
        return (0.5 * (a_first + 1.0 - b_first)).float()
