"""The one length rule shared by ``prefkit validate`` and training: when a row is over
``max_length``, which field is named and what the message says.

A row's sequences are its prompt followed by each response. Counts are passed in with the
special tokens already shared out: the prompt's count includes its ``bos``, each response's its
``eos``, so ``prompt + response`` is the sequence length. The row is over when one of its
sequences is; the field named is ``prompt`` when the prompt alone leaves no room for a response
token (``prompt >= max_length``), else the first response (in the row's order) whose sequence is
over. The rule needs no exact count past ``max_length``, so training, which tokenizes at most
``max_length + 1`` tokens of a text, names the same field as ``prefkit validate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ADVICE = (
    "train.truncation=error; raise train.max_length (validate: --max-length), or set "
    "train.truncation=truncate to keep the prompt's end and the response's start"
)


@dataclass(frozen=True)
class LengthProblem:
    """An over-long row: the field to name and the reason (the caller adds file and line)."""

    field: str
    reason: str


def over_length(
    prompt: int,
    responses: Sequence[tuple[str, int]],
    max_length: int,
    *,
    lower_bound: bool = False,
    sequence: str | None = None,
) -> LengthProblem | None:
    """The problem with a row whose longest ``prompt + response`` exceeds ``max_length``, or None.

    Args:
        prompt: the prompt's tokens (with its bos).
        responses: ``(field, tokens)`` per response (each with its eos), in the row's order;
            for a prompt-only row, ``[]`` (the prompt is then the whole sequence).
        lower_bound: the counts were capped (bounded tokenization), so the message says
            "at least".
        sequence: what the sequence is, for the message (default ``"prompt + FIELD"``).
    """
    over = [(name, n) for name, n in responses if prompt + n > max_length]
    if (responses and not over) or (not responses and prompt <= max_length):
        return None
    name, response = over[0] if over else ("prompt", 0)
    total = prompt + response
    at_least = "at least " if lower_bound else ""
    if not responses:
        reason = f"the prompt is {at_least}{prompt} tokens, over max_length {max_length}"
        return LengthProblem("prompt", f"{reason} ({ADVICE})")
    if prompt >= max_length:
        reason = (f"the prompt alone is {at_least}{prompt} tokens, leaving no room for {name} "
                  f"within max_length {max_length}")
        return LengthProblem("prompt", f"{reason} ({ADVICE})")
    reason = f"{sequence or f'prompt + {name}'} is {at_least}{total} tokens, over max_length {max_length}"
    return LengthProblem(name, f"{reason} ({ADVICE})")
