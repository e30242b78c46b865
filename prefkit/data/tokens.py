"""Counting tokens for length checks, without loading a model.

A sequence is a prompt followed by one response. Its length is
``count(prompt) + count(response) + special_tokens``. Conversational text is counted on the
plain rendering ``"role: content"`` lines joined by newlines; a chat template adds a few
tokens more per message, so lengths of conversational rows are a slight under-estimate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.data.boundaries import chunks
from prefkit.data.records import Text
from prefkit.errors import InputError

_ASCII_PIECES = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_ \t\n\v\f\r]+")
"""The Rust ``\\w+|[^\\w\\s]+`` on ASCII text (Python's ``\\s`` would also match ``\x1c``-``\x1f``)."""


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of a piece of text (no special tokens) and the specials per sequence."""

    count: Callable[[str], int]
    special_tokens: int
    name: str

    def sequence_length(self, prompt: Text, response: Text) -> int:
        return self.count(render_plain(prompt)) + self.count(render_plain(response)) + self.special_tokens


def render_plain(text: Text) -> str:
    """A string as is; a conversation as ``"role: content"`` lines joined by newlines."""
    if isinstance(text, str):
        return text
    return "\n".join(f"{m['role']}: {m['content']}" for m in text)


def whitespace_counter() -> TokenCounter:
    """The built-in tiny tokenizer's count: the ``tokenizers`` Whitespace pre-tokenizer
    (regex ``\\w+|[^\\w\\s]+``), one token per piece, plus bos and eos."""
    from tokenizers.pre_tokenizers import Whitespace

    pre = Whitespace()

    def count_chunk(text: str) -> int:
        if text.isascii():  # same pieces as the Rust regex on ASCII, several times faster
            return len(_ASCII_PIECES.findall(text))
        return len(pre.pre_tokenize_str(text))

    def count(text: str) -> int:  # a long text in ~1 MB chunks cut between words: bounded memory
        return sum(count_chunk(chunk) for chunk in chunks(text))

    return TokenCounter(count=count, special_tokens=2, name="whitespace (built-in tiny tokenizer)")


def hf_counter(path: str | Path) -> TokenCounter:
    """A Hugging Face tokenizer from a local directory (``trust_remote_code=False``).

    Special tokens per sequence: those the tokenizer adds to one sequence, plus an eos
    appended to the response (as TRL's trainers do) when the tokenizer has one and does not
    already add it.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise InputError("tokenizer must be a local directory (tokenizer.json or vocab files)", file=str(path))
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a tokenizer: {err}", file=str(path)) from err
    return tokenizer_counter(tokenizer, name=str(path))


def tokenizer_counter(tokenizer: Any, name: str | None = None) -> TokenCounter:
    """A counter from a loaded Hugging Face tokenizer (e.g. a policy's), special tokens as in
    :func:`hf_counter`."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    with_specials = tokenizer("x", add_special_tokens=True)["input_ids"]
    specials = len(with_specials) - count("x")
    eos = tokenizer.eos_token_id
    if eos is not None and (not with_specials or with_specials[-1] != eos):
        specials += 1
    return TokenCounter(count=count, special_tokens=specials, name=name or type(tokenizer).__name__)


def as_counter(count_tokens: TokenCounter | Callable[[str], int] | None) -> TokenCounter:
    """``None`` -> the built-in whitespace count; a bare callable ``text -> tokens`` is used
    as is, with no special tokens added per sequence."""
    if count_tokens is None:
        return whitespace_counter()
    if isinstance(count_tokens, TokenCounter):
        return count_tokens
    return TokenCounter(count=count_tokens, special_tokens=0, name=getattr(count_tokens, "__name__", "custom"))
