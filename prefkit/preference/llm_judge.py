"""A language model as a pairwise judge (LLM-as-a-judge), on any ``prefkit.llm`` backend.

The judge is shown the prompt and two responses, asked which is better, and its preference is read
from the next-token distribution over the two answer labels: ``P(first) = softmax(l_A, l_B)_A``
(``backend.choice_logprobs``). Judges prefer one position (Zheng et al. 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685, Sec. 3.3; AlpacaFarm, Dubois
et al. 2023, arXiv 2305.14387, randomises the order for the same reason), so every pair is asked
in both orders and the answers averaged: ``P(a beats b) = (P_A(a, b) + 1 - P_A(b, a)) / 2``, which
makes ``P(a, b) + P(b, a) = 1`` exact.

Backends: a local Hugging Face causal LM (``LLMJudge.load(DIR)``, or a ``Policy``) or an
OpenAI-compatible endpoint (``LLMJudge.from_spec("openai:MODEL")``, docs/llm.md). A backend
without log-probs is asked for a short greedy answer instead; an answer naming neither label is
malformed: counted (``backend.counters.malformed``) and an error, never read as a vote.

Labels (``labels=``, ``online.judge_labels``): by default ``A``/``B``; on a local model whose
tokenizer cannot tell them apart (not in the vocabulary, or the same first token) the first pair
of :data:`LABEL_CANDIDATES` it can tell apart is chosen (``judge.labels`` says which). Labels given
explicitly are used as given or refused with a clear error. The prompt is
:data:`DEFAULT_TEMPLATE` (``template=``, ``online.judge_template``), a ``str.format`` template
with ``{prompt}``, ``{first}``, ``{second}``, ``{first_label}`` and ``{second_label}``, sent as one
user message (through the model's chat template when it has one).

A judge trained by prefkit (``prefkit train --method genrm``) carries ``prefkit_judge.json``
(:data:`JUDGE_FILE`) and loads as a :class:`GenerativeJudge`, which may write a rationale before
its answer (``prefkit.preference.generative`` builds its training data). Which judge an
``llm:``/``rubric:`` spec names is ``prefkit.preference.judge_specs.language_judge``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.data.records import Text
from prefkit.llm.base import Backend, ChatRequest, MalformedResponseError, Messages
from prefkit.llm.hf import HFBackend

DEFAULT_TEMPLATE = (
    "Which response answers the instruction better?\n\n"
    "Instruction: {prompt}\n\n"
    "Response {first_label}: {first}\n\n"
    "Response {second_label}: {second}\n\n"
    "Answer with {first_label} or {second_label}.\nAnswer:"
)
TEMPLATE_FIELDS = ("{prompt}", "{first}", "{second}")
DEFAULT_LABELS = ("A", "B")
LABEL_CANDIDATES: tuple[tuple[str, str], ...] = (("A", "B"), ("1", "2"), ("a", "b"), ("first", "second"),
                                                 ("one", "two"), ("Yes", "No"), ("yes", "no"))
"""Tried in order when the labels are not given and the tokenizer cannot tell ``A``/``B`` apart."""
JUDGE_FILE = "prefkit_judge.json"
"""Written beside a trained generative judge's weights: its template, labels and rationale mode."""
ANSWER_MARKER = "Final answer"
"""Between a rationale and the label (plain words: every tokenizer keeps them as they are)."""
RATIONALE_TOKENS = 192
"""Tokens a judge may write for its rationale before the answer marker."""


def as_text(value: Text) -> str:
    """A string as is; a message list as ``role: content`` lines."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


def parse_labels(text: str) -> tuple[str, str]:
    """``"1,2"`` -> ``("1", "2")``: two distinct non-empty labels, or ``ValueError``."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"judge labels must be two different non-empty labels separated by a comma "
                         f"(e.g. 'A,B', '1,2'), got {text!r}")
    return parts[0], parts[1]


