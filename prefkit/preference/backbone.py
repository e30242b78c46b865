"""Backbones of preference models: a Hugging Face causal LM or encoder, or an MLP on vectors.

A backbone turns rows of *segments* (the prompt, then one response for a scoring model or two
for a pairwise model) into one pooled vector per row, plus a prompt vector (for GPM's
prompt-dependent eigenvalues). Text rows are laid out as::

    [start] prompt [sep] response_1 [sep] (response_2 [sep])

``start`` is the tokenizer's bos (causal) or cls (encoder) token when it has one; ``sep`` is its
sep token, else its eos token. For a BERT encoder this is exactly its sentence-pair format; for a
causal LM the last ``sep`` is the eos token whose hidden state has read the whole row.

Pooling: ``last`` (the final ``sep``; the default for causal LMs), ``mean`` over every real
token (the default for encoders, as sentence-transformers), or ``cls`` (the first token).
The prompt vector is the hidden state of the ``sep`` after the prompt for a causal LM (it
depends on the prompt only) and the mean over the prompt's tokens for an encoder.

Padding is masked by ``attention_mask`` and positions are read from it, never from token ids, so
a causal tokenizer without a pad token pads with its eos token (recorded as ``pad="eos"``); a
tokenizer with neither pad nor eos, or a pad id outside the embedding table, is an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from torch import nn

from prefkit.data.lengths import LengthProblem, over_length
from prefkit.data.records import Text
from prefkit.errors import InputError
from prefkit.policy import bounded

BackboneKind = Literal["causal", "encoder"]
Pooling = Literal["last", "mean", "cls"]

_DTYPE_ARGUMENT = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars or load reports inside the block (loading a causal LM's
    base model reports its unused LM head as unexpected, which is intended here)."""
    from transformers.utils import logging as hf_logging

    enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if enabled:
            hf_logging.enable_progress_bar()


# -- text rendering ---------------------------------------------------------------------------


