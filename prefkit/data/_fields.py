"""Checking one field of one row: text or messages, numbers, and the implicit-prompt split."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from prefkit.data.boundaries import chunks
from prefkit.data.records import Message, Text


class RowProblem(Exception):
    """What is wrong with one field of a row; the reader adds file and line."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_text(value: Any, field: str) -> Text:
    """A string, or a list of ``{"role", "content"}`` messages (TRL's conversational format).

    Message keys other than role and content are kept, except null ones (Parquet fills
    missing struct fields with nulls).
    """
    if isinstance(value, str):
        return value
    if value is None:
        raise RowProblem(field, "is null; expected a string or a list of {role, content} messages")
    if isinstance(value, dict):
        raise RowProblem(field, "is a single message object; wrap it in a list: [{role, content}]")
    if not isinstance(value, list):
        raise RowProblem(
            field, f"must be a string or a list of {{role, content}} messages, got {type_name(value)}"
        )
    messages: list[Message] = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise RowProblem(where, f"a message must be an object with role and content, got {type_name(message)}")
        for key in ("role", "content"):
            if key not in message or message[key] is None:
                raise RowProblem(f"{where}.{key}", f"message has no '{key}'")
        if not isinstance(message["role"], str) or not message["role"].strip():
            raise RowProblem(f"{where}.role", f"role must be a non-empty string, got {message['role']!r}")
        if not isinstance(message["content"], str):
            raise RowProblem(
                f"{where}.content",
                f"content must be a string, got {type_name(message['content'])} "
                "(multimodal content lists are not supported)",
            )
        messages.append({k: v for k, v in message.items() if v is not None})
    return messages


def check_response_roles(response: Text, field: str, *, first_index: int = 0) -> None:
    """A conversational response holds only the assistant's turn(s): every message's role is
    ``assistant`` (what the trainers render). ``first_index`` is the response's first message's
    index in the row's original list (after an implicit prompt was split off)."""
    if not isinstance(response, list):
        return
    for i, message in enumerate(response, start=first_index):
        if message["role"] != "assistant":
            raise RowProblem(
                f"{field}[{i}].role",
                f"is {message['role']!r}, but a response holds only assistant messages (earlier "
                "turns belong in the prompt; without a prompt column, the turns shared by all "
                "responses become the prompt)",
            )


def is_conversation(text: Text) -> bool:
    return isinstance(text, list)


def is_empty(text: Text) -> bool:
    """No visible content: a blank string, no messages, or messages whose contents are all blank."""
    if isinstance(text, str):
        return not text.strip()
    return all(not m["content"].strip() for m in text)


def _squeeze(text: str) -> str:
    """``" ".join(text.split())``, splitting a long text in chunks first (no list of millions of
    words for a huge row)."""
    if len(text) <= 1 << 20:
        return " ".join(text.split())
    return " ".join(s for chunk in chunks(text, spaces_only=True) if (s := " ".join(chunk.split())))


def canonical(text: Text) -> str:
    """Whitespace-normalised form used to decide whether two texts say the same thing."""
    if isinstance(text, str):
        return _squeeze(text)
    return "\n".join(f"{m['role']}: {_squeeze(m['content'])}" for m in text)


def parse_number(value: Any, field: str, *, low: float | None = None, high: float | None = None) -> float:
    """A finite real number (booleans are not numbers here), optionally within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RowProblem(field, f"must be a number, got {type_name(value)} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RowProblem(field, f"must be finite, got {number}")
    if (low is not None and number < low) or (high is not None and number > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise RowProblem(field, f"must be in [{lo}, {hi}], got {number:g}")
    return number


def split_implicit_prompt(texts: list[Text]) -> tuple[Text, list[Text]]:
    """TRL's implicit prompt: full conversations (or texts) sharing a prefix -> (prompt, rest).

    Message lists share whole messages: the prompt is the longest common run of identical
    leading messages. Strings are cut at a word boundary: the common character prefix is cut
    back to its last whitespace, which stays with the responses
    (``"The sky is blue."`` / ``"The sky is green."`` -> ``"The sky is"``, ``" blue."``,
    ``" green."``, as TRL's ``extract_prompt`` does); no whitespace means an empty prompt.
    """
    if all(isinstance(t, list) for t in texts):
        conversations: list[list[Message]] = texts  # type: ignore[assignment]
        shared = 0
        for column in zip(*conversations):
            if any(m != column[0] for m in column[1:]):
                break
            shared += 1
        return conversations[0][:shared], [c[shared:] for c in conversations]
    strings: list[str] = texts  # type: ignore[assignment]
    shared = 0
    for column in zip(*strings):
        if any(c != column[0] for c in column[1:]):
            break
        shared += 1
    cut = 0
    for i in range(shared - 1, -1, -1):
        if strings[0][i].isspace():
            cut = i
            break
    # A cut inside a run of whitespace leaves the whole run with the responses.
    while cut > 0 and strings[0][cut - 1].isspace():
        cut -= 1
    return strings[0][:cut], [s[cut:] for s in strings]
