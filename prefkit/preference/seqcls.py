"""Bradley-Terry reward models as standard ``AutoModelForSequenceClassification`` checkpoints.

A Bradley-Terry reward model whose backbone is a causal LM is trained and saved as transformers'
own ``*ForSequenceClassification`` with one label (``num_labels=1``), the format TRL's
``RewardTrainer`` writes and TRL, OpenRLHF-style and RewardBench-style scripts read: the score
head lives inside ``model.safetensors`` (``score.weight``), the tokenizer and chat template
beside it. ``AutoModelForSequenceClassification.from_pretrained(DIR)`` loads it with no missing
or unexpected weights, and its logits are prefkit's rewards.

Inputs are laid out as TRL 1.16's ``RewardTrainer`` tokenizes them (``prefkit.policy.chat``): a
string pair is ``tokenizer(prompt + response + eos)`` (bos where the tokenizer adds it); a
conversation is the chat template of ``prompt + response``. The reward is the logit at the last
token that is not the pad token (transformers' rule, applied by the model itself). Any such
checkpoint with one label (a TRL ``RewardTrainer`` output) loads with
:func:`load_sequence_classifier`; an encoder checkpoint (``BertForSequenceClassification``, a
cross-encoder) reads ``[CLS] prompt [SEP] response [SEP]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefkit.data.lengths import LengthProblem, over_length
from prefkit.data.records import Text
from prefkit.errors import InputError
from prefkit.policy import bounded
from prefkit.preference.backbone import (
    TextBackbone,
    TokenBatch,
    detect_backbone_kind,
    quiet_transformers,
)

CLASSIFIERS = ("score", "classifier")
"""Attribute names transformers gives the classification layer (causal LMs: ``score``)."""
DEFAULT_MAX_LENGTH = 1024
"""Tokens per row for a checkpoint without prefkit's manifest (TRL's ``RewardConfig.max_length``)."""


def _architectures(path: Path) -> list[str]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return list(config.get("architectures") or [])


def is_sequence_classifier_dir(path: str | os.PathLike[str]) -> bool:
    """A Hugging Face directory whose architecture is a ``*ForSequenceClassification``."""
    return any(a.endswith("ForSequenceClassification") for a in _architectures(Path(path)))


def classifier_of(model: nn.Module) -> tuple[str, nn.Module]:
    """``(attribute name, module)`` of a sequence classifier's classification layer."""
    for name in CLASSIFIERS:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return name, module
    raise InputError(
        f"{type(model).__name__} has no classification layer named {' or '.join(CLASSIFIERS)}",
        field="model",
    )


