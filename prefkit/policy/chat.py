"""Prompt and completion token ids the way TRL 1.16 builds them (``DPOTrainer._prepare_dataset``).

TRL's rules, which prefkit follows by default so the same data gives the same sequences:

- **Strings** (TRL's standard format): the completion gets the tokenizer's eos *text* appended
  unless it already ends with it; the prompt is ``tokenizer(prompt)`` with the tokenizer's own
  special tokens, so a bos appears exactly where the tokenizer itself adds one (Llama yes,
  GPT-2 no, even though GPT-2's bos equals its eos).
- **Conversations**: the prompt is the chat template rendered with the generation prompt; the
  completion is what the template writes for the full conversation after that, so the
  template's text after the assistant's end token (ChatML's ``"\\n"`` after ``<|im_end|>``)
  belongs to the completion, and no eos is added by hand.
- The completion starts where the tokenized prompt and the tokenized prompt + completion first
  differ (TRL's ``common_prefix_length``).

:func:`special_affixes` tells which special tokens a tokenizer adds around one sequence;
:func:`prompt_completion_ids` is the exact TRL rule for one prompt and its completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefkit.data.records import Text

NEUTRAL_PROMPT: list[dict[str, str]] = [{"role": "user", "content": ""}]
"""The conversation a completion is rendered after when its own prompt is not given."""


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """``(prefix, suffix)``: the ids ``tokenizer(text)`` adds before and after a single
    sequence's own tokens (for example ``[bos]`` and ``[]`` for Llama, ``[]`` and ``[]`` for
    GPT-2)."""
    probe = "a b"
    with_special = list(tokenizer(probe)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    prefix: list[int] = []
    suffix: list[int] = []
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            prefix, suffix = with_special[:start], with_special[start + len(plain) :]
            break
    return prefix, suffix


def common_prefix_length(ids: Sequence[int], other: Sequence[int]) -> int:
    """Number of leading ids the two sequences share."""
    length = 0
    for a, b in zip(ids, other):
        if a != b:
            break
        length += 1
    return length


def is_conversation(text: Text) -> bool:
    return isinstance(text, list)


def _template(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template, so conversations cannot be rendered; "
                         "give prompts and responses as plain strings")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def string_prompt_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """String prompts: their tokens after the tokenizer's own leading special tokens (TRL tokenizes
    the prompt with ``add_special_tokens=True``; trailing specials such as an appended eos are not
    part of the prompt, because TRL's prompt + completion has them only at its end). A text that
    already starts with those tokens (a prompt rendered by a chat template that writes the bos)
    does not get them twice; TRL would double them there."""
    prefix, _ = special_affixes(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [list(ids) if prefix and list(ids[: len(prefix)]) == prefix else [*prefix, *ids] for ids in encoded]


def string_completion_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """String completions: their tokens, then the eos unless the text already ends with the eos
    text (TRL appends ``tokenizer.eos_token`` to the text), then any special tokens the tokenizer
    appends after a sequence."""
    _, suffix = special_affixes(tokenizer)
    return [_completion(tokenizer, text, ids, suffix) for text, ids in
            zip(texts, tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else [])]


def _completion(tokenizer: Any, text: str, ids: list[int], suffix: list[int]) -> list[int]:
    eos = tokenizer.eos_token
    ids = list(ids)
    if eos is not None and not text.endswith(eos):
        ids.append(int(tokenizer.eos_token_id))
    return [*ids, *suffix]


def conversation_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat template with the generation prompt, tokenized without added special tokens."""
    return _template(tokenizer, messages, generation_prompt=True)


def conversation_completion_ids(tokenizer: Any, completion: list[dict[str, str]],
                                prompt: list[dict[str, str]] | None = None) -> list[int]:
    """What the template writes for ``prompt + completion`` after the rendered prompt (with its
    generation prompt), from their first differing token. Without ``prompt`` the completion is
    rendered after :data:`NEUTRAL_PROMPT`, which is exact for templates whose assistant turns do
    not depend on the earlier turns (ChatML, Llama-3, the tiny preset's)."""
    context = prompt if prompt is not None else NEUTRAL_PROMPT
    alone = _template(tokenizer, context, generation_prompt=True)
    full = _template(tokenizer, [*context, *completion], generation_prompt=False)
    return full[common_prefix_length(alone, full):]


def prompt_completion_ids(tokenizer: Any, prompt: Text, completions: Sequence[Text]) -> tuple[list[int], list[list[int]]]:
    """TRL 1.16's rule for one prompt and its completions (``DPOTrainer``: chosen and rejected;
    ``KTOTrainer``: one completion): the tokenized prompt cut at the shortest common prefix with
    every tokenized prompt + completion, and each completion's remainder, so
    ``prompt_ids + completion_ids[i]`` is exactly TRL's tokenized prompt + completion i."""
    if is_conversation(prompt):
        alone = _template(tokenizer, prompt, generation_prompt=True)  # type: ignore[arg-type]
        fulls = [_template(tokenizer, [*prompt, *c], generation_prompt=False) for c in completions]  # type: ignore[misc]
    else:
        eos = tokenizer.eos_token or ""
        alone = list(tokenizer(prompt)["input_ids"])
        fulls = [list(tokenizer(prompt + c + ("" if c.endswith(eos) else eos))["input_ids"])  # type: ignore[operator]
                 for c in completions]
    cut = min((common_prefix_length(alone, full) for full in fulls), default=len(alone))
    return alone[:cut], [full[cut:] for full in fulls]
