"""``Policy``: a causal language model and its tokenizer on one device."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from prefkit.policy import bounded
from prefkit.policy.chat import (
    conversation_completion_ids,
    special_affixes,
)
from prefkit.policy.encoding import EncodedBatch, Truncation, build_batch, first_token_rule
from prefkit.policy.logps import ChunkSize, check_fast_path, sequence_logps
from prefkit.policy.lora import device_map, is_lora, save_adapter, save_plain
from prefkit.policy.sampling import Samples, sample_ids
from prefkit.policy.tokenizer import fit_word_tokenizer

Precision = Literal["fp32", "bf16"]
_DTYPES = {None: torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16}

_DTYPE_ARGUMENT = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"

TINY_ATTENTION = "sdpa"
"""Attention kernel of the tiny preset (measured against eager on CPU; see docs/policy.md)."""


_DEVICE = re.compile(r"cpu(?::0)?|mps|cuda(?::(\d+))?")  # torch names the CPU "cpu" or "cpu:0"


def check_device(device: str | torch.device, *, field: str = "train.device") -> torch.device:
    """The device ``device`` names, once it is known to exist on this machine.

    ``auto`` is CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` must be
    present. Anything else, or hardware this machine lacks, is an ``InputError`` naming ``field``
    (one line for the CLI, instead of torch's assertion deep inside ``model.to``).
    """
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = _DEVICE.fullmatch(text)
    if match is None:
        raise InputError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps", field=field)
    kind, index = text.split(":")[0], match.group(1)
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InputError(f"{text} was asked for but {why}; use auto or cpu", field=field)
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise InputError(
                f"{text} was asked for but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})",
                field=field,
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{text} was asked for but Apple's MPS backend is not available here; use auto or cpu",
                         field=field)
    return torch.device(text)


def resolve_device(device: str | torch.device = "auto", *, field: str = "train.device") -> torch.device:
    """``auto`` is CUDA when available, else CPU; other names are checked by :func:`check_device`."""
    return check_device(device, field=field)


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
        self._affixes: tuple[list[int], list[int]] | None = None

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
        quantization_config: Any | None = None,
        attn_implementation: str | None = None,
    ) -> Policy:
        """Load a Hugging Face causal LM and its tokenizer from a local directory.

        ``dtype``: ``None``/``"fp32"`` loads float32 weights (a bf16 checkpoint is upcast),
        ``"bf16"`` bfloat16 weights. A string that is not a local path but looks like a Hub id
        (``org/name``) is fetched from the Hub when the machine is online. Remote code runs only
        with ``trust_remote_code=True``. ``quantization_config`` (a bitsandbytes config, see
        ``prefkit.policy.lora.quantization_config``) loads the weights quantized, straight onto
        ``device``. ``attn_implementation`` (``eager``, ``sdpa``, ``flash_attention_2``) picks the
        attention kernel; ``None`` keeps the checkpoint's choice.
        """
        torch_dtype = resolve_dtype(dtype)
        target = resolve_device(device)
        source = str(path)
        local = Path(path)
        if local.exists():
            if not local.is_dir() or not (local / "config.json").is_file():
                raise InputError("not a Hugging Face model directory (no config.json)", file=source)
            require_safetensors(local)
        elif not _looks_like_hub_id(source):
            raise InputError("model directory does not exist", file=source)
        target = resolve_device(device)
        placement: dict[str, Any] = {}
        if attn_implementation is not None:
            placement["attn_implementation"] = attn_implementation
        if quantization_config is not None:
            placement = {"quantization_config": quantization_config, "device_map": device_map(target)}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                source, trust_remote_code=trust_remote_code, use_safetensors=True,
                **{_DTYPE_ARGUMENT: torch_dtype}, **placement,
            )
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load a causal LM from here: {error}", file=source) from error
        policy = cls(model if quantization_config is not None else model.to(target), tokenizer)
        check_fast_path(policy.model)
        return policy

    def save(self, directory: str | os.PathLike[str], *, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write safetensors weights, config and tokenizer into ``directory``, atomically.

        Always an ordinary Hugging Face directory: a LoRA policy is written merged
        (``W + (alpha / r) B A``; its adapter alone is :meth:`save_adapter`), an adapters-off
        reference as its base model. Everything is written into a temporary sibling directory
        first, which then replaces ``directory`` by rename, so a crash never leaves a
        half-written checkpoint. ``state_dict``: the weights to write instead of the model's own
        (the gathered full weights of a sharded FSDP/DeepSpeed run).
        """
        target = Path(directory)
        with atomic_directory(target) as staging, _quiet_progress_bars():
            if is_lora(self.model):
                save_plain(self.model, staging)
            elif state_dict is not None:
                self.model.save_pretrained(staging, state_dict=state_dict)
            else:
                self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
        return target

    def save_adapter(self, directory: str | os.PathLike[str], *, base_model: str | None = None) -> Path:
        """A LoRA policy's PEFT adapter directory (``PeftModel.from_pretrained(base, directory)``
        loads it; ``base_model`` is recorded as its base), atomically."""
        if not is_lora(self.model):
            raise ValueError("save_adapter needs a LoRA policy (lora.r > 0)")
        with _quiet_progress_bars():
            return save_adapter(self.model, directory, base_model=base_model)

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

    def prompt_ids(self, prompts: Sequence[Text], *, limit: int | None = None) -> list[list[int]]:
        """Prompt tokens as TRL 1.16 builds them (:mod:`prefkit.policy.chat`): a string after the
        tokenizer's own leading special tokens (a bos only where the tokenizer adds one, and not
        twice when the text already starts with it), a conversation through the chat template
        with the generation prompt (the template writes any bos). Each distinct prompt is
        tokenized once.

        ``limit`` keeps at most that many ids of a longer prompt: its leading special tokens and
        its last tokens, which is what truncation keeps, and only the end of a long text is
        tokenized (``prefkit.policy.bounded``). ``limit=max_length + 1`` keeps everything
        ``build_batch(max_length=...)`` can use and still tells an over-long row.
        """
        keys = [p if isinstance(p, str) else _conversation_key(_messages(p, "prompt")) for p in prompts]
        unique = list(dict.fromkeys(keys))
        first = dict(zip(keys, prompts))
        prefix, _ = self._special_affixes()
        texts = [key if isinstance(key, str) else self.render_prompt(first[key]) for key in unique]
        leads = [prefix if isinstance(key, str) else self._template_lead(text, limit) for key, text in zip(unique, texts)]
        encoded = self._encode_all(texts, limit, bounded.tail_ids)
        out = []
        for text, lead, ids in zip(texts, leads, encoded):
            windowed = limit is not None and bounded.is_long(text, limit)
            if lead and not (not windowed and ids[: len(lead)] == lead):
                ids = [*lead, *ids]
            if limit is not None and len(ids) > limit:
                keep = min(len(lead), limit)
                ids = [*ids[:keep], *ids[len(ids) - (limit - keep):]] if limit > keep else ids[:keep]
            out.append(list(ids))
        by_key = dict(zip(unique, out))
        return [list(by_key[k]) for k in keys]

    def response_ids(
        self,
        responses: Sequence[Text],
        *,
        prompts: Sequence[Text] | None = None,
        add_eos: bool = True,
        limit: int | None = None,
    ) -> list[list[int]]:
        """Completion tokens as TRL 1.16 builds them (:mod:`prefkit.policy.chat`).

        A string: its tokens plus the eos (unless the text ends with the eos text) and any
        special tokens the tokenizer appends; ``add_eos=False`` gives the bare tokens. A message
        list: what the chat template writes after the rendered prompt, so its text after the
        assistant's end token belongs to the completion; rendered after ``prompts[i]`` when given
        (exact for every template), else after a neutral user turn (exact for templates whose
        assistant turns do not depend on earlier turns, as ChatML's and Llama-3's).
        ``limit`` keeps the first ``limit`` ids, tokenizing only the start of a long string.
        """
        if prompts is not None:
            _same_length(prompts=prompts, responses=responses)
        out: list[list[int] | None] = [None] * len(responses)
        strings = [i for i, r in enumerate(responses) if isinstance(r, str)]
        if strings:
            texts = [str(responses[i]) for i in strings]
            _, suffix = self._special_affixes() if add_eos else ([], [])
            eos_text, eos_id = self.tokenizer.eos_token, self.tokenizer.eos_token_id
            for i, text, ids in zip(strings, texts, self._encode_all(texts, limit, bounded.head_ids)):
                ends = [int(eos_id)] if add_eos and eos_text is not None and not text.endswith(eos_text) else []
                out[i] = [*ids, *ends, *suffix]
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
        return [ids[:limit] if limit is not None else ids for ids in out if ids is not None]

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        """``prefkit.policy.chat.special_affixes`` of this policy's tokenizer, probed once."""
        if self._affixes is None:
            self._affixes = special_affixes(self.tokenizer)
        return self._affixes

    def _template_lead(self, text: str, limit: int | None) -> list[int]:
        """The special token a chat template writes first (its bos), which a windowed long prompt
        keeps as truncation would; ``[]`` when the text is tokenized whole or starts otherwise."""
        if limit is None or not bounded.is_long(text, limit):
            return []
        head = bounded.head_ids(self._encode_one, text, 1)
        return head if head and head[0] in self.tokenizer.all_special_ids else []

    def _encode_all(
        self, texts: list[str], limit: int | None, window: Callable[..., list[int]]
    ) -> list[list[int]]:
        """Token ids (no special tokens) per text: in one batch, except that with ``limit`` a
        long text gets only the ``limit`` ids ``window`` (head or tail) computes from a window."""
        if limit is not None and limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        long = [limit is not None and bounded.is_long(t, limit) for t in texts]
        short = [t for t, is_long in zip(texts, long) if not is_long]
        batch = iter(self.tokenizer(short, add_special_tokens=False)["input_ids"] if short else [])
        encode = self._encode_one
        return [window(encode, t, limit) if is_long else list(next(batch)) for t, is_long in zip(texts, long)]

    def _encode_one(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

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
            keep_first_prompt_token=first_token_rule(self.tokenizer),
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
            keep_first_prompt_token=first_token_rule(self.tokenizer),
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
            keep_first_prompt_token=first_token_rule(self.tokenizer),
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
        if max_prompt_length is not None and max_prompt_length <= 0:
            raise ValueError(f"max_prompt_length must be positive, got {max_prompt_length}")
        prompt_ids = self.prompt_ids(prompts, limit=max_prompt_length)  # the end, and the bos
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


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
"""Weight files that only ``torch.load``/``pickle`` can read (and that can run code when read)."""


def require_safetensors(directory: str | os.PathLike[str]) -> None:
    """A local model directory must hold safetensors weights: pickled ones are never loaded.

    Raises ``InputError`` naming the directory, with the one-time conversion to run in an
    environment that trusts the file, when only pickled weights (``pytorch_model.bin``, ...) are
    there. A directory with no weights at all is left for the loader to report.
    """
    folder = Path(directory)
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise InputError(
            f"only pickled weights here ({', '.join(pickled[:3])}{', ...' if len(pickled) > 3 else ''}); "
            "prefkit loads safetensors only, because unpickling can run code. Convert once, in an "
            "environment where you trust the file: AutoModelForCausalLM.from_pretrained(DIR)"
            ".save_pretrained(OUT) (transformers 5 writes safetensors; 4.x needs "
            "safe_serialization=True), then use OUT",
            file=str(directory),
        )


def build_tiny_checkpoint(
    directory: str | os.PathLike[str],
    texts: Iterable[str],
    tiny_cfg: TinyConfig,
    seed: int = 0,
) -> Path:
    """Build a tiny policy and save it as a normal Hugging Face directory (no download)."""
    return Policy.tiny(texts, tiny_cfg, seed=seed).save(directory)


def keep_end(ids: list[int], keep: int, keep_first: bool) -> list[int]:
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
