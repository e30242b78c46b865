"""Field checks and TRL's implicit-prompt split."""

import pytest

from prefkit.data._fields import (
    RowProblem,
    canonical,
    is_empty,
    parse_number,
    split_implicit_prompt,
)


def msg(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("texts", "prompt", "rest"),
    [
        (["The sky is blue.", "The sky is green."], "The sky is", [" blue.", " green."]),
        (["I like cats", "I like cars"], "I like", [" cats", " cars"]),  # not "I like ca"
        (["Q: hi\nA: good", "Q: hi\nA: goodbye"], "Q: hi\nA:", [" good", " goodbye"]),
        (["A  B", "A  C"], "A", ["  B", "  C"]),  # the whole whitespace run stays with the responses
        (["cats", "dogs"], "", ["cats", "dogs"]),
        (["x a", "x b", "x c"], "x", [" a", " b", " c"]),
    ],
)
def test_string_split_is_at_a_word_boundary(texts, prompt, rest):
    assert split_implicit_prompt(texts) == (prompt, rest)


def test_conversation_split_is_by_whole_messages():
    shared = [msg("user", "hi")]
    chosen = [*shared, msg("assistant", "hello there")]
    rejected = [*shared, msg("assistant", "hello")]
    assert split_implicit_prompt([chosen, rejected]) == (shared, [chosen[1:], rejected[1:]])
    assert split_implicit_prompt([[msg("user", "a")], [msg("user", "b")]])[0] == []


def test_canonical_and_empty():
    assert canonical(" a \n b ") == canonical("a b")
    assert canonical([msg("user", "a  b")]) == "user: a b"
    assert is_empty(" \t") and is_empty([]) and is_empty([msg("assistant", " ")])
    assert not is_empty([msg("system", ""), msg("assistant", "x")])


@pytest.mark.parametrize("value", [True, "1", None, [1], float("nan"), float("inf")])
def test_parse_number_rejects(value):
    with pytest.raises(RowProblem) as caught:
        parse_number(value, "margin")
    assert caught.value.field == "margin"


def test_parse_number_bounds():
    assert parse_number(1, "label", low=0.0, high=1.0) == 1.0
    with pytest.raises(RowProblem, match=r"must be in \[0, 1\], got 1.01"):
        parse_number(1.01, "label", low=0.0, high=1.0)
