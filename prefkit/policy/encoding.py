"""Token batches for teacher-forced log-probs: ``[bos] + prompt + response + [eos]`` per row.

Rows are right padded to the longest row of the batch (dynamic padding). Pairs are stacked
chosen rows first, then rejected rows, so one forward computes both. ``EncodedBatch.pack()``
turns a padded batch into one padding-free row with per-sequence position ids (used with
flash-attention kernels; see docs/policy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch

from prefkit.errors import InputError

Truncation = Literal["truncate", "error"]


class SequenceTooLongError(InputError):
    """A row is longer than ``max_length`` and truncation is ``"error"``.

    ``row`` is the row's index in the call (for pairs, the pair's index), so the caller can name
    the file and line it came from.
    """

    def __init__(self, message: str, *, row: int, tokens: int, max_length: int) -> None:
        super().__init__(message, field="max_length")
        self.row, self.tokens, self.max_length = row, tokens, max_length


@dataclass(frozen=True)
class EncodedBatch:
    """Token ids and masks for N sequences (``N = len(prompt_lengths)``).

    - ``input_ids``, ``response_mask`` (bool, true at response tokens, ``eos`` included),
      ``row_ids`` (the sequence each position belongs to, ``-1`` at padding): ``[B, T]``.
      For a padded batch ``B = N``; for a packed batch ``B = 1``.
    - ``attention_mask``: ``[B, T]`` (1 at real tokens) for a padded batch, ``None`` when packed.
    - ``position_ids``: ``None`` for a padded batch (positions ``0..T-1``), ``[1, T]`` when packed.
    - ``prompt_lengths``, ``response_lengths`` (after truncation; ``bos`` counts in the prompt,
      ``eos`` in the response), ``truncated``: ``[N]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    response_mask: torch.Tensor
    row_ids: torch.Tensor
    prompt_lengths: torch.Tensor
    response_lengths: torch.Tensor
    truncated: torch.Tensor
    position_ids: torch.Tensor | None = None

    @property
    def num_rows(self) -> int:
        return int(self.prompt_lengths.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per sequence, ``[N]``."""
        return self.prompt_lengths + self.response_lengths

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    @property
    def num_tokens(self) -> int:
        """Non-padding tokens, the unit of the engine's tokens/s."""
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> EncodedBatch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device, non_blocking=True) if value is not None else None
        return EncodedBatch(**moved)

    def select(self, rows: Sequence[int] | torch.Tensor) -> EncodedBatch:
        """The given rows of a padded batch, re-padded to their own longest row."""
        if self.packed:
            raise ValueError("select() needs a padded batch, not a packed one")
        index = torch.as_tensor(rows, dtype=torch.long, device=self.input_ids.device)
        width = int(self.lengths[index].max()) if len(index) else 0
        return EncodedBatch(
            input_ids=self.input_ids[index, :width],
            attention_mask=self.attention_mask[index, :width],
            response_mask=self.response_mask[index, :width],
            row_ids=_row_ids(self.attention_mask[index, :width]),
            prompt_lengths=self.prompt_lengths[index],
            response_lengths=self.response_lengths[index],
            truncated=self.truncated[index],
        )

    def pack(self) -> EncodedBatch:
        """One padding-free row: sequences concatenated, position ids restarting at each.

        Hugging Face models read the sequence boundaries from the position ids when
        ``attention_mask`` is ``None`` (varlen kernels under flash-attention, a block-diagonal
        mask under sdpa/eager), so no token attends across sequences.
        """
        if self.packed:
            return self
        real = self.attention_mask.bool()
        positions = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)
        return replace(
            self,
            input_ids=self.input_ids[real].unsqueeze(0),
            attention_mask=None,
            response_mask=self.response_mask[real].unsqueeze(0),
            row_ids=self.row_ids[real].unsqueeze(0),
            position_ids=positions.expand_as(self.input_ids)[real].unsqueeze(0),
        )


def count_tokens(batch: EncodedBatch) -> int:
    """Non-padding tokens through the forward (chosen and rejected rows both count)."""
    return batch.num_tokens


def _row_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
    return torch.where(attention_mask.bool(), rows[:, None], -1)


def _budget(prompt: int, response: int, max_length: int, max_prompt_length: int) -> tuple[int, int]:
    """Tokens kept of the prompt and of the response when the row must fit ``max_length``.

    The prompt is shortened first, but never below ``max_prompt_length`` and only as much as
    needed; the response then keeps its start.
    """
    if prompt + response <= max_length:
        return prompt, response
    keep_prompt = min(prompt, max(max_prompt_length, max_length - response))
    return keep_prompt, min(response, max_length - keep_prompt)