def _check_messages(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be a string or a non-empty list of messages, got {value!r}")
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(
            message.get("content"), str
        ):
            raise ValueError(f"{what}: every message needs string 'role' and 'content', got {message!r}")
    return value


def render_prompt(tokenizer: Any, prompt: Text) -> str:
    """A string as is; a conversation through the tokenizer's chat template (with the
    generation prompt), or as ``role: content`` lines when it has no template."""
    if isinstance(prompt, str):
        return prompt
    messages = _check_messages(prompt, "prompt")
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def render_response(response: Text) -> str:
    """A string as is; assistant messages joined by newlines (other roles are an error)."""
    if isinstance(response, str):
        return response
    messages = _check_messages(response, "response")
    for message in messages:
        if message["role"] != "assistant":
            raise ValueError(f"a response may hold only assistant messages, got role {message['role']!r}")
    return "\n".join(m["content"] for m in messages)


# -- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenBatch:
    """Right-padded rows; ``prompt_end[i]`` is the index of the ``sep`` after row i's prompt."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    prompt_end: torch.Tensor
    truncated: torch.Tensor

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            None if self.token_type_ids is None else self.token_type_ids.to(device),
            self.prompt_end.to(device),
            self.truncated,
        )

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def _waterfill(lengths: Sequence[int], budget: int) -> list[int]:
    """Keep as much of each response as fits: short ones whole, the rest share equally.
    Responses longer than the whole budget count as equally long (earlier ones first), so the
    cut does not depend on how far past the budget they go (nor on ids never tokenized)."""
    keep = list(lengths)
    if sum(keep) <= budget:
        return keep
    order = sorted(range(len(keep)), key=lambda i: min(keep[i], budget + 1))
    left, remaining = budget, len(keep)
    for i in order:
        share = left // remaining
        keep[i] = min(keep[i], share)
        left -= keep[i]
        remaining -= 1
    return keep


def pooled(hidden: torch.Tensor, batch: TokenBatch, pooling: Pooling) -> torch.Tensor:
    """``[N, T, H] -> [N, H]`` by the pooling rule (padding never counts)."""
    mask = batch.attention_mask
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class TextBackbone(nn.Module):
    """A Hugging Face base model (no LM head) and its tokenizer, read as in the module doc."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        kind: BackboneKind,
        pooling: Pooling | Literal["auto"] = "auto",
        max_length: int = 512,
    ) -> None:
        super().__init__()
        if kind not in ("causal", "encoder"):
            raise ValueError(f"backbone kind must be 'causal' or 'encoder', got {kind!r}")
        if pooling == "auto":
            pooling = "last" if kind == "causal" else "mean"
        if pooling not in ("last", "mean", "cls"):
            raise ValueError(f"pooling must be 'last', 'mean' or 'cls', got {pooling!r}")
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4, got {max_length}")
        self.model, self.tokenizer = model, tokenizer
        self.kind: BackboneKind = kind
        self.pooling: Pooling = pooling
        self.max_length = int(max_length)
        vocab = int(model.get_input_embeddings().num_embeddings)
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if self.sep_id is None:
            raise InputError(
                "the tokenizer has neither a sep nor an eos token, so segments cannot be separated; "
                "set 'eos_token' in tokenizer_config.json",
                field="eos_token",
            )
        start = tokenizer.bos_token_id if kind == "causal" else tokenizer.cls_token_id
        if start is None and kind == "causal" and tokenizer.cls_token_id is not None:
            start = tokenizer.cls_token_id
        self.start_ids = [] if start is None else [int(start)]
        pad, self.pad_source = tokenizer.pad_token_id, "tokenizer"
        if pad is None or not 0 <= pad < vocab:
            if kind == "encoder":
                raise InputError(
                    "the encoder's tokenizer has no usable pad token "
                    f"(pad id {pad!r}, vocabulary {vocab}); set 'pad_token' in tokenizer_config.json",
                    field="pad_token",
                )
            if tokenizer.eos_token_id is None or not 0 <= tokenizer.eos_token_id < vocab:
                raise InputError(
                    "the tokenizer has no usable pad token and no eos token to pad with",
                    field="pad_token",
                )
            pad, self.pad_source = tokenizer.eos_token_id, "eos"
        self.pad_id = int(pad)
        config = getattr(model, "config", None)
        self.type_vocab = int(getattr(config, "type_vocab_size", 0) or 0)
        self.hidden_size = int(config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- tokenizing ------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], *, keep: Literal["all", "start", "end"] = "all") -> list[list[int]]:
        """Token ids without special tokens; each distinct text tokenized once. ``keep="start"``
        (``"end"``) keeps only the first (last) ``max_length + 1`` ids, tokenizing only that part
        of a long text (``prefkit.policy.bounded``); that is all :meth:`collate` can use."""
        unique = list(dict.fromkeys(texts))
        limit = self.max_length + 1
        long = [keep != "all" and bounded.is_long(t, limit) for t in unique]
        short = [t for t, is_long in zip(unique, long) if not is_long]
        batch = iter(self.tokenizer(short, add_special_tokens=False)["input_ids"] if short else [])
        window = bounded.head_ids if keep == "start" else bounded.tail_ids
        ids = [window(self._encode, t, limit) if is_long else list(next(batch)) for t, is_long in zip(unique, long)]
        if keep != "all":
            ids = [i[:limit] if keep == "start" else i[max(0, len(i) - limit):] for i in ids]
        by_text = dict(zip(unique, ids))
        return [list(by_text[t]) for t in texts]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prepare(self, prompts: Sequence[Text], *responses: Sequence[Text]) -> list[list[list[int]]]:
        """Per row, the token ids of each segment: ``[prompt, response_1, ...]``; a segment keeps
        at most ``max_length + 1`` ids (the prompt's end, a response's start), which leaves every
        :meth:`collate` result unchanged and bounds the work on a huge row."""
        columns = [self.tokenize([render_prompt(self.tokenizer, p) for p in prompts], keep="end")]
        if self.start_ids:  # a chat template that writes the start token itself: not twice
            columns[0] = [ids[len(self.start_ids):] if ids[: len(self.start_ids)] == self.start_ids else ids
                          for ids in columns[0]]
        for column in responses:
            if len(column) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(column)} responses; they must match")
            columns.append(self.tokenize([render_response(r) for r in column], keep="start"))
        return [list(row) for row in zip(*columns)]

    def length_problem(
        self, segments: Sequence[Sequence[int]], names: Sequence[str], *, together: bool
    ) -> LengthProblem | None:
        """Whether a row of prepared segments (``[prompt, response_1, ...]``, as :meth:`prepare`
        returns them) is over ``max_length``, by the rule ``prefkit validate`` uses; ``names`` are
        the responses' fields. ``together``: the responses share one sequence (a pairwise model)
        instead of each following the prompt on its own (a scoring model)."""
        prompt = len(self.start_ids) + len(segments[0]) + 1  # [start] prompt [sep]
        responses = [(name, len(r) + 1) for name, r in zip(names, segments[1:])]  # response [sep]
        capped = any(len(s) == self.max_length + 1 for s in segments)
        if not together:
            return over_length(prompt, responses, self.max_length, lower_bound=capped)
        total = 0
        for k, (name, tokens) in enumerate(responses):  # the response whose turn overflows the row
            total += tokens
            if prompt + total > self.max_length or k == len(responses) - 1:
                return over_length(prompt, [(name, total)], self.max_length, lower_bound=capped,
                                   sequence=" + ".join(["prompt", *names[: k + 1]]))
        return None

    def row_length(self, row: Sequence[Sequence[int]]) -> int:
        """Tokens of a prepared row once laid out, before truncation."""
        return len(self.start_ids) + sum(len(s) for s in row) + len(row)

    def freeze_body(self) -> None:
        """Train the head only (``rm.freeze_backbone``): no gradients for the backbone."""
        self.requires_grad_(False)

    def collate(self, rows: Sequence[Sequence[Sequence[int]]], *, truncation: str = "truncate") -> TokenBatch:
        """Lay out and right-pad rows of segments (see the module doc); long rows keep the end
        of the prompt and the start of each response (``truncated`` flags them)."""
        built, prompt_end, truncated, types = [], [], [], []
        for index, segments in enumerate(rows):
            prompt, responses = list(segments[0]), [list(r) for r in segments[1:]]
            specials = len(self.start_ids) + 1 + len(responses)
            available = self.max_length - specials
            total = len(prompt) + sum(len(r) for r in responses)
            cut = total > available
            if cut:
                if truncation == "error":
                    raise InputError(
                        f"row {index}: {total + specials} tokens exceed max_length={self.max_length}",
                        field="max_length",
                    )
                keep_prompt = min(len(prompt), max(available // (len(responses) + 1),
                                                   available - sum(len(r) for r in responses)))
                prompt = prompt[len(prompt) - keep_prompt :] if keep_prompt else []
                kept = _waterfill([len(r) for r in responses], available - keep_prompt)
                responses = [r[:k] for r, k in zip(responses, kept)]
            ids = [*self.start_ids, *prompt, self.sep_id]
            prompt_end.append(len(ids) - 1)
            row_types = [0] * len(ids)
            for response in responses:
                ids += [*response, self.sep_id]
                row_types += [1] * (len(response) + 1)
            built.append(ids)
            types.append(row_types)
            truncated.append(cut)
        width = max((len(r) for r in built), default=0)
        input_ids = torch.full((len(built), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(built), width), dtype=torch.long)
        token_types = torch.zeros((len(built), width), dtype=torch.long)
        for i, (ids, row_types) in enumerate(zip(built, types)):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[i, : len(ids)] = 1
            token_types[i, : len(ids)] = torch.tensor(row_types, dtype=torch.long)
        return TokenBatch(
            input_ids,
            attention,
            token_types if self.type_vocab >= 2 else None,
            torch.tensor(prompt_end, dtype=torch.long),
            torch.tensor(truncated, dtype=torch.bool),
        )

    def batches(
        self, rows: Sequence[Sequence[Sequence[int]]], batch_size: int
    ) -> Iterator[tuple[list[int], TokenBatch]]:
        """Distinct rows only, sorted by length (little padding), in chunks of ``batch_size``;
        yields ``(positions, batch)`` where ``positions[j]`` lists the input rows of batch row j."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        where: dict[tuple, list[int]] = {}
        for i, segments in enumerate(rows):
            where.setdefault(tuple(tuple(s) for s in segments), []).append(i)
        keys = sorted(where, key=lambda k: sum(len(s) for s in k))
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            yield [where[k] for k in chunk], self.collate(chunk)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled [N, H], prompt [N, H])`` hidden states."""
        batch = batch.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.token_type_ids is not None:
            kwargs["token_type_ids"] = batch.token_type_ids
        hidden = self.model(**kwargs).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.kind == "causal":
            prompt = hidden[rows, batch.prompt_end]
        else:
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            in_prompt = (positions[None, :] <= batch.prompt_end[:, None]).to(hidden.dtype).unsqueeze(-1)
            prompt = (hidden * in_prompt).sum(1) / in_prompt.sum(1)
        return pooled(hidden, batch, self.pooling), prompt

    # -- saving and loading ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.kind,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "hidden_size": self.hidden_size,
            "pad": self.pad_source,
        }

    def save(self, directory: Path) -> None:
        """``save_pretrained`` of the model and its tokenizer; a LoRA backbone is written merged
        (an ordinary Hugging Face directory, the same format as without LoRA)."""
        from prefkit.policy.lora import is_lora, save_plain

        with quiet_transformers():
            if is_lora(self.model):
                save_plain(self.model, directory)
            else:
                self.model.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)


