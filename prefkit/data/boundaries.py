"""Word boundaries in text, for working on a long text in pieces: a cut between two characters
where every tokenizer in use starts a new token (``prefkit.policy.bounded``), and where the tiny
preset's word-level pre-tokenizer (``\\w+|[^\\w\\s]+``) provably does.

A boundary is after a non-space character followed by ASCII whitespace, or between an ASCII
letter/digit and ASCII punctuation; only ASCII classes are used, on which Python's and the
tokenizers' (Rust) regex engines agree.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator

MIN_SPAN = 4096
"""Characters searched first when looking for a boundary backwards (the span then doubles)."""

_SPACE = r"[ \t\n\r\f\v]"
_ALNUM = r"[A-Za-z0-9]"
_PUNCT = r"[!-/:-@\[-^`{-~]"
"""ASCII punctuation: printable, neither a letter, a digit, ``_`` (a word character) nor a space."""
_BOUNDARY = re.compile(rf"[^ \t\n\r\f\v](?={_SPACE})|{_ALNUM}(?={_PUNCT})|{_PUNCT}(?={_ALNUM})")
"""The character before a word boundary (the cut goes after it)."""
_SPACE_BOUNDARY = re.compile(rf"[^ \t\n\r\f\v](?={_SPACE})")


def cut_after(text: str, pos: int) -> int | None:
    """The first word boundary at or after ``pos`` (``None``: none before the end)."""
    match = _BOUNDARY.search(text, max(0, pos - 1))
    return None if match is None else match.start() + 1


def cut_before(text: str, pos: int) -> int | None:
    """The last word boundary at or before ``pos`` (``None``: none after the start); searched
    in segments growing from ``pos`` leftwards, so the work is bounded by the distance."""
    if pos <= 0:
        return None
    span = MIN_SPAN
    while True:
        start = max(0, pos - span)
        last = deque(_BOUNDARY.finditer(text, start, min(pos + 1, len(text))), maxlen=1)
        if last:
            return last[0].start() + 1
        if start == 0:
            return None
        span *= 2


def chunks(text: str, size: int = 1 << 20, *, spaces_only: bool = False) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, cut at word boundaries (a piece may be
    longer when a word is); for the tiny tokenizer's pre-tokenizer the pieces of the chunks are
    exactly the pieces of the whole text. ``spaces_only`` cuts only before ASCII whitespace, so
    that no ``str.split()`` word is cut either."""
    start = 0
    while len(text) - start > size:
        if spaces_only:
            match = _SPACE_BOUNDARY.search(text, start + size - 1)
            cut = None if match is None else match.start() + 1
        else:
            cut = cut_after(text, start + size)
        if cut is None:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]
