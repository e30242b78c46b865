import pytest
import torch

from prefkit.errors import InputError
from prefkit.policy import SequenceTooLongError, count_tokens
from prefkit.policy.encoding import _budget, build_batch

BOS, EOS, PAD = 1, 2, 0


def test_rows_are_bos_prompt_response_eos_right_padded_to_longest_row(policy):
    tok = policy.tokenizer
    batch = policy.encode(["the cat", "hello"], ["sat on the mat", "world"], max_length=64)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    row0 = [BOS, *ids("the cat"), *ids("sat on the mat"), EOS]
    row1 = [BOS, *ids("hello"), *ids("world"), EOS]
    assert batch.input_ids.tolist() == [row0, row1 + [PAD] * (len(row0) - len(row1))]
    assert batch.input_ids.shape[1] == len(row0)  # dynamic padding, not max_length
    assert batch.attention_mask.tolist() == [[1] * 8, [1] * 4 + [0] * 4]
    assert batch.response_mask.tolist() == [
        [False] * 3 + [True] * 5,
        [False] * 2 + [True] * 2 + [False] * 4,
    ]
    assert batch.prompt_lengths.tolist() == [3, 2]
    assert batch.response_lengths.tolist() == [5, 2]
    assert batch.row_ids.tolist() == [[0] * 8, [1] * 4 + [-1] * 4]
    assert not batch.truncated.any()
    assert count_tokens(batch) == batch.num_tokens == 12


def test_message_prompts_use_the_chat_template_and_message_responses_their_content(policy):
    messages = policy.encode(
        [[{"role": "user", "content": "hello"}]],
        [[{"role": "assistant", "content": "world"}]],
        max_length=64,
    )
    text = policy.encode(["user: hello\nassistant:"], ["world"], max_length=64)
    assert torch.equal(messages.input_ids, text.input_ids)


def test_budget_worked_numbers():
    # Fits: untouched.
    assert _budget(4, 5, max_length=9, max_prompt_length=4) == (4, 5)
    # Prompt cut only as far as needed: 10 + 3 > 10 -> keep 7 of the prompt, all 3 response.
    assert _budget(10, 3, max_length=10, max_prompt_length=5) == (7, 3)
    # Long response: prompt down to max_prompt_length, response keeps its first 5.
    assert _budget(10, 20, max_length=10, max_prompt_length=5) == (5, 5)
    # Short prompt, long response: prompt untouched, response cut.
    assert _budget(3, 20, max_length=10, max_prompt_length=5) == (3, 7)


def test_truncation_keeps_bos_and_prompt_end_and_response_start():
    prompt = [BOS, 10, 11, 12, 13, 14, 15]
    response = [20, 21, 22, 23, 24, 25, EOS]
    batch = build_batch([prompt], [response], pad_id=PAD, max_length=8, max_prompt_length=4)
    assert batch.input_ids.tolist() == [[BOS, 13, 14, 15, 20, 21, 22, 23]]
    assert batch.prompt_lengths.tolist() == [4]
    assert batch.response_lengths.tolist() == [4]
    assert batch.truncated.tolist() == [True]
    assert batch.response_mask.tolist() == [[False] * 4 + [True] * 4]


def test_truncation_without_bos_keeps_only_the_prompt_end():
    batch = build_batch(
        [[10, 11, 12, 13]],
        [[20, 21, 22, EOS]],
        pad_id=PAD,
        max_length=6,
        max_prompt_length=2,
        keep_first_prompt_token=False,
    )
    assert batch.input_ids.tolist() == [[12, 13, 20, 21, 22, EOS]]


def test_truncation_error_names_the_row():
    with pytest.raises(SequenceTooLongError, match=r"row 1: 9 tokens .* max_length=8") as info:
        build_batch(
            [[BOS, 5], [BOS, 5, 6, 7]],
            [[7, EOS], [8, 9, 10, 11, EOS]],
            pad_id=PAD,
            max_length=8,
            truncation="error",
        )
    assert isinstance(info.value, InputError)
    assert (info.value.row, info.value.tokens, info.value.max_length) == (1, 9, 8)