class FeatureBackbone(nn.Module):
    """An MLP on feature vectors: the same heads, losses and training on vectors instead of text.

    A response is a float vector ``[d_r]``, a prompt a vector ``[d_p]`` (``d_p`` may be 0). A row
    is the concatenation ``[prompt, response_1, (response_2)]`` (``in_dim`` must match); the
    prompt vector is the MLP of the prompt alone (responses zeroed), for GPM's prompt
    eigenvalues. ``prepare`` takes ``[N, d]`` tensors (or lists of ``[d]`` rows).
    """

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 2, *, prompt_dim: int = 0) -> None:
        super().__init__()
        if in_dim <= 0 or hidden <= 0 or layers <= 0 or not 0 <= prompt_dim < in_dim:
            raise ValueError("in_dim, hidden and layers must be positive and 0 <= prompt_dim < in_dim")
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        self.net = nn.Sequential(*blocks)
        self.in_dim, self.hidden_size, self.prompt_dim = in_dim, hidden, prompt_dim
        self.kind = "features"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def _column(values: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if torch.is_tensor(values):
            return values.float()
        return torch.stack(list(values)).float() if len(values) else torch.zeros(0, 0)

    def prepare(self, prompts: torch.Tensor | Sequence[torch.Tensor], *responses: Any) -> list[list[torch.Tensor]]:
        columns = [self._column(prompts), *(self._column(r) for r in responses)]
        n = columns[0].shape[0]
        if any(c.shape[0] != n for c in columns):
            raise ValueError("prompts and responses must have the same number of rows")
        return [list(row) for row in zip(*columns)]

    def collate(self, rows: Sequence[Sequence[torch.Tensor]], **_: Any) -> torch.Tensor:
        x = torch.stack([torch.cat(list(segments)) for segments in rows])
        if x.shape[1] != self.in_dim:
            raise ValueError(f"feature rows have {x.shape[1]} values, the backbone expects {self.in_dim}")
        return x

    def batches(self, rows: Sequence[Sequence[torch.Tensor]], batch_size: int) -> Iterator[tuple[list[list[int]], torch.Tensor]]:
        for start in range(0, len(rows), batch_size):
            index = list(range(start, min(len(rows), start + batch_size)))
            yield [[i] for i in index], self.collate([rows[i] for i in index])

    def freeze_body(self) -> None:
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device)
        prompt_only = torch.zeros_like(x)
        prompt_only[:, : self.prompt_dim] = x[:, : self.prompt_dim]
        return self.net(x), self.net(prompt_only)

    def describe(self) -> dict[str, Any]:
        return {"backbone": "features", "in_dim": self.in_dim, "hidden_size": self.hidden_size,
                "prompt_dim": self.prompt_dim}