def read_template(path: str | Path, *, extra: tuple[str, ...] = ()) -> str:
    """A judge template from a UTF-8 text file, checked for its fields."""
    from prefkit.errors import InputError

    try:
        template = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read the judge template: {err.strerror or err}", file=str(path)) from None
    check_template(template, where=str(path), extra=extra)
    return template


def check_template(template: str, *, where: str = "the judge template", extra: tuple[str, ...] = ()) -> None:
    """``template`` has ``{prompt}``, ``{first}``, ``{second}`` (and each ``{name}`` of ``extra``)
    and formats with exactly those fields and the two labels."""
    for key in (*TEMPLATE_FIELDS, *(f"{{{e}}}" for e in extra)):
        if key not in template:
            raise ValueError(f"{where} must contain {key}")
    try:
        template.format(prompt="", first="", second="", first_label="A", second_label="B", **dict.fromkeys(extra, ""))
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"{where} is not a valid str.format template ({err!r}); write literal braces as "
                         "{{ and }}") from None


class LLMJudge:
    """``prob(prompts, a, b)``: a language model's position-debiased preference between two responses.

    Args:
        backend: a ``prefkit.llm`` backend, or a ``prefkit.policy.Policy`` (wrapped in an
            ``HFBackend``, read-only).
        template: the judge prompt (see the module doc).
        labels: the two answer labels; ``None`` chooses them (see the module doc).
        batch_size: judge prompts per forward pass of a local model (each pair costs two).
        name: shown in messages.
    """

    kind = "llm"

    template_fields: tuple[str, ...] = ()
    """Fields a subclass's template has beyond the standard ones (a rubric judge's ``{rubric}``)."""

    def __init__(self, backend: Any, *, template: str = DEFAULT_TEMPLATE, labels: tuple[str, str] | None = None,
                 batch_size: int = 8, name: str | None = None) -> None:
        check_template(template, extra=self.template_fields)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not isinstance(backend, Backend):
            backend = HFBackend(backend, batch_size=batch_size)
        self.backend = backend
        self.template = template
        self.name = name or getattr(backend, "name", None) or "llm judge"
        self.labels_chosen_automatically = labels is None
        self.labels = self._choose_labels() if labels is None else self._check_labels(tuple(labels))

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", trust_remote_code: bool = False,
             batch_size: int = 8, **kwargs: Any) -> LLMJudge:
        """A local Hugging Face causal LM directory as a judge. A judge trained by prefkit
        (``prefkit train --method genrm``: its ``policy/`` or the run directory) carries
        ``prefkit_judge.json`` and loads as the :class:`GenerativeJudge`
        it was trained to be (its template, labels and rationale mode; ``kwargs`` override them)."""
        root = Path(path)
        if not (root / JUDGE_FILE).is_file() and (root / "policy" / JUDGE_FILE).is_file():
            root = root / "policy"
        if cls is LLMJudge and (root / JUDGE_FILE).is_file():
            return GenerativeJudge.from_directory(root, device=device, trust_remote_code=trust_remote_code,
                                                  batch_size=batch_size, **kwargs)
        backend = HFBackend.load(path, device=device, trust_remote_code=trust_remote_code, batch_size=batch_size)
        return cls(backend, name=f"llm:{path}", batch_size=batch_size, **kwargs)

    @classmethod
    def from_spec(cls, spec: str, *, device: str = "auto", trust_remote_code: bool = False, **kwargs: Any) -> LLMJudge:
        """``hf:DIR`` / ``DIR`` (a local model) or ``openai:MODEL`` (an endpoint, docs/llm.md)."""
        from prefkit.llm.config import LLMConfig, make_backend

        if not (spec.startswith("openai") and (spec == "openai" or spec.startswith("openai:"))):
            path = spec[len("hf:"):] if spec.startswith("hf:") else spec
            return cls.load(path, device=device, trust_remote_code=trust_remote_code, **kwargs)
        backend = make_backend(spec, LLMConfig.from_env(device=device), trust_remote_code=trust_remote_code)
        return cls(backend, name=f"llm:{spec}", **kwargs)

    # -- labels ----------------------------------------------------------------------------------

    @property
    def policy(self) -> Any:
        """The local model's ``Policy`` (local backends only)."""
        if not isinstance(self.backend, HFBackend):
            raise AttributeError("this judge runs on an endpoint, not a local policy")
        return self.backend.policy

    @property
    def label_ids(self) -> list[list[int]]:
        """The token ids each label starts with (local backends only)."""
        if not isinstance(self.backend, HFBackend):
            raise AttributeError("label token ids are known only for a local model")
        return [self.backend.choice_token_ids(label) for label in self.labels]

    def _label_problem(self, labels: tuple[str, str]) -> str | None:
        """Why a local tokenizer cannot tell ``labels`` apart (``None`` when it can)."""
        if not isinstance(self.backend, HFBackend):
            return None
        ids = []
        for label in labels:
            try:
                ids.append(self.backend.choice_token_ids(label))
            except ValueError:
                return f"the judge label {label!r} is not in the judge's vocabulary"
        first, second = ids
        if set(first) & set(second):
            return f"the judge labels {labels!r} share a first token; choose labels that differ in it"
        return None

    def _check_labels(self, labels: tuple[str, ...]) -> tuple[str, str]:
        if len(labels) != 2 or not all(isinstance(x, str) and x.strip() for x in labels) or labels[0] == labels[1]:
            if len(labels) == 2 and labels[0] == labels[1] and isinstance(self.backend, HFBackend):
                raise ValueError(f"the judge labels {labels!r} share a first token; choose labels that differ in it")
            raise ValueError(f"the judge needs two different non-empty labels, got {labels!r}")
        problem = self._label_problem((labels[0], labels[1]))
        if problem:
            raise ValueError(problem)
        return labels[0], labels[1]

    def _choose_labels(self) -> tuple[str, str]:
        problems = []
        for candidate in LABEL_CANDIDATES:
            problem = self._label_problem(candidate)
            if problem is None:
                return candidate
            problems.append(f"{candidate[0]}/{candidate[1]}")
        raise ValueError(f"no label pair of {', '.join(problems)} has two distinct first tokens in the judge's "
                         "vocabulary; give labels that do (labels=..., online.judge_labels=X,Y)")

    # -- asking ----------------------------------------------------------------------------------

    def messages(self, prompt: Text, first: Text, second: Text) -> Messages:
        """The judge prompt for one ordered pair, as one user message."""
        instruction = self.template.format(prompt=as_text(prompt), first=as_text(first), second=as_text(second),
                                           first_label=self.labels[0], second_label=self.labels[1])
        return [{"role": "user", "content": instruction}]

    def first_label_prob(self, prompts: Sequence[Text], first: Sequence[Text], second: Sequence[Text]) -> torch.Tensor:
        """``P(first label | judge prompt)`` against the second label, in the order given; ``[N]``."""
        asks = [self.messages(p, x, y) for p, x, y in zip(prompts, first, second)]
        if not asks:
            return torch.zeros(0)
        if self.backend.supports_logprobs:
            scores = self.backend.choice_logprobs(asks, list(self.labels))
            both = np.logaddexp(scores[:, 0], scores[:, 1])
            return torch.from_numpy(np.exp(scores[:, 0] - both)).float()
        return self._from_text(asks)

    def _from_text(self, asks: list[Messages]) -> torch.Tensor:
        """Greedy short answers read as votes: the first label mentioned (a word of its own)."""
        results = self.backend.chat([ChatRequest(messages=tuple(m), n=1, temperature=0.0, max_tokens=8)
                                     for m in asks])
        out = []
        for i, result in enumerate(results):
            label = first_label_in(result.texts[0], self.labels)
            if label is None:
                self.backend.counters.add(malformed=1)
                raise MalformedResponseError(f"judge {self.name!r}: answer {result.texts[0]!r} (row {i}) names neither "
                                             f"{self.labels[0]!r} nor {self.labels[1]!r}; not used as a vote")
            out.append(1.0 if label == 0 else 0.0)
        return torch.tensor(out, dtype=torch.float32)

    def prob(self, prompts: Sequence[Text], a: Sequence[Text], b: Sequence[Text]) -> torch.Tensor:
        """``P(a beats b | prompt)``, averaged over both presentation orders; ``[N]`` float32."""
        if not (len(prompts) == len(a) == len(b)):
            raise ValueError(f"prob needs equal lengths, got {len(prompts)}, {len(a)}, {len(b)}")
        a_first = self.first_label_prob(prompts, a, b)
        b_first = self.first_label_prob(prompts, b, a)
        return (0.5 * (a_first + 1.0 - b_first)).float()


