"""The run configuration schema: one typed dataclass tree shared by every command.

Resolution order: dataclass defaults <- ``--config FILE.yaml`` <- dotted ``key=value``
overrides on the command line. The resolved config is written as ``config.yaml`` beside every
output. Field names used by code outside this repository (keep them stable): ``tiny.hidden_size``,
``tiny.layers``, ``tiny.heads``, ``train.batch_size``, ``train.max_length``, ``train.steps``,
``train.lr``, ``loss.beta``, ``seed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal


def absolute_path(value: str | None) -> str | None:
    """``value`` as an absolute path when it names an existing local file or directory (so a
    saved ``config.yaml`` works from any directory); anything else (``tiny``, a hub name, a
    missing path that the reader will report) is kept as given."""
    if value is None or value == "" or not os.path.exists(value):
        return value
    return os.path.abspath(value)


def _absolute_field(obj: Any, name: str, *, prefix: str = "", always: bool = False) -> None:
    """Rewrite a frozen dataclass's path field in place (``__post_init__`` only)."""
    value = getattr(obj, name)
    if not isinstance(value, str) or not value.startswith(prefix):
        return
    rest = value[len(prefix):]
    resolved = os.path.abspath(rest) if always and rest else absolute_path(rest)
    object.__setattr__(obj, name, prefix + resolved if resolved is not None else value)


@dataclass(frozen=True)
class TinyConfig:
    """The built-in tiny Llama-architecture policy, built from this config (``--model tiny``)."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int | None = None
    """Key/value heads (grouped-query attention); ``None`` means ``heads``."""
    intermediate_size: int | None = None
    """MLP width; ``None`` means ``4 * hidden_size``."""
    max_vocab: int = 4096
    """Cap on the word-level tokenizer fitted on the data (most frequent words kept)."""
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 1024

    def __post_init__(self) -> None:
        for name in ("hidden_size", "layers", "heads", "max_vocab", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"tiny.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            raise ValueError(
                f"tiny.hidden_size ({self.hidden_size}) must be divisible by tiny.heads ({self.heads})"
            )


DEFAULT_STEPS = 200
"""``train.steps``'s default: the value that means "not set" when ``train.epochs`` is given."""


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop (owned by ``prefkit.engine``)."""

    steps: int = DEFAULT_STEPS
    """Optimizer steps (see ``epochs`` for a length in passes over the data)."""
    batch_size: int = 8
    """Examples (pairs, lists or sequences) per optimizer step."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; must divide ``batch_size``."""
    lr: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    """Warm-up as a fraction of the run's optimizer steps (``warmup_steps`` or this, not both)."""
    epochs: float | None = None
    """Length in passes over the training examples instead of ``steps``: the run takes
    ``ceil(epochs * examples / batch_size)`` optimizer steps. Set it or ``steps``, not both
    (``steps`` must then stay at its default, 200; both set is refused). Preference-model and
    offline policy runs; online methods count rounds with ``online.epochs`` instead."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value; ``null`` disables clipping."""
    max_length: int = 512
    """Tokens per sequence (prompt plus response)."""
    max_prompt_length: int | None = None
    """Prompt tokens kept (from the end) when a row is too long; ``None`` means half of max_length."""
    truncation: Literal["truncate", "error"] = "truncate"
    """Rows longer than ``max_length``: keep the prompt's end and the response's start (counted
    and reported), or stop with an error naming file and line."""
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int | None = None
    """CPU threads for torch; ``None`` leaves torch's default."""
    log_every: int = 10
    eval_every: int = 0
    """Evaluate every N steps (0: only at the end)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    shuffle: bool = True
    ref_cache: bool = True
    """Compute reference log-probs once and cache them on disk (keyed by data and model)."""
    gradient_checkpointing: bool = False
    bucket_overhead: int = 128
    """Split a micro-batch into length buckets when a forward call costs less than this many
    padded token positions (0: one padded forward). Exact: only padding changes."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.grad_accum ({self.grad_accum}) must divide train.batch_size ({self.batch_size})"
            )
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_ratio and self.warmup_steps:
            raise ValueError("train.warmup_steps and train.warmup_ratio are both set: give one")
        if self.epochs is not None:
            if not self.epochs > 0:
                raise ValueError(f"train.epochs must be positive, got {self.epochs}")
            if self.steps != DEFAULT_STEPS:
                raise ValueError(
                    f"train.epochs ({self.epochs}) and train.steps ({self.steps}) are both set: give one "
                    "(epochs sets the number of steps from the data size)"
                )

    def steps_for(self, examples: int) -> TrainConfig:
        """This config with ``epochs`` turned into ``steps`` for ``examples`` training examples
        (unchanged when ``epochs`` is not set)."""
        import math
        from dataclasses import replace

        if self.epochs is None:
            return self
        if examples <= 0:
            raise ValueError("train.epochs needs at least one training example")
        return replace(self, epochs=None, steps=max(1, math.ceil(self.epochs * examples / self.batch_size)))