class ScoreHead(nn.Module):
    """The reward head of a sequence classifier: the classifier's logit is the reward (it lives
    in the backbone, inside the transformers model); ``logit(a, b) = r_a − r_b``."""

    kind = "bt"

    def __init__(self, dropout: nn.Dropout) -> None:
        super().__init__()
        self.dropout = dropout

    @property
    def embedding_size(self) -> int:
        return 1

    def forward(self, hidden: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return hidden

    def logits(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return e_a[..., 0] - e_b[..., 0]

    def config(self) -> dict:
        return {"dim": 1}


class SequenceClassifierBackbone(TextBackbone):
    """A ``*ForSequenceClassification`` model (one label) and its tokenizer as a preference-model
    backbone: ``forward`` returns the logit ``[N, 1]``; ``rm.dropout`` is applied to the hidden
    states entering the classification layer during training (a forward pre-hook, so the saved
    weights and the module tree stay transformers' own)."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, kind: str, max_length: int, dropout: float = 0.0) -> None:
        config = model.config
        if int(getattr(config, "num_labels", 0)) != 1:
            labels = getattr(config, "id2label", None)
            raise InputError(
                f"a sequence classifier with {config.num_labels} labels ({labels}) is not a reward model: a "
                "reward needs exactly one label (num_labels=1), as TRL's RewardTrainer writes",
                field="num_labels",
            )
        pad = getattr(config, "pad_token_id", None)
        super().__init__(model, tokenizer, kind=kind, pooling="cls" if kind == "encoder" else "last",
                         max_length=max_length)
        if pad is None or not 0 <= pad < int(model.get_input_embeddings().num_embeddings):
            config.pad_token_id = self.pad_id  # transformers pools at the last token that is not pad
        self.pad_id = int(config.pad_token_id)
        self.layout = "joined" if kind == "causal" else "segments"
        self.classifier_name, classifier = classifier_of(model)
        self.dropout = nn.Dropout(dropout)
        classifier.register_forward_pre_hook(lambda _module, args: (self.dropout(args[0]), *args[1:]))
        self.hidden_size = 1

    @property
    def head_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes (relative to this backbone) of the classification layer."""
        return (f"model.{self.classifier_name}.",)

    def freeze_body(self) -> None:
        """Train the classification layer only (``rm.freeze_backbone``)."""
        self.requires_grad_(False)
        getattr(self.model, self.classifier_name).requires_grad_(True)

    # -- rows ---------------------------------------------------------------------------------

    def prepare(self, prompts: Sequence[Text], *responses: Sequence[Text]) -> list[list[list[int]]]:
        """Per row ``[prompt_ids, response_ids, ...]``: TRL's tokenization (causal), so that
        ``prompt_ids + response_ids`` is ``tokenizer(prompt + response + eos)`` or the template
        of the conversation (the prompt is cut where the row's responses first differ from it,
        TRL's rule); the encoder layout of :class:`TextBackbone` otherwise."""
        if self.layout == "segments":
            return super().prepare(prompts, *responses)
        from prefkit.policy.chat import prompt_completion_ids

        for column in responses:
            if len(column) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(column)} responses; they must match")
        rows = []
        limit = self.max_length + 1
        for i, prompt in enumerate(prompts):
            row = [column[i] for column in responses]
            if any(isinstance(prompt, str) != isinstance(r, str) for r in row):
                raise ValueError("a prompt and its responses must all be strings or all message lists")
            if isinstance(prompt, str) and any(bounded.is_long(t, limit) for t in [prompt, *row]):
                rows.append(self._bounded_row(prompt, row))  # type: ignore[arg-type]
                continue
            prompt_ids, completions = prompt_completion_ids(self.tokenizer, prompt, row)
            rows.append([prompt_ids, *completions])
        return rows

    def _bounded_row(self, prompt: str, responses: Sequence[str]) -> list[list[int]]:
        """A row with a text too long for ``max_length``: the prompt's end after the tokenizer's
        leading special tokens and each response's start then its eos, tokenized separately
        and only as far as truncation can keep (``prefkit.policy.bounded``), so a huge row
        costs memory bounded by ``max_length``. Separate tokenization equals TRL's joined one
        whenever a response starts on a token boundary (e.g. with a leading space)."""
        from prefkit.policy.chat import special_affixes

        prefix, suffix = special_affixes(self.tokenizer)
        prompt_ids = [*prefix, *self.tokenize([prompt], keep="end")[0]]
        eos_text, eos_id = self.tokenizer.eos_token, self.tokenizer.eos_token_id
        completions = []
        for text in responses:
            ids = self.tokenize([text], keep="start")[0]
            ends = [int(eos_id)] if eos_text is not None and not text.endswith(eos_text) else []
            completions.append([*ids, *ends, *suffix])
        return [prompt_ids, *completions]

    def row_length(self, row: Sequence[Sequence[int]]) -> int:
        if self.layout == "segments":
            return super().row_length(row)
        return sum(len(s) for s in row)

    def length_problem(self, segments: Sequence[Sequence[int]], names: Sequence[str], *,
                       together: bool) -> LengthProblem | None:
        """As :meth:`TextBackbone.length_problem`, for the joined layout: each response follows
        the prompt with no separator (TRL's sequences)."""
        if self.layout == "segments":
            return super().length_problem(segments, names, together=together)
        responses = [(name, len(r)) for name, r in zip(names, segments[1:])]
        return over_length(len(segments[0]), responses, self.max_length)

    def collate(self, rows: Sequence[Sequence[Sequence[int]]], *, truncation: str = "truncate") -> TokenBatch:
        """Right-padded rows; a long row keeps the prompt's first token (a bos the tokenizer
        added), the end of the prompt and the start of the response."""
        if self.layout == "segments":
            return super().collate(rows, truncation=truncation)
        from prefkit.policy.chat import special_affixes

        prefix = len(special_affixes(self.tokenizer)[0])
        built, ends, truncated = [], [], []
        for index, (prompt, response) in enumerate(rows):
            prompt, response = list(prompt), list(response)
            cut = len(prompt) + len(response) > self.max_length
            if cut:
                if truncation == "error":
                    raise InputError(f"row {index}: {len(prompt) + len(response)} tokens exceed "
                                     f"max_length={self.max_length}", field="max_length")
                keep = min(len(prompt), max(self.max_length // 2, self.max_length - len(response)))
                head = prompt[: min(prefix, keep)]
                prompt = head + prompt[len(prompt) - (keep - len(head)):] if keep > len(head) else head
                response = response[: self.max_length - len(prompt)]
            built.append(prompt + response)
            ends.append(max(0, len(prompt) - 1))
            truncated.append(cut)
        width = max((len(r) for r in built), default=0)
        input_ids = torch.full((len(built), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(built), width), dtype=torch.long)
        for i, ids in enumerate(built):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[i, : len(ids)] = 1
        return TokenBatch(input_ids, attention, None, torch.tensor(ends, dtype=torch.long),
                          torch.tensor(truncated, dtype=torch.bool))

    # -- forward --------------------------------------------------------------------------------

    def forward(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, 1], logits [N, 1])``: transformers' own forward and pooling."""
        batch = batch.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.token_type_ids is not None:
            kwargs["token_type_ids"] = batch.token_type_ids
        logits = self.model(**kwargs).logits
        return logits, logits

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": "sequence_classification", "layout": self.layout,
                "pooling": "last_non_pad" if self.layout == "joined" else "classifier"}


def from_causal_lm(causal_lm: nn.Module, tokenizer: Any, *, seed: int, max_length: int,
                   dropout: float) -> SequenceClassifierBackbone:
    """A causal LM (its weights) as ``*ForSequenceClassification`` with a new one-label head
    initialised from ``seed`` (transformers' initialisation)."""
    from transformers import AutoModelForSequenceClassification

    config = type(causal_lm.config).from_dict(causal_lm.config.to_dict())
    config.num_labels = 1
    config.architectures = None
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    base.load_state_dict(getattr(causal_lm, causal_lm.base_model_prefix).state_dict(), strict=True)
    model.config.architectures = [type(model).__name__]
    return SequenceClassifierBackbone(model.to(next(causal_lm.parameters()).device), tokenizer, kind="causal",
                                      max_length=max_length, dropout=dropout)


def load_sequence_classifier(
    path: str | os.PathLike[str],
    *,
    max_length: int | None = None,
    dropout: float = 0.0,
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    num_labels: int | None = None,
    seed: int = 0,
) -> SequenceClassifierBackbone:
    """A local directory as a one-label sequence classifier: a ``*ForSequenceClassification``
    checkpoint (TRL's ``RewardTrainer`` output, prefkit's own BT models), or, with
    ``num_labels=1``, a causal LM whose new score head is initialised from ``seed``.

    Only safetensors are read; remote code runs only with ``trust_remote_code=True``. More than
    one label is an :class:`InputError` (a reward is one number).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    source = Path(path)
    if not (source / "config.json").is_file():
        raise InputError("not a Hugging Face model directory (no config.json)", file=str(path))
    if not any(source.glob("*.safetensors")):
        raise InputError("no .safetensors weights here; prefkit does not unpickle .bin checkpoints", file=str(path))
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            if num_labels is not None:
                config.num_labels = num_labels
            elif int(getattr(config, "num_labels", 1)) != 1:
                raise InputError(
                    f"a sequence classifier with {config.num_labels} labels ({getattr(config, 'id2label', None)}) "
                    "is not a reward model: a reward needs exactly one label (num_labels=1), as TRL's "
                    "RewardTrainer writes",
                    file=str(path), field="num_labels",
                )
            kind = detect_backbone_kind(config)
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForSequenceClassification.from_pretrained(
                    source, config=config, trust_remote_code=trust_remote_code, use_safetensors=True,
                    dtype=torch.float32,
                )
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"cannot load a sequence classifier from here: {error}", file=str(path)) from error
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = int(getattr(model.config, "max_position_embeddings", 0) or DEFAULT_MAX_LENGTH)
    model.config.architectures = [type(model).__name__]
    return SequenceClassifierBackbone(model.to(device), tokenizer, kind=kind,
                                      max_length=min(max_length or DEFAULT_MAX_LENGTH, limit), dropout=dropout)


def uses_standard_format(model: str, rm: Any, *, trust_remote_code: bool = False) -> bool:
    """Whether ``prefkit rm train`` builds this model as a ``*ForSequenceClassification``: a
    Bradley-Terry model (``rm.kind=bt``) on a causal LM (the tiny preset or a causal checkpoint)
    pooled at its last token (``rm.pooling`` auto or last). GPM, pairpm, encoders (mean pooling,
    as sentence-transformers) and mean/cls pooling keep prefkit's own format."""
    if rm.kind != "bt" or rm.pooling not in ("auto", "last") or rm.backbone == "encoder":
        return False
    if model == "tiny" or rm.backbone == "causal":
        return True
    from transformers import AutoConfig

    if not (Path(model) / "config.json").is_file():
        raise InputError("not a Hugging Face model directory (no config.json)", file=str(model))
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the model's config: {error}", file=str(model)) from error
    return detect_backbone_kind(config) == "causal"


def reward_model_for_training(
    model: str,
    texts: Sequence[str],
    tiny_cfg: Any,
    *,
    seed: int,
    max_length: int,
    dropout: float,
    freeze_backbone: bool,
    device: torch.device,
    trust_remote_code: bool = False,
) -> Any:
    """A Bradley-Terry ``RewardModel`` in the standard format, ready to train: the tiny preset
    (a Llama built from ``tiny_cfg``, tokenizer fitted on ``texts``) or a local causal LM or
    sequence-classifier checkpoint, with a one-label score head initialised from ``seed``."""
    from prefkit.preference.models import RewardModel

    if model == "tiny":
        from prefkit.policy import Policy

        if not texts:
            raise InputError("the tiny preset fits its tokenizer on the data, and the data has no text")
        policy = Policy.tiny(texts, tiny_cfg, seed=seed, device=device)
        backbone = from_causal_lm(policy.model, policy.tokenizer, seed=seed, dropout=dropout,
                                  max_length=min(max_length, tiny_cfg.max_position_embeddings))
    else:
        backbone = load_sequence_classifier(
            model, max_length=max_length, dropout=dropout, device=device, trust_remote_code=trust_remote_code,
            num_labels=None if is_sequence_classifier_dir(model) else 1, seed=seed,
        )
    if freeze_backbone:
        backbone.freeze_body()
    return RewardModel(backbone, ScoreHead(backbone.dropout)).to(device)
