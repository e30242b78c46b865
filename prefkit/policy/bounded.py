"""Tokenizing only what truncation can keep: the first ``n`` tokens of a long response, the last
``n`` of a long prompt, with work and memory bounded by ``n`` rather than by the text.

A 50 MB row would otherwise be tokenized whole (gigabytes of ids, offsets and token strings)
only for all but ``max_length`` of its tokens to be dropped. Here a long text is tokenized in a
window cut at a *word boundary*: a non-space character followed by ASCII whitespace, or an
ASCII letter/digit next to ASCII punctuation. Every pre-tokenizer in use (whitespace and
punctuation splitting, byte-level BPE's regex, WordPiece's, SentencePiece's metaspace) starts a
new token there, and each piece is tokenized on its own, so the window's tokens away from the
cut are those of the whole text; for the tiny preset's word-level tokenizer this holds exactly
(its pieces are ``\\w+|[^\\w\\s]+``). Two safeguards keep the result exact for any tokenizer:

- the window must hold ``SAFETY`` tokens more than asked for (a tokenizer may treat the last
  piece before a cut differently, e.g. strip it);
- the answer is computed from two windows of different sizes and must agree; if the two ever
  disagree, the whole text is tokenized instead (exact, unbounded) and a warning says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from prefkit.data.boundaries import MIN_SPAN, cut_after, cut_before

SAFETY = 16
"""Tokens a window must hold beyond those asked for."""
CHARS_PER_TOKEN = 8
"""First guess of characters per token when sizing a window (it doubles while too small)."""
MIN_WINDOW = MIN_SPAN
"""Smallest window, in characters."""

Encode = Callable[[str], list[int]]


def window_chars(n: int) -> int:
    """The first window's size in characters for ``n`` tokens."""
    return max(MIN_WINDOW, CHARS_PER_TOKEN * (n + SAFETY))


def is_long(text: str, n: int) -> bool:
    """Whether a text is long enough for windowed tokenization to save anything."""
    return len(text) > 2 * window_chars(n)


def head_ids(encode: Encode, text: str, n: int) -> list[int]:
    """``encode(text)[:n]``, tokenizing a window of ``text`` only (see the module doc)."""
    if n <= 0:
        return []
    width = window_chars(n)
    while is_long(text, n) and width < len(text):
        cut = cut_after(text, width)
        if cut is None or cut >= len(text):
            break
        ids = encode(text[:cut])
        if len(ids) < n + SAFETY:
            width = 2 * cut
            continue
        check = cut_after(text, 2 * cut)
        other = encode(text if check is None else text[:check])
        if ids[:n] == other[:n]:
            return ids[:n]
        _disagree()
        break
    return encode(text)[:n]


def tail_ids(encode: Encode, text: str, n: int) -> list[int]:
    """``encode(text)[-n:]``, tokenizing a window of ``text`` only (see the module doc)."""
    if n <= 0:
        return []
    width = window_chars(n)
    while is_long(text, n) and width < len(text):
        cut = cut_before(text, len(text) - width)
        if cut is None or cut <= 0:
            break
        ids = encode(text[cut:])
        if len(ids) < n + SAFETY:
            width = 2 * (len(text) - cut)
            continue
        check = cut_before(text, cut - (len(text) - cut))
        other = encode(text if check is None else text[check:])
        if ids[-n:] == other[-n:]:
            return ids[-n:]
        _disagree()
        break
    return encode(text)[-n:]


_warned = False


def _disagree() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "this tokenizer's tokens depend on text far past a word boundary; long rows are "
            "tokenized whole (exact, but memory grows with the row)",
            RuntimeWarning,
            stacklevel=3,
        )