@dataclass(frozen=True)
class LossConfig:
    """Which loss the method minimises; validated against ``prefkit.losses.LOSSES``."""

    name: str = ""
    """Registry name; empty means the method's own loss."""
    beta: float | None = None
    """KL strength (or the loss's temperature); ``None`` means the loss's default."""
    params: dict[str, Any] = field(default_factory=dict)
    """Other keyword arguments of the loss function, checked against its signature."""
    weights: dict[str, float] = field(default_factory=dict)
    """Weighted combination of several registry losses (MPO style); empty means ``name`` alone."""
    nll_weight: float = 0.0
    """Weight of an NLL term on the chosen response (RPO)."""


@dataclass(frozen=True)
class DataConfig:
    """Where training data comes from when it is a file (``--data FILE``)."""

    path: str | None = None
    """A JSONL or Parquet file, a ``datasets`` ``save_to_disk`` directory (a Dataset or a
    DatasetDict), or a Hugging Face hub dataset name (when the machine has network)."""
    eval_path: str | None = None
    """Held-out data in any of the forms of ``path``; unset: ``eval_split`` of ``path``."""
    skip_invalid: bool = False
    """Skip malformed rows (counted and reported) instead of stopping at the first one."""
    split: str | None = None
    """The split to train on when ``path`` is a DatasetDict or a hub dataset (``None``:
    ``train``); an error for a single file or Dataset."""
    eval_split: str | None = None
    """The held-out split: of ``eval_path`` when given, else of ``path`` (``None``: ``test``
    when the DatasetDict has one, else no held-out data)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column map for files with other names: ``{prefkit column: file column}``, e.g.
    ``data.columns.chosen=answer_good`` (prefkit columns: see ``prefkit.data.COLUMNS``)."""

    def __post_init__(self) -> None:
        from prefkit.data.columns import check_column_map

        check_column_map(self.columns)
        for name in ("split", "eval_split"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"data.{name} must be a split name, got {value!r}")
        _absolute_field(self, "path")
        _absolute_field(self, "eval_path")


