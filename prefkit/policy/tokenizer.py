"""The tiny preset's word-level tokenizer, fitted on the training texts.

Words are what the ``tokenizers`` ``Whitespace`` pre-tokenizer produces (runs of word
characters, or runs of punctuation). Decoding joins tokens with single spaces, so
``encode(decode(ids)) == ids`` holds exactly for every id sequence; sampled responses can
therefore be re-scored from their text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from prefkit.data.boundaries import chunks

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
"""Ids 0..3 in this order."""

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}"
    "{{ eos_token if message['role'] == 'assistant' else '' }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
"""The bos, then ``role: content`` lines (an assistant turn ends with the eos, as ChatML's turns end
with ``<|im_end|>``), then ``assistant:`` when a generation prompt is asked for. With TRL's
rendering a conversational response is ``content </s>`` (the newline is no token here)."""

TEMPLATE_WORDS = ("system", "user", "assistant", ":")
"""Words the chat template writes; always in the vocabulary so rendered prompts have no <unk>."""


ASCII_WORDS = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_ \t\n\v\f\r]+")
"""The ``Whitespace`` pre-tokenizer's pieces (``\\w+|[^\\w\\s]+``, Unicode classes) on ASCII text:
the classes spelt out, since Python's ``\\s`` also matches ``\x1c``-``\x1f`` and Rust's does not."""


def count_words(texts: Iterable[str]) -> Counter[str]:
    """Word frequencies under the ``Whitespace`` pre-tokenizer; a long text is split in ~1 MB
    chunks at word boundaries first (the same words, in bounded memory), and ASCII chunks are
    split by :data:`ASCII_WORDS` (the same pieces, many times faster)."""
    splitter = pre_tokenizers.Whitespace()
    counts: Counter[str] = Counter()
    for text in texts:
        for chunk in chunks(text):
            if chunk.isascii():
                counts.update(ASCII_WORDS.findall(chunk))
            else:
                counts.update(word for word, _ in splitter.pre_tokenize_str(chunk))
    return counts


def fit_word_tokenizer(texts: Iterable[str], max_vocab: int) -> PreTrainedTokenizerFast:
    """Fit a word-level tokenizer whose vocabulary has at most ``max_vocab`` entries.

    The vocabulary is the four special tokens (``<pad>``, ``<s>``, ``</s>``, ``<unk>``), the
    words of the chat template, then the most frequent words of ``texts`` (ties broken by the
    word itself, so the result does not depend on the order of ``texts``). Unknown words map
    to ``<unk>``. ``tokenizer(text)`` prepends ``<s>``; ``add_special_tokens=False`` does not.
    """
    reserved = [*SPECIAL_TOKENS, *TEMPLATE_WORDS]
    if max_vocab < len(reserved):
        raise ValueError(
            f"tiny.max_vocab must be at least {len(reserved)} (special tokens and chat-template "
            f"words), got {max_vocab}"
        )
    counts = count_words(texts)
    for word in reserved:
        counts.pop(word, None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = reserved + [word for word, _ in ranked[: max_vocab - len(reserved)]]
    vocab = {word: index for index, word in enumerate(words)}

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # The tokenizer itself adds the bos (as Llama's does), so TRL's tokenization and prefkit's
    # both start a string prompt with it.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    # No decoder: the tokenizers library then joins tokens with single spaces.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