# -- building ---------------------------------------------------------------------------------


def detect_backbone_kind(config: Any) -> BackboneKind:
    """``encoder`` for masked-LM families (BERT, RoBERTa, DeBERTa, ...), ``causal`` for decoder
    LMs; encoder-decoder models are refused."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        raise InputError(
            f"{config.model_type} is an encoder-decoder model; preference models need a causal LM or an encoder",
            field="model",
        )
    model_type = getattr(config, "model_type", "")
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "causal"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise InputError(
        f"cannot tell whether model type {model_type!r} is a causal LM or an encoder; "
        "set rm.backbone=causal or rm.backbone=encoder",
        field="rm.backbone",
    )


def load_backbone(
    path: str | os.PathLike[str],
    *,
    kind: BackboneKind | Literal["auto"] = "auto",
    pooling: Pooling | Literal["auto"] = "auto",
    max_length: int = 512,
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    quantization_config: Any | None = None,
) -> TextBackbone:
    """A local Hugging Face checkpoint as a backbone: the base model without its LM head.

    Only safetensors weights are read (nothing is unpickled); remote code runs only with
    ``trust_remote_code=True``. ``quantization_config`` (bitsandbytes, for QLoRA) loads the
    weights quantized straight onto ``device``.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    source = Path(path)
    if not source.is_dir() or not (source / "config.json").is_file():
        raise InputError("not a Hugging Face model directory (no config.json)", file=str(path))
    if not any(source.glob("*.safetensors")):
        raise InputError(
            "no .safetensors weights here; prefkit does not unpickle .bin checkpoints "
            "(convert with save_pretrained(..., safe_serialization=True))",
            file=str(path),
        )
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            resolved = detect_backbone_kind(config) if kind == "auto" else kind
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            placement: dict[str, Any] = {}
            if quantization_config is not None:
                from prefkit.policy.lora import device_map

                placement = {"quantization_config": quantization_config,
                             "device_map": device_map(torch.device(device))}
            model = AutoModel.from_pretrained(
                source, trust_remote_code=trust_remote_code, use_safetensors=True,
                **{_DTYPE_ARGUMENT: torch.float32}, **placement,
            )
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"cannot load a backbone from here: {error}", file=str(path)) from error
    return TextBackbone(model if placement else model.to(device), tokenizer, kind=resolved, pooling=pooling,
                        max_length=max_length)


