"""``Policy``: a causal language model and its tokenizer on one device."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from prefkit._atomic import atomic_directory
from prefkit.config import TinyConfig
from prefkit.data.records import Text
from prefkit.errors import InputError
from prefkit.policy.chat import (
    conversation_completion_ids,
    conversation_prompt_ids,
    string_completion_ids,
    string_prompt_ids,
)
from prefkit.policy.encoding import EncodedBatch, Truncation, build_batch
from prefkit.policy.logps import ChunkSize, check_fast_path, sequence_logps
from prefkit.policy.sampling import Samples, sample_ids
from prefkit.policy.tokenizer import fit_word_tokenizer

Precision = Literal["fp32", "bf16"]
_DTYPES = {None: torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16}

_DTYPE_ARGUMENT = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"

TINY_ATTENTION = "sdpa"
"""Attention kernel of the tiny preset (measured against eager on CPU; see docs/policy.md)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Precision | None) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be None, 'fp32' or 'bf16', got {dtype!r}")
    return _DTYPES[dtype]


def _messages(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be a string or a non-empty list of messages, got {value!r}")
    for message in value:
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f"{what}: every message needs string 'role' and 'content', got {message!r}"
            )
    return value


class Policy:
    """A causal LM with its tokenizer, on one device.

    Sequences are TRL 1.16's (:mod:`prefkit.policy.chat`): for strings ``tokenizer(prompt)``
    (bos only where the tokenizer adds it) then the response's tokens and eos; for conversations
    the chat template's prompt (with the generation prompt) then what the template writes for the
    assistant turn, its end token and trailing text included. Prompt and response are tokenized
    separately and joined, which is also how sampled responses are conditioned (identical to
    TRL's joint tokenization whenever the response starts on a token boundary, e.g. with a
    leading space for byte-level BPE). A tokenizer without a pad token pads with its eos token (padding
    is masked by ``attention_mask``, never inferred from ids).
    """

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
        if tokenizer.eos_token_id is None:
            raise InputError(
                "the tokenizer has no eos token; set 'eos_token' in tokenizer_config.json",
                field="eos_token",
            )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.tokenizer = tokenizer

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def tiny(
        cls,
        texts: Iterable[str],
        tiny_cfg: TinyConfig,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> Policy:
        """A Llama-architecture model built from ``tiny_cfg`` with a word-level tokenizer.

        The vocabulary is fitted on ``texts`` (at most ``tiny_cfg.max_vocab`` entries, special
        tokens and chat-template words included). Weights are initialised from ``seed`` without
        touching the global random state.
        """
        tokenizer = fit_word_tokenizer(texts, tiny_cfg.max_vocab)
        kv_heads = tiny_cfg.kv_heads or tiny_cfg.heads
        if tiny_cfg.heads % kv_heads:
            raise ValueError(
                f"tiny.kv_heads ({kv_heads}) must divide tiny.heads ({tiny_cfg.heads})"
            )
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=tiny_cfg.hidden_size,
            intermediate_size=tiny_cfg.intermediate_size or 4 * tiny_cfg.hidden_size,
            num_hidden_layers=tiny_cfg.layers,
            num_attention_heads=tiny_cfg.heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=tiny_cfg.max_position_embeddings,
            tie_word_embeddings=tiny_cfg.tie_word_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            attn_implementation=TINY_ATTENTION,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return cls(model.to(resolve_device(device)), tokenizer)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "auto",
        dtype: Precision | None = None,
        trust_remote_code: bool = False,
    ) -> Policy:
        """Load a Hugging Face causal LM and its tokenizer from a local directory.

        ``dtype``: ``None``/``"fp32"`` loads float32 weights (a bf16 checkpoint is upcast),
        ``"bf16"`` bfloat16 weights. A string that is not a local path but looks like a Hub id
        (``org/name``) is fetched from the Hub when the machine is online. Remote code runs only
        with ``trust_remote_code=True``.
        """
        torch_dtype = resolve_dtype(dtype)
        source = str(path)
        local = Path(path)
        if local.exists():
            if not local.is_dir() or not (local / "config.json").is_file():
                raise InputError("not a Hugging Face model directory (no config.json)", file=source)
        elif not _looks_like_hub_id(source):
            raise InputError("model directory does not exist", file=source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                source, trust_remote_code=trust_remote_code, **{_DTYPE_ARGUMENT: torch_dtype}
            )
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load a causal LM from here: {error}", file=source) from error
        policy = cls(model.to(resolve_device(device)), tokenizer)
        check_fast_path(policy.model)
        return policy

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write safetensors weights, config and tokenizer into ``directory``, atomically.

        Everything is written into a temporary sibling directory first, which then replaces
        ``directory`` by rename, so a crash never leaves a half-written checkpoint.
        """
        target = Path(directory)
        with atomic_directory(target) as staging, _quiet_progress_bars():
            self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
        return target

    # -- properties -------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def eos_ids(self) -> list[int]:
        """Ids that end a sampled response: the tokenizer's eos and the generation config's."""
        ids = {int(self.tokenizer.eos_token_id)}
        generation = getattr(self.model, "generation_config", None)
        extra = getattr(generation, "eos_token_id", None)
        if isinstance(extra, int):
            ids.add(extra)
        elif isinstance(extra, (list, tuple)):
            ids.update(int(i) for i in extra)
        return sorted(ids)

    @property
    def max_length(self) -> int:
        """The longest sequence the model's positions allow (a large number when unbounded)."""
        return int(getattr(self.model.config, "max_position_embeddings", None) or 1 << 20)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(
            p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only
        )

    def to(self, device: str | torch.device) -> Policy:
        self.model.to(resolve_device(device))
        return self

    # -- text -------------------------------------------------------------------------------

    def render_prompt(self, prompt: Text) -> str:
        """A string as is; a message list through the chat template, ending with the
        assistant's generation prompt."""
        if isinstance(prompt, str):
            return prompt
        messages = _messages(prompt, "prompt")
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                "this tokenizer has no chat template, so conversational prompts cannot be "
                "rendered; give prompts as plain strings"
            )
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def render_response(self, response: Text) -> str:
        """A string as is; a message list gives its assistant content (several joined by a
        newline). Any non-assistant message in a response is an error."""
        if isinstance(response, str):
            return response
        messages = _messages(response, "response")
        for message in messages:
            if message["role"] != "assistant":
                raise ValueError(
                    f"a response may hold only assistant messages, got role {message['role']!r}"
                )
        return "\n".join(message["content"] for message in messages)

    def prompt_ids(self, prompts: Sequence[Text]) -> list[list[int]]:
        """Prompt tokens as TRL 1.16 builds them (:mod:`prefkit.policy.chat`): a string with the
        tokenizer's own leading special tokens (a bos only where the tokenizer adds one), a
        conversation through the chat template with the generation prompt (the template writes
        any bos). Each distinct prompt is tokenized once."""
        keys = [p if isinstance(p, str) else _conversation_key(_messages(p, "prompt")) for p in prompts]
        by_key: dict[Any, list[int]] = {}
        strings = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
        by_key.update(zip(strings, string_prompt_ids(self.tokenizer, strings)))
        for key, prompt in zip(keys, prompts):
            if key not in by_key:
                if not getattr(self.tokenizer, "chat_template", None):
                    raise ValueError(
                        "this tokenizer has no chat template, so conversational prompts cannot be "
                        "rendered; give prompts as plain strings"
                    )
                by_key[key] = conversation_prompt_ids(self.tokenizer, prompt)
        return [list(by_key[k]) for k in keys]

    def response_ids(
        self,
        responses: Sequence[Text],
        *,
        prompts: Sequence[Text] | None = None,
        add_eos: bool = True,
    ) -> list[list[int]]:
        """Completion tokens as TRL 1.16 builds them (:mod:`prefkit.policy.chat`).

        A string: its tokens plus the eos (unless the text ends with the eos text) and any
        special tokens the tokenizer appends; ``add_eos=False`` gives the bare tokens. A message
        list: what the chat template writes after the rendered prompt, so its text after the
        assistant's end token belongs to the completion; rendered after ``prompts[i]`` when given
        (exact for every template), else after a neutral user turn (exact for templates whose
        assistant turns do not depend on earlier turns, as ChatML's and Llama-3's).
        """
        if prompts is not None:
            _same_length(prompts=prompts, responses=responses)
        out: list[list[int] | None] = [None] * len(responses)
        strings = [i for i, r in enumerate(responses) if isinstance(r, str)]
        if strings:
            texts = [responses[i] for i in strings]
            if add_eos:
                encoded = string_completion_ids(self.tokenizer, texts)
            else:
                encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            for i, ids in zip(strings, encoded):
                out[i] = list(ids)
        for i, response in enumerate(responses):
            if out[i] is None:
                messages = _messages(response, "response")
                for message in messages:
                    if message["role"] != "assistant":
                        raise ValueError(
                            f"a response may hold only assistant messages, got role {message['role']!r}"
                        )
                context = prompts[i] if prompts is not None and not isinstance(prompts[i], str) else None
                out[i] = conversation_completion_ids(self.tokenizer, messages, context)
        return [ids for ids in out if ids is not None]

    # -- batches ----------------------------------------------------------------------------

    def encode(
        self,
        prompts: Sequence[Text],
        responses: Sequence[Text],
        *,
        max_length: int,
        max_prompt_length: int | None = None,
        truncation: Truncation = "truncate",
    ) -> EncodedBatch:
        """One row per (prompt, response), right padded to the batch's longest row.

        Rows longer than ``max_length`` keep the end of the prompt (at least
        ``max_prompt_length`` tokens, default ``max_length // 2``) and the start of the
        response and are flagged in ``truncated``; with ``truncation="error"`` they raise
        ``SequenceTooLongError`` naming the row.
        """
        _same_length(prompts=prompts, responses=responses)
        return build_batch(
            self.prompt_ids(prompts),
            self.response_ids(responses, prompts=prompts),
            pad_id=self.tokenizer.pad_token_id,
            max_length=max_length,
            max_prompt_length=max_prompt_length,
            truncation=truncation,
            keep_first_prompt_token=self.tokenizer.bos_token_id is not None,
        )

    def encode_pairs(
        self,
        prompts: Sequence[Text],
        chosen: Sequence[Text],
        rejected: Sequence[Text],
        *,
        max_length: int,
        max_prompt_length: int | None = None,
        truncation: Truncation = "truncate",
    ) -> EncodedBatch:
        """``2N`` rows, chosen rows ``0..N-1`` then rejected rows ``N..2N-1``, for one forward.

        Each prompt is tokenized once; a pair's two rows share the same (possibly truncated)
        prompt, sized for the longer response. Errors name the pair's index.
        """
        _same_length(prompts=prompts, chosen=chosen, rejected=rejected)
        count = len(prompts)
        return build_batch(
            self.prompt_ids(prompts),
            self.response_ids([*chosen, *rejected], prompts=[*prompts, *prompts]),
            pad_id=self.tokenizer.pad_token_id,
            max_length=max_length,
            max_prompt_length=max_prompt_length,
            truncation=truncation,
            prompt_of_row=[*range(count), *range(count)],
            keep_first_prompt_token=self.tokenizer.bos_token_id is not None,
            row_names=[*range(count), *range(count)],
        )

    def encode_token_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        *,
        max_length: int | None = None,
        max_prompt_length: int | None = None,
        truncation: Truncation = "error",
    ) -> EncodedBatch:
        """Rows from ids used exactly as given (no bos or eos added), e.g. ``Samples`` ids.

        Online methods should score samples this way: re-tokenizing decoded text is exact for
        the tiny word-level tokenizer but not for every Hugging Face tokenizer.
        """
        _same_length(prompt_ids=prompt_ids, response_ids=response_ids)
        return build_batch(
            prompt_ids,
            response_ids,
            pad_id=self.tokenizer.pad_token_id,
            max_length=max_length or self.max_length,
            max_prompt_length=max_prompt_length,
            truncation=truncation,
            keep_first_prompt_token=self.tokenizer.bos_token_id is not None,
        )

    # -- scoring ----------------------------------------------------------------------------

    @torch.no_grad()
    def score(
        self, batch: EncodedBatch, *, batch_size: int = 32, chunk_size: ChunkSize = "auto"
    ) -> torch.Tensor:
        """``log π(response | prompt)`` per row of ``batch`` (float32 ``[N]`` on the CPU).

        Rows are scored in mini-batches of similar length (less padding), in eval mode.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = torch.zeros(batch.num_rows, dtype=torch.float32)
        order = torch.argsort(batch.lengths, stable=True)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, batch.num_rows, batch_size):
                rows = order[start : start + batch_size]
                sums, _ = sequence_logps(self.model, batch.select(rows), chunk_size=chunk_size)
                out[rows] = sums.float().cpu()
        finally:
            self.model.train(was_training)
        return out

    def logprob(
        self,
        prompts: Sequence[Text],
        responses: Sequence[Text],
        *,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """``log π(response + eos | prompt)`` for text responses, ``[N]`` float32, no grad.

        Rows longer than ``max_length`` (default: the model's position limit) are an error,
        never silently truncated.
        """
        batch = self.encode(
            prompts, responses, max_length=max_length or self.max_length, truncation="error"
        )
        return self.score(batch, batch_size=batch_size)

    def logprob_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """``log π(response_ids | prompt_ids)`` for ids used as given (see ``encode_token_ids``)."""
        return self.score(self.encode_token_ids(prompt_ids, response_ids), batch_size=batch_size)

    # -- sampling ---------------------------------------------------------------------------

    def sample(
        self,
        prompts: Sequence[Text],
        n: int = 1,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        mixture: tuple[Policy | nn.Module, float] | None = None,
        max_prompt_length: int | None = None,
        use_cache: bool = True,
    ) -> Samples:
        """``n`` responses per prompt (see ``prefkit.policy.sampling``).

        ``generator`` (a ``torch.Generator`` on the model's device) makes the draw
        reproducible. ``mixture=(reference, coef)`` draws from the token-level geometric
        mixture of this policy and ``reference`` (which must share the tokenizer).
        ``max_prompt_length`` keeps only the end of longer prompts (and their bos).
        """
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        prompt_ids = self.prompt_ids(prompts)
        if max_prompt_length is not None:
            keep_bos = self.tokenizer.bos_token_id is not None
            prompt_ids = [_keep_end(ids, max_prompt_length, keep_bos) for ids in prompt_ids]
        longest = max((len(ids) for ids in prompt_ids), default=0)
        if longest + max_new_tokens > self.max_length:
            raise ValueError(
                f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                f"model's {self.max_length} positions; set max_prompt_length"
            )
        if mixture is not None:
            reference, coef = mixture
            ref_model = reference.model if isinstance(reference, Policy) else reference
            mixture = (ref_model, float(coef))
        rows = [ids for ids in prompt_ids for _ in range(n)]
        if not rows:
            empty = torch.zeros((0, n))
            return Samples([], [], empty.float(), empty.long(), empty.bool(), [])
        tokens, logps, lengths, finished = sample_ids(
            self.model,
            rows,
            max_new_tokens=max_new_tokens,
            eos_ids=self.eos_ids,
            pad_id=self.tokenizer.pad_token_id,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
            mixture=mixture,
            use_cache=use_cache,
        )
        ids = [tokens[b, : lengths[b]].tolist() for b in range(len(rows))]
        texts = self.tokenizer.batch_decode(
            [row[:-1] if done else row for row, done in zip(ids, finished.tolist())],
            skip_special_tokens=False,
        )
        count = len(prompt_ids)
        return Samples(
            texts=[texts[i * n : (i + 1) * n] for i in range(count)],
            token_ids=[ids[i * n : (i + 1) * n] for i in range(count)],
            logps=logps.view(count, n),
            lengths=lengths.view(count, n),
            finished=finished.view(count, n),
            prompt_ids=prompt_ids,
        )


def build_tiny_checkpoint(
    directory: str | os.PathLike[str],
    texts: Iterable[str],
    tiny_cfg: TinyConfig,
    seed: int = 0,
) -> Path:
    """Build a tiny policy and save it as a normal Hugging Face directory (no download)."""
    return Policy.tiny(texts, tiny_cfg, seed=seed).save(directory)


def _keep_end(ids: list[int], keep: int, keep_first: bool) -> list[int]:
    if keep <= 0:
        raise ValueError(f"max_prompt_length must be positive, got {keep}")
    if len(ids) <= keep:
        return ids
    return [ids[0], *ids[len(ids) - keep + 1 :]] if keep_first else ids[len(ids) - keep :]


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' per-file progress bars (the engine shows its own progress)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _conversation_key(messages: list[dict[str, str]]) -> tuple:
    return tuple(tuple(sorted(m.items())) for m in messages)


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _same_length(**columns: Sequence[Any]) -> None:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"columns must have the same length, got {detail}")
