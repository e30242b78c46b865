"""prefkit's sequences equal TRL 1.16's on several tokenizer styles (issue 10, item 7).

``trl_tokenize`` re-implements, from reading TRL 1.16's source, what ``DPOTrainer._prepare_dataset``
does to one row: standard (string) rows get ``tokenizer.eos_token`` appended to ``chosen`` and
``rejected`` unless present, then ``tokenizer(text=prompt)`` and ``tokenizer(text=prompt +
chosen)`` (``trl.data_utils._tokenize``); conversational rows go through
``apply_chat_template(..., tokenize=True, return_dict=True)`` with ``add_generation_prompt=True``
for the prompt alone; the completion starts at ``min`` of the two common prefix lengths
(``trl.data_utils.common_prefix_length``). No TRL import. The tokenizers are built here from
``tokenizers`` models (no download): ChatML with a trailing newline after ``<|im_end|>``, a
Llama-3 style one whose tokenizer adds the bos and whose template writes it, a GPT-2 style one
with bos = eos that adds no bos, and the built-in tiny preset's.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from prefkit.config import TinyConfig
from prefkit.policy import Policy

CORPUS = [
    "The sky is blue and the grass is green.", "What colour is the sky?", "Tell me a story about a cat.",
    "Once upon a time there was a small cat who liked the sun.", "Blue. Green. Red.", "I like cats and dogs.",
    "hello there, how are you today?", "fine thanks", "Paris is the capital of France.",
]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def byte_level_bpe(specials: list[str]) -> Tokenizer:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer=trainer)
    return backend


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    backend = byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def llama3_tokenizer() -> PreTrainedTokenizerFast:
    backend = byte_level_bpe(["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"])
    bos = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    tok.chat_template = LLAMA3
    return tok


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    backend = byte_level_bpe(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    words = " ".join([*CORPUS, "user assistant system"]).replace(".", " . ").replace(",", " , ").replace("?", " ? ")
    return Policy.tiny([words], TinyConfig(hidden_size=16, layers=1, heads=2)).tokenizer


# ----------------------------------------------------------------------------- TRL, by hand


def common_prefix_length(ids: list[int], other: list[int]) -> int:
    length = 0
    for a, b in zip(ids, other):
        if a != b:
            break
        length += 1
    return length


def trl_tokenize(tok, example: dict) -> tuple[list[int], list[int], list[int]]:
    """TRL 1.16 ``DPOTrainer._prepare_dataset`` for one row: (prompt, chosen, rejected) ids."""
    example = dict(example)
    conversational = isinstance(example["prompt"], list)
    if not conversational:
        for key in ("chosen", "rejected"):
            if not example[key].endswith(tok.eos_token):
                example[key] = example[key] + tok.eos_token

    def tokenize(value, **kwargs):
        if isinstance(value, list):
            return tok.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)["input_ids"]
        return tok(text=value)["input_ids"]

    prompt_ids = tokenize(example["prompt"], **({"add_generation_prompt": True} if conversational else {}))
    chosen = tokenize(example["prompt"] + example["chosen"])
    rejected = tokenize(example["prompt"] + example["rejected"])
    cut = min(common_prefix_length(prompt_ids, chosen), common_prefix_length(prompt_ids, rejected))
    return list(prompt_ids[:cut]), list(chosen[cut:]), list(rejected[cut:])


STRING_ROWS = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "What colour is the sky?", "chosen": " Blue.", "rejected": " I like cats."},
    {"prompt": "Tell me a story", "chosen": " about a cat.", "rejected": " Once upon a time."},
]
CHAT_ROWS = [
    {"prompt": [{"role": "user", "content": "What colour is the sky?"}],
     "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}]},
    {"prompt": [{"role": "system", "content": "fine thanks"}, {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "how are you today?"}, {"role": "user", "content": "Tell me a story"}],
     "chosen": [{"role": "assistant", "content": "Once upon a time there was a cat."}],
     "rejected": [{"role": "assistant", "content": "I like dogs."}]},
]
STYLES = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer, "gpt2": gpt2_tokenizer, "tiny": tiny_tokenizer}


def policy_of(tok) -> Policy:
    return Policy(torch.nn.Identity(), tok)


def cases():
    for style in STYLES:
        for row in STRING_ROWS:
            yield style, row
        if style != "gpt2":  # GPT-2 has no chat template
            for row in CHAT_ROWS:
                yield style, row


@pytest.fixture(scope="module")
def tokenizers_by_style():
    return {name: build() for name, build in STYLES.items()}


@pytest.mark.parametrize(("style", "row"), list(cases()), ids=lambda v: v if isinstance(v, str) else None)
def test_prefkit_sequences_equal_trls(tokenizers_by_style, style, row):
    tok = tokenizers_by_style[style]
    policy = policy_of(tok)
    prompt, chosen, rejected = trl_tokenize(tok, row)
    assert policy.prompt_ids([row["prompt"]]) == [prompt]
    assert policy.response_ids([row["chosen"], row["rejected"]], prompts=[row["prompt"]] * 2) == [chosen, rejected]
    # also without the prompts (the engine's call today): the neutral context gives the same here
    assert policy.response_ids([row["chosen"], row["rejected"]]) == [chosen, rejected]
    # and the batch the engine trains on: rows are TRL's prompt+completion, the mask its completion
    batch = policy.encode_pairs([row["prompt"]], [row["chosen"]], [row["rejected"]], max_length=512)
    for i, completion in enumerate((chosen, rejected)):
        n = len(prompt) + len(completion)
        assert batch.input_ids[i, :n].tolist() == prompt + completion
        assert batch.response_mask[i, :n].tolist() == [False] * len(prompt) + [True] * len(completion)


def test_the_styles_differ_where_the_issue_says(tokenizers_by_style):
    chatml, gpt2, llama3 = (tokenizers_by_style[s] for s in ("chatml", "gpt2", "llama3"))
    row = CHAT_ROWS[0]
    _, chosen, _ = trl_tokenize(chatml, row)
    assert chatml.decode(chosen) == "Blue.<|im_end|>\n"  # the template's newline belongs to the completion
    prompt, _, _ = trl_tokenize(gpt2, STRING_ROWS[0])
    assert prompt[0] != gpt2.bos_token_id  # GPT-2 adds no bos, though it has one (= eos)
    prompt, _, _ = trl_tokenize(llama3, STRING_ROWS[0])
    assert prompt[:1] == [llama3.bos_token_id] and prompt[1] != llama3.bos_token_id
    prompt, _, _ = trl_tokenize(llama3, row)
    assert prompt.count(llama3.bos_token_id) == 1  # the template writes it; no second one is added


def test_a_completion_that_already_ends_with_eos_gets_no_second_one(tokenizers_by_style):
    tok = tokenizers_by_style["gpt2"]
    ids = policy_of(tok).response_ids([" blue.<|endoftext|>", " blue."])
    assert ids[0] == ids[1] and ids[0].count(tok.eos_token_id) == 1