def read_judge_file(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A trained judge's settings (``None`` when the directory has none)."""
    path = Path(directory) / JUDGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the judge settings: {err}") from None
    labels = data.get("labels")
    if data.get("format") != "prefkit.judge" or data.get("version") != 1 or not isinstance(data.get("template"), str) \
            or not (isinstance(labels, list) and len(labels) == 2 and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"{path}: not a prefkit judge settings file (version 1 with template and two labels)")
    check_template(data["template"], where=str(path))
    return {"template": data["template"], "labels": (labels[0], labels[1]), "rationale": bool(data.get("rationale"))}


class GenerativeJudge(LLMJudge):
    """An :class:`LLMJudge` that may write a rationale before its answer (see the module doc)."""

    kind = "genrm"

    def __init__(self, backend: Any, *, rationale: bool = False, rationale_tokens: int = RATIONALE_TOKENS,
                 **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.rationale = rationale
        self.rationale_tokens = rationale_tokens
        if rationale and not hasattr(self.backend, "next_token_logprobs"):
            raise ValueError("a judge with a rationale reads its answer after the rationale it wrote, which needs a "
                             "local model (hf:DIR / llm:DIR), not an endpoint")
        self.last_rationales: list[str] = []

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], *, device: str = "auto", trust_remote_code: bool = False,
                       batch_size: int = 8, **overrides: Any) -> GenerativeJudge:
        """A trained judge directory (``prefkit train --method genrm``'s ``policy/``)."""
        settings = read_judge_file(path)
        if settings is None:
            raise ValueError(f"{path} has no {JUDGE_FILE}: not a judge trained by prefkit (use LLMJudge.load)")
        backend = HFBackend.load(path, device=device, trust_remote_code=trust_remote_code, batch_size=batch_size)
        kwargs = {"template": settings["template"], "labels": settings["labels"], **overrides}
        return cls(backend, rationale=settings["rationale"], name=f"llm:{path}", batch_size=batch_size, **kwargs)

    def first_label_prob(self, prompts: Sequence[Text], first: Sequence[Text], second: Sequence[Text]) -> torch.Tensor:
        if not self.rationale:
            return super().first_label_prob(prompts, first, second)
        asks = [self.messages(p, x, y) for p, x, y in zip(prompts, first, second)]
        if not asks:
            return torch.zeros(0)
        results = self.backend.chat([ChatRequest(messages=tuple(m), n=1, temperature=0.0,
                                                 max_tokens=self.rationale_tokens, stop=(ANSWER_MARKER,)) for m in asks])
        rationales = [r.texts[0].strip() for r in results]
        self.last_rationales = rationales
        texts = [f"{self.backend.render(m)} {why} {ANSWER_MARKER}".replace("  ", " ") for m, why in zip(asks, rationales)]
        log_probs = self.backend.next_token_logprobs(texts)
        ids = [self.backend.choice_token_ids(label) for label in self.labels]
        scores = torch.stack([torch.logsumexp(log_probs[:, i], dim=-1) for i in ids], dim=-1).double()
        return torch.softmax(scores, dim=-1)[:, 0].float()


def first_label_in(text: str, labels: Sequence[str]) -> int | None:
    """Index of the label that appears first in ``text`` as a whole word (``None``: neither)."""
    import re

    best: tuple[int, int] | None = None
    for k, label in enumerate(labels):
        match = re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), k)
    return None if best is None else best[1]