KeepFirst = bool | AbstractSet[int]
"""Whether a truncated prompt keeps its first token: always, never, or when it is one of a set of ids."""


def first_token_rule(tokenizer: Any) -> frozenset[int]:
    """The ids whose presence as a prompt's first token makes truncation keep it: the
    tokenizer's special tokens (a bos, which TRL's sequences carry only where the tokenizer or
    the chat template writes one)."""
    return frozenset(int(i) for i in tokenizer.all_special_ids)


def _keeps_first(rule: KeepFirst, first: int) -> bool:
    return rule if isinstance(rule, bool) else first in rule


def build_batch(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    max_length: int,
    max_prompt_length: int | None = None,
    truncation: Truncation = "truncate",
    prompt_of_row: Sequence[int] | None = None,
    keep_first_prompt_token: KeepFirst = True,
    row_names: Sequence[int] | None = None,
) -> EncodedBatch:
    """Concatenate prompt and response ids per row into a right-padded batch.

    ``prompt_ids`` already start with ``bos`` and ``response_ids`` already end with ``eos``
    where the caller wants them. ``prompt_of_row[i]`` is the index into ``prompt_ids`` of row
    i (default: row i uses prompt i); rows sharing a prompt share its truncation, sized for the
    longest of their responses, so chosen and rejected see the same context. Truncation keeps
    the end of the prompt (and its first token, the ``bos``) and the start of the response.
    ``row_names[i]`` is the index that an error reports for row i. ``keep_first_prompt_token``
    may be a set of ids (the tokenizer's special tokens, :func:`first_token_rule`): a truncated
    prompt keeps its first token when it is one of them (a bos the tokenizer or template wrote).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if max_prompt_length is None:
        max_prompt_length = max_length // 2
    if not 1 <= max_prompt_length < max_length:
        raise ValueError(
            f"max_prompt_length must be in [1, max_length), got {max_prompt_length} "
            f"with max_length={max_length}"
        )
    if truncation not in ("truncate", "error"):
        raise ValueError(f"truncation must be 'truncate' or 'error', got {truncation!r}")
    if prompt_of_row is None:
        if len(prompt_ids) != len(response_ids):
            raise ValueError(
                f"{len(prompt_ids)} prompts but {len(response_ids)} responses; they must match"
            )
        prompt_of_row = range(len(response_ids))
    if row_names is None:
        row_names = range(len(response_ids))

    longest_response = [0] * len(prompt_ids)
    for row, prompt in enumerate(prompt_of_row):
        longest_response[prompt] = max(longest_response[prompt], len(response_ids[row]))
    prompt_keep = []
    for prompt, ids in enumerate(prompt_ids):
        if not ids:
            raise ValueError(
                f"prompt {prompt} encodes to no tokens (an empty prompt with a tokenizer "
                "that has no bos token); the first response token would have no context"
            )
        prompt_keep.append(
            _budget(len(ids), longest_response[prompt], max_length, max_prompt_length)[0]
        )

    rows: list[list[int]] = []
    prompt_lengths, response_lengths, truncated = [], [], []
    for row, (prompt, response) in enumerate(zip(prompt_of_row, response_ids)):
        full_prompt = prompt_ids[prompt]
        total = len(full_prompt) + len(response)
        if total > max_length and truncation == "error":
            raise SequenceTooLongError(
                f"row {row_names[row]}: {total} tokens (prompt {len(full_prompt)}, response "
                f"{len(response)}) exceed max_length={max_length}",
                row=row_names[row],
                tokens=total,
                max_length=max_length,
            )
        keep_prompt = prompt_keep[prompt]
        keep_response = min(len(response), max_length - keep_prompt)
        if keep_prompt == len(full_prompt):
            kept_prompt = list(full_prompt)
        elif _keeps_first(keep_first_prompt_token, full_prompt[0]):
            kept_prompt = [full_prompt[0], *full_prompt[len(full_prompt) - keep_prompt + 1 :]]
        else:
            kept_prompt = list(full_prompt[len(full_prompt) - keep_prompt :])
        rows.append(kept_prompt + list(response[:keep_response]))
        prompt_lengths.append(keep_prompt)
        response_lengths.append(keep_response)
        truncated.append(keep_prompt < len(full_prompt) or keep_response < len(response))

    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        response_mask[i, prompt_lengths[i] : len(ids)] = True
    return EncodedBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        row_ids=_row_ids(attention_mask),
        prompt_lengths=torch.tensor(prompt_lengths, dtype=torch.long),
        response_lengths=torch.tensor(response_lengths, dtype=torch.long),
        truncated=torch.tensor(truncated, dtype=torch.bool),
    )