def test_pairs_stack_chosen_then_rejected_and_share_the_prompt_truncation(policy):
    prompts = ["one two three four five six", "hello"]
    chosen = ["seven", "world"]
    rejected = ["eight nine ten one two three four five", "you"]
    batch = policy.encode_pairs(prompts, chosen, rejected, max_length=10, max_prompt_length=4)
    alone = policy.encode(prompts + prompts, chosen + rejected, max_length=64)
    assert batch.num_rows == 4
    # Pair 0: the rejected row (7 prompt + 9 response tokens) needs the prompt cut to 4 tokens
    # (bos + "four five six"); the chosen row gets the very same prompt.
    assert batch.prompt_lengths.tolist() == [4, 2, 4, 2]
    assert batch.response_lengths.tolist() == [2, 2, 6, 2]
    assert batch.truncated.tolist() == [True, False, True, False]
    assert batch.input_ids[0, :4].tolist() == batch.input_ids[2, :4].tolist()
    assert batch.input_ids[0, 1:4].tolist() == alone.input_ids[0, 4:7].tolist()
    # Pair 1 fits: rows 1 and 3 are exactly the untruncated encodings.
    for row in (1, 3):
        width = int(alone.lengths[row])
        assert batch.input_ids[row, :width].tolist() == alone.input_ids[row, :width].tolist()


def test_pair_errors_name_the_pair_index(policy):
    with pytest.raises(SequenceTooLongError, match=r"^\[max_length\]: row 1:"):
        policy.encode_pairs(
            ["hello", "hello"],
            ["world", "world"],
            ["you", "one two three four five six"],
            max_length=6,
            truncation="error",
        )


def test_encode_token_ids_uses_ids_as_given(policy):
    batch = policy.encode_token_ids([[BOS, 7, 8], [9]], [[10, 11], []])
    assert batch.input_ids.tolist() == [[BOS, 7, 8, 10, 11], [9, PAD, PAD, PAD, PAD]]
    assert batch.response_lengths.tolist() == [2, 0]


def test_pack_concatenates_rows_with_restarting_positions():
    batch = build_batch([[BOS, 5], [BOS]], [[6, 7, EOS], [8, EOS]], pad_id=PAD, max_length=16)
    packed = batch.pack()
    assert packed.packed and packed.attention_mask is None
    assert packed.input_ids.tolist() == [[BOS, 5, 6, 7, EOS, BOS, 8, EOS]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert packed.row_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert packed.response_mask.int().tolist() == [[0, 0, 1, 1, 1, 0, 1, 1]]
    assert packed.num_tokens == batch.num_tokens == 8


def test_select_repads_to_the_selected_rows():
    batch = build_batch([[BOS, 5], [BOS]], [[6, 7, EOS], [8, EOS]], pad_id=PAD, max_length=16)
    part = batch.select([1])
    assert part.input_ids.tolist() == [[BOS, 8, EOS]]
    assert part.row_ids.tolist() == [[0, 0, 0]]


def test_bad_arguments_are_rejected(policy):
    with pytest.raises(ValueError, match="max_prompt_length must be in"):
        build_batch([[BOS]], [[EOS]], pad_id=PAD, max_length=8, max_prompt_length=8)
    with pytest.raises(ValueError, match="truncation must be"):
        build_batch([[BOS]], [[EOS]], pad_id=PAD, max_length=8, truncation="drop")
    with pytest.raises(ValueError, match="no tokens"):
        build_batch([[]], [[EOS]], pad_id=PAD, max_length=8)
    with pytest.raises(ValueError, match="prompts=2, responses=1"):
        policy.encode(["a", "b"], ["c"], max_length=8)
    with pytest.raises(ValueError, match="only assistant messages"):
        policy.encode(["a"], [[{"role": "user", "content": "c"}]], max_length=8)
