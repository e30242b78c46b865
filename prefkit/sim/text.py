"""Reading responses as arrays: word ids, opener style, body word classes and repeats.

Every string is readable: it is split on whitespace; a first word that is an opener gives the
style and is not part of the body; body words outside the response lexicon (unknown words,
prompt words, openers) are of class ``other``. All worlds share these word ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefkit.sim import lexicon as lx

WORDS: list[str] = lx.vocabulary()
WORD_ID: dict[str, int] = {w: i for i, w in enumerate(WORDS)}
V = len(WORDS)
"""Vocabulary size; unknown words get ids ``>= V``, which all read as id ``V`` (class other)."""
WORD_ARRAY = np.array([*WORDS, ""], dtype=object)

BODY_CLASS = np.full(V + 1, lx.OTHER, dtype=np.int64)
"""Class of each word id in a body; topic words read as off-topic until matched to the prompt."""
WORD_TOPIC = np.full(V + 1, -1, dtype=np.int64)
OPENER_STYLE = np.full(V + 1, lx.NO_STYLE, dtype=np.int64)
for _t, _topic in enumerate(lx.TOPICS):
    for _w in _topic.words:
        WORD_TOPIC[WORD_ID[_w]] = _t
        BODY_CLASS[WORD_ID[_w]] = lx.OFF_TOPIC
for _cls, _group in ((lx.QUALITY, lx.QUALITY_WORDS), (lx.FILLER, lx.FILLER_WORDS), (lx.BAD, lx.BAD_WORDS)):
    for _w in _group:
        BODY_CLASS[WORD_ID[_w]] = _cls
for _s, _style in enumerate(lx.STYLES):
    for _w in lx.OPENERS[_style]:
        OPENER_STYLE[WORD_ID[_w]] = _s

TOPIC_WORD_IDS = np.array([[WORD_ID[w] for w in t.words] for t in lx.TOPICS])
OPENER_IDS = np.array([[WORD_ID[w] for w in lx.OPENERS[s]] for s in lx.STYLES])
CLASS_WORD_IDS = {
    lx.QUALITY: np.array([WORD_ID[w] for w in lx.QUALITY_WORDS]),
    lx.FILLER: np.array([WORD_ID[w] for w in lx.FILLER_WORDS]),
    lx.BAD: np.array([WORD_ID[w] for w in lx.BAD_WORDS]),
}
SUBJECT_TOPIC = {s: t for t, topic in enumerate(lx.TOPICS) for s in topic.subjects}


def as_strings(values: Sequence[Any], what: str) -> list[str]:
    out = list(values)
    if not set(map(type, out)) <= {str}:  # C-level fast path; subclasses of str are checked below
        for i, v in enumerate(out):
            if not isinstance(v, str):
                raise ValueError(f"{what}[{i}] must be a string, got {type(v).__name__}")
    return out


@dataclass(frozen=True)
class Parsed:
    """Responses as arrays: body word ids ``[N, L]`` (``-1`` padding), body lengths, styles."""

    ids: np.ndarray
    length: np.ndarray
    style: np.ndarray


_SEPARATOR = "\x01"  # not whitespace for str.split, so it survives as a token between responses
_SEPARATOR_ID = -1


class _Ids(dict):
    """Word -> id; each distinct unknown word gets its own id ``>= V`` (so it is not a repeat)."""

    def __init__(self) -> None:
        super().__init__(WORD_ID)
        self[_SEPARATOR] = _SEPARATOR_ID
        self.next_id = V

    def __missing__(self, word: str) -> int:
        self[word] = i = self.next_id
        self.next_id += 1
        return i


def parse(responses: Sequence[str]) -> Parsed:
    """Split responses on whitespace; the first word is the opener if it is one.

    A response that is only an opener has an empty body and no style. Vectorised: the responses
    are joined with a separator token and split in one call.
    """
    responses = as_strings(responses, "responses")
    n = len(responses)
    ids_of = _Ids()
    joined = f" {_SEPARATOR} ".join(responses)
    if joined.count(_SEPARATOR) == max(n - 1, 0):
        tokens = joined.split()
        all_ids = np.fromiter(map(ids_of.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        is_sep = all_ids == _SEPARATOR_ID
        total_lengths = np.bincount(np.cumsum(is_sep)[~is_sep], minlength=n).astype(np.int64)
        flat = all_ids[~is_sep]
    else:  # some response contains the separator character itself: split one by one
        split = [r.split() for r in responses]
        total_lengths = np.fromiter(map(len, split), dtype=np.int64, count=n)
        ids_of.pop(_SEPARATOR)
        flat = np.fromiter((ids_of[w] for words in split for w in words), dtype=np.int64,
                           count=int(total_lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(total_lengths)[:-1]]).astype(np.int64)
    first = np.full(n, V, dtype=np.int64)
    nonempty = total_lengths > 0
    first[nonempty] = np.minimum(flat[starts[nonempty]], V)
    style = OPENER_STYLE[first]
    skip = (style != lx.NO_STYLE).astype(np.int64)
    length = total_lengths - skip
    style[length == 0] = lx.NO_STYLE
    width = max(int(length.max(initial=0)), 1)
    ids = np.full((n, width), -1, dtype=np.int64)
    row = np.repeat(np.arange(n), total_lengths)
    pos = np.arange(flat.size) - np.repeat(starts, total_lengths) - np.repeat(skip, total_lengths)
    keep = pos >= 0
    ids[row[keep], pos[keep]] = flat[keep]
    return Parsed(ids=ids, length=length, style=style)


def class_counts(parsed: Parsed, topics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per response and word class (``lexicon.CLASS_NAMES``): first occurrences and repeats.

    ``topics[i]`` is the prompt's topic (``-1``: none, so every topic word is off-topic). A
    repeat is any occurrence of a body word after its first one. Both arrays are ``[N, 6]``.
    """
    ids = parsed.ids
    n, width = ids.shape
    valid = ids >= 0
    safe = np.where(valid, np.minimum(ids, V), V)
    cls = BODY_CLASS[safe].copy()
    word_topic = WORD_TOPIC[safe]
    cls[(word_topic >= 0) & (word_topic == topics[:, None])] = lx.ON_TOPIC
    key = np.where(valid, ids, -2 - np.arange(width)[None, :])  # padding never repeats
    order = np.argsort(key, axis=1, kind="stable")
    sorted_key = np.take_along_axis(key, order, axis=1)
    dup_sorted = np.zeros_like(valid)
    dup_sorted[:, 1:] = sorted_key[:, 1:] == sorted_key[:, :-1]
    repeat = np.empty_like(valid)
    np.put_along_axis(repeat, order, dup_sorted, axis=1)
    n_cls = len(lx.CLASS_NAMES)
    flat_index = np.arange(n)[:, None] * n_cls + cls
    first_counts = np.bincount(flat_index[valid & ~repeat], minlength=n * n_cls).reshape(n, n_cls)
    repeat_counts = np.bincount(flat_index[valid & repeat], minlength=n * n_cls).reshape(n, n_cls)
    return first_counts.astype(float), repeat_counts.astype(float)


def body_words(response: str) -> list[str]:
    """The words of a response after its opener (if its first word is one)."""
    words = response.split()
    return words[1:] if words and OPENER_STYLE[WORD_ID.get(words[0], V)] != lx.NO_STYLE else words