def tiny_backbone(
    texts: Sequence[str],
    tiny_cfg: Any,
    *,
    seed: int = 0,
    pooling: Pooling | Literal["auto"] = "auto",
    max_length: int = 512,
    device: str | torch.device = "cpu",
) -> TextBackbone:
    """The built-in tiny Llama-architecture preset (``--model tiny``) without its LM head, with a
    word-level tokenizer fitted on ``texts``.

    The ``<unk>`` embedding starts at zero. The tokenizer knows only the words of ``texts``, so
    every word first seen at evaluation is ``<unk>``; a random ``<unk>`` vector that training
    never updated is the same offset added to every response with unseen words, and for GPM
    such a shared offset ``c`` adds the scalar term ``(v_a - v_b)ᵀ R c`` that can hide the
    cycle. A zero vector stays zero through the first RMSNorm, so an unknown word contributes no
    value at the first layer. When the training texts themselves have ``<unk>`` (more words than
    ``tiny.max_vocab``) it trains from zero like any embedding.
    """
    from prefkit.policy import Policy

    if not texts:
        raise InputError("the tiny preset fits its tokenizer on the data, and the data has no text")
    policy = Policy.tiny(texts, tiny_cfg, seed=seed, device=device)
    base = policy.model.model
    base.config.architectures = ["LlamaModel"]
    with torch.no_grad():
        base.get_input_embeddings().weight[policy.tokenizer.unk_token_id] = 0.0
    return TextBackbone(base, policy.tokenizer, kind="causal", pooling=pooling,
                        max_length=min(max_length, tiny_cfg.max_position_embeddings))


def check_lengths(backbone: Any, records: Sequence[Any], *, pairwise: bool, truncation: str) -> int:
    """Rows of ``records`` (pairs) longer than the backbone's ``max_length``, counted; with
    ``truncation="error"`` the first is an ``InputError`` naming its file, line and field, by the
    rule and with the message of ``prefkit validate`` (:func:`prefkit.data.over_length`). A
    scoring model (bt, gpm) reads prompt + chosen and prompt + rejected; a pairwise one (pairpm)
    the prompt and both responses in one row. Feature backbones have no lengths (0)."""
    if not isinstance(backbone, TextBackbone):
        return 0
    rows = backbone.prepare([r.prompt for r in records], [r.chosen for r in records],
                            [r.rejected for r in records])
    over = 0
    for record, segments in zip(records, rows):
        problem = backbone.length_problem(segments, ("chosen", "rejected"), together=pairwise)
        if problem is None:
            continue
        over += 1
        if truncation == "error":
            file, line = record.source if record.source else (None, None)
            raise InputError(problem.reason, file=file, line=line, field=problem.field)
    return over