@dataclass(frozen=True)
class OnlineConfig:
    """The online sample -> judge -> update loop (``prefkit.engine.online``; docs/online.md).

    Fields set to ``None`` take the method's own recipe default (``prefkit train
    --list-methods``; docs/online.md lists them).
    """

    prompts_per_step: int = 8
    """Prompts whose samples make up one optimizer step."""
    samples_per_prompt: int | None = None
    """K responses sampled per prompt (``None``: the method's default)."""
    max_new_tokens: int = 16
    temperature: float = 1.0
    """Sampling temperature of the responses trained on (EGPO's tempered sampling when > 1);
    log-probs are always the policy's own, at temperature 1."""
    top_p: float = 1.0
    judge: str = "world"
    """``world`` (the simulated annotator pool of ``eval.world``), ``world-truth`` (its true
    preference, an oracle), a preference-model directory, or ``llm:DIR`` (a local causal LM as a
    pairwise judge, asked in both orders)."""
    reward: Literal["auto", "win_rate"] = "auto"
    """Scalar reward of the reward-based methods (P3O, SuperHF, GRAO, expert iteration, best-of-n):
    ``auto`` uses the judge's own scalar reward (a preference model with a 1-dimensional
    embedding, i.e. a Bradley-Terry reward model) and fails for a judge without one;
    ``win_rate`` scores each sample by its mean win-rate against the other samples of its
    prompt (all K(K-1)/2 pairs judged)."""
    pairing: Literal["best_worst", "random", "all"] | None = None
    """How K samples become pairs: best vs worst by wins (or reward), random disjoint pairs,
    or all pairs (``None``: the method's default)."""
    iterations: int | None = None
    """Batched-iterative rounds: ``train.steps`` is split into this many rounds, each sampling
    and judging all its prompts from the policy at the round's start. ``None``: the method's
    default (for most, every optimizer step is its own round: per-step online)."""
    epochs: int = 1
    """Passes over a round's data (batched-iterative mode)."""
    ref_update: Literal["fixed", "previous"] | None = None
    """Reference of the loss: the initial (SFT) policy, or the policy at the start of each round
    (the previous iterate). ``None``: the method's default."""
    mixture_coef: float = 0.125
    """Nash-MD: weight of the reference in the opponent's token-level geometric mixture
    (the paper's beta; 0 is self-play, 1 a best response to the reference)."""
    sample_mixture: float = 0.0
    """Regression methods (EGPO, online IPO, DPO family): draw the trained-on responses from the
    geometric mixture with the reference with this weight (EGPO's ``y_yp_mixture_coef``)."""
    opponents: int = 1
    """EGPO / online IPO: opponent samples y'' per prompt (from the policy, or for EGPO's second
    step from the half-step policy)."""
    keep_top: int = 1
    """SuperHF / expert iteration: samples kept per prompt (the highest rewards)."""
    answers: str | None = None
    """File of reference answers (a pairs file: its ``chosen`` response per prompt) for GRAO's
    imitation term and DNO's teacher; with a world and no file, the annotator-preferred
    response of a labelled base pair per prompt."""
    teacher: bool = False
    """DNO: add the reference answer to each prompt's candidates (DNO-Prct's gold outputs)."""
    backend: Literal["hf", "vllm"] = "hf"
    """Generation backend: Hugging Face with a KV cache (default), or vLLM (extra ``vllm``,
    GPU machines; no mixture sampling)."""
    vllm_gpu_memory_utilization: float = 0.3

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "max_new_tokens", "epochs", "opponents", "keep_top"):
            if getattr(self, name) <= 0:
                raise ValueError(f"online.{name} must be positive, got {getattr(self, name)}")
        if self.samples_per_prompt is not None and self.samples_per_prompt < 1:
            raise ValueError(f"online.samples_per_prompt must be positive, got {self.samples_per_prompt}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"online.iterations must be positive, got {self.iterations}")
        if self.temperature <= 0:
            raise ValueError(f"online.temperature must be positive, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"online.top_p must be in (0, 1], got {self.top_p}")
        for name in ("mixture_coef", "sample_mixture"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"online.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ValueError("online.vllm_gpu_memory_utilization must be in (0, 1]")
        if self.judge not in ("world", "world-truth"):
            _absolute_field(self, "judge", prefix="llm:" if self.judge.startswith("llm:") else "")
        _absolute_field(self, "answers")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation against a simulated world's true preference."""

    world: str | None = None
    prompts: int = 64
    samples: int = 8
    """Responses sampled per prompt and per policy."""
    max_new_tokens: int = 16
    temperature: float = 0.7
    """Sampling temperature of the win-rate samples (0.7: AlpacaFarm's evaluation temperature).
    KL(policy || reference) is always estimated from separate samples at temperature 1, the
    models' own distributions."""

    def __post_init__(self) -> None:
        if self.prompts <= 0 or self.samples <= 0 or self.max_new_tokens <= 0:
            raise ValueError("eval.prompts, eval.samples and eval.max_new_tokens must be positive")
        if self.temperature <= 0:
            raise ValueError(f"eval.temperature must be positive, got {self.temperature}")


@dataclass(frozen=True)
class RewardModelConfig:
    """A preference model (``prefkit rm train``; ``prefkit.preference``, docs/preference.md)."""

    kind: Literal["bt", "gpm", "pairpm"] = "bt"
    """``bt``: scalar reward (Bradley-Terry); ``gpm``: general preference embedding;
    ``pairpm``: pairwise classifier over the prompt and both responses."""
    backbone: Literal["auto", "causal", "encoder"] = "auto"
    """How to read ``model``: ``auto`` decides from its config (BERT-like models are encoders)."""
    pooling: Literal["auto", "last", "mean", "cls"] = "auto"
    """``auto``: the last token for causal backbones, the mean over tokens for encoders."""
    dim: int = 2
    """GPM embedding size 2k (even)."""
    tau: float = 0.1
    """GPM temperature: ``P(a beats b) = sigmoid(s(a, b) / tau)``."""
    normalize: bool = False
    """GPM: L2-normalise the embeddings."""
    eigenvalues: Literal["ones", "learned", "prompt"] = "ones"
    """GPM per-block eigenvalues: all ones (the paper's default), learned constants, or
    prompt-dependent ``k * softmax(W h_x / sqrt(d))``."""
    dropout: float = 0.1
    """Dropout on the pooled representation before the head (also what MC-dropout samples)."""
    margin: float = 0.0
    """BT/GPM: a constant margin added to each pair's data margin (``margin`` column)."""
    label_smoothing: float = 0.0
    """Target ``1 - eps`` instead of 1 (ties stay at 1/2)."""
    adaptive_margin: float = 0.0
    """BT: scale of the Secrets-of-RLHF-II adaptive margin read from a ``strength_mean`` column
    (written by ``prefkit rm strength``); 0 disables it."""
    ties: Literal["train", "exclude"] = "train"
    """Pairs labelled 1/2: train toward P = 1/2, or leave them out of training (counted)."""
    freeze_backbone: bool = False
    """Train the head only (a probe on the backbone's frozen representations)."""
    head_lr: float | None = None
    """Learning rate of the head (the backbone uses ``train.lr``); ``None``: ``train.lr``.
    ``prefkit rm train`` sets a per-kind default (docs/preference.md)."""
    center_rewards_coefficient: float | None = None
    """BT: weight ``c`` of the auxiliary loss ``c (r_c + r_r)^2`` that keeps rewards centred on
    zero (Eisenstein et al. 2023; TRL's ``RewardConfig.center_rewards_coefficient``); ``None``: off."""

    def __post_init__(self) -> None:
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"rm.head_lr must be positive, got {self.head_lr}")
        if self.center_rewards_coefficient is not None:
            if not self.center_rewards_coefficient >= 0:
                raise ValueError(f"rm.center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")
            if self.kind != "bt":
                raise ValueError("rm.center_rewards_coefficient centres scalar rewards: it needs rm.kind=bt")
        if self.dim <= 0 or self.dim % 2:
            raise ValueError(f"rm.dim must be a positive even number (2k), got {self.dim}")
        if not self.tau > 0:
            raise ValueError(f"rm.tau must be positive, got {self.tau}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"rm.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"rm.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.margin < 0 or self.adaptive_margin < 0:
            raise ValueError("rm.margin and rm.adaptive_margin must be >= 0")
        if self.kind == "pairpm" and (self.margin or self.adaptive_margin):
            raise ValueError("rm.margin/rm.adaptive_margin need a score difference; pairpm has none")
        if self.kind == "gpm" and self.adaptive_margin:
            raise ValueError("rm.adaptive_margin is the Bradley-Terry (kind=bt) adaptive margin")


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``prefkit train`` run needs."""

    method: str = "dpo"
    model: str = "tiny"
    """``tiny`` or a local Hugging Face checkpoint directory (hub names when online)."""
    ref_model: str | None = None
    """Reference policy; ``None`` means the initial policy."""
    trust_remote_code: bool = False
    seed: int = 0
    out: str = "runs/train"
    tiny: TinyConfig = field(default_factory=TinyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rm: RewardModelConfig = field(default_factory=RewardModelConfig)

    def __post_init__(self) -> None:
        # Paths are stored absolute, so config.yaml (and --resume, prefkit eval --policy RUN)
        # means the same files from any working directory.
        if self.model != "tiny":
            _absolute_field(self, "model")
        _absolute_field(self, "ref_model")
        _absolute_field(self, "out", always=True)
