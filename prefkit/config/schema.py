"""The run configuration schema: one typed dataclass tree shared by every command.

Resolution order: dataclass defaults <- ``--config FILE.yaml`` <- dotted ``key=value``
overrides on the command line. The resolved config is written as ``config.yaml`` beside every
output. Field names used by code outside this repository (keep them stable): ``tiny.hidden_size``,
``tiny.layers``, ``tiny.heads``, ``train.batch_size``, ``train.max_length``, ``train.steps``,
``train.lr``, ``loss.beta``, ``seed``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from prefkit.config.strict import ConfigError, CrossSectionError

DEVICES = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")
"""Values ``train.device`` accepts (whether the hardware is present is checked at run start,
by ``prefkit.policy.check_device``)."""

MAX_LR = 1.0
"""Largest ``train.lr`` accepted. AdamW moves every weight by about ``lr`` per step whatever the
gradient's scale, so ``lr > 1`` (weights are typically O(0.01-0.1)) destroys any model in one
step; a value like ``1e20`` is a typo, not a setting."""


def _number(key: str, value: float, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, hint: str = "") -> None:
    """``value`` is a finite number within the bounds, or a ``ConfigError`` names ``key``."""
    inside = math.isfinite(value)
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if inside:
        return
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    raise ConfigError(f"{key}: must be a finite number in {lo}, {hi}, got {value!r}{hint}")


def rating_scale(text: str) -> tuple[int, int]:
    """``"1-5"`` / ``"1,5"`` / ``"-2,2"`` -> ``(1, 5)``: an integer rating scale with low < high."""
    parts = str(text).split(",") if "," in str(text) else str(text).split("-")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"rm.scale: a rating scale is LOW-HIGH or LOW,HIGH (e.g. 1-5, 1-10, -2,2), "
                          f"got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low != int(low) or high != int(high) or low >= high:
        raise ConfigError(f"rm.scale: an ordinal scale needs whole-number bounds LOW < HIGH, got {text!r}")
    return int(low), int(high)


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
    final_checkpoint: bool = True
    """Write a checkpoint (weights, optimizer, generators) at the last step, so the finished run can
    be extended with ``--resume``; ``false`` saves only the trained model at the end (saves the
    optimizer-state write, about 2x the weights)."""
    shuffle: bool = True
    ref_cache: bool = True
    """Compute reference log-probs once and cache them on disk (keyed by data and model)."""
    gradient_checkpointing: bool = False
    bucket_overhead: int = 128
    """Split a micro-batch into length buckets when a forward call costs less than this many
    padded token positions (0: one padded forward). Exact: only padding changes."""
    packing: bool = False
    """Padding-free packing: the rows of a micro-batch are concatenated into one sequence with
    per-row position ids, attention never crossing rows (flash-attention varlen on GPU, a
    block-diagonal mask under sdpa/eager). Exact: the same log-probs as padding."""
    report_to: str | list[str] = "none"
    """Experiment trackers: ``none`` or any of ``tensorboard``, ``wandb``, ``mlflow``,
    ``trackio`` (a name, a comma-separated string or a list; each through its own library, extras
    of the same names). Stored as a list."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.grad_accum ({self.grad_accum}) must divide train.batch_size ({self.batch_size})"
            )
        _number("train.lr", self.lr, low=0.0, low_open=True, high=MAX_LR,
                hint=" (AdamW moves every weight by about lr per step; typical values are 1e-6 to 1e-2)")
        _number("train.weight_decay", self.weight_decay, low=0.0)
        for name in ("adam_beta1", "adam_beta2"):
            _number(f"train.{name}", getattr(self, name), low=0.0, high=1.0, high_open=True)
        _number("train.adam_eps", self.adam_eps, low=0.0, low_open=True)
        if self.max_grad_norm is not None:
            _number("train.max_grad_norm", self.max_grad_norm, low=0.0, low_open=True,
                    hint=" (null disables clipping)")
        for name in ("warmup_steps", "eval_every", "save_every", "bucket_overhead"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every: must be >= 1 (log every N steps), got {self.log_every}")
        if self.max_length < 2:
            raise ConfigError(f"train.max_length: must be at least 2 (a prompt token and a response token), "
                              f"got {self.max_length}")
        if self.max_prompt_length is not None and not 1 <= self.max_prompt_length < self.max_length:
            raise ConfigError(
                f"train.max_prompt_length: must be in [1, train.max_length={self.max_length}), "
                f"got {self.max_prompt_length} (null: half of max_length)"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads: must be null (torch's default) or >= 1, got {self.threads}")
        if not DEVICES.fullmatch(self.device):
            raise ConfigError(f"train.device: {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
        trackers = self.report_to.split(",") if isinstance(self.report_to, str) else list(self.report_to)
        object.__setattr__(self, "report_to", [t.strip() for t in trackers if t.strip()] or ["none"])
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

    def __post_init__(self) -> None:
        if self.beta is not None:
            _number("loss.beta", self.beta, low=0.0)  # 0: no KL term (token losses); the pairwise ones refuse it
        for name, weight in self.weights.items():
            _number(f"loss.weights.{name}", weight, low=0.0)
        _number("loss.nll_weight", self.nll_weight, low=0.0)


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
    dedupe: bool = False
    """Drop exact repeats of an earlier row (counted) instead of refusing them."""
    max_row_bytes: int | None = 16 * 1024 * 1024
    """A row (JSONL line, or a Parquet row's text) longer than this is invalid and never parsed
    (16 MiB: ~4M tokens, beyond any context window; ``null``: no limit)."""
    split: str | None = None
    """The split to train on when ``path`` is a DatasetDict or a hub dataset (``None``:
    ``train``); an error for a single file or Dataset."""
    eval_split: str | None = None
    """The held-out split: of ``eval_path`` when given, else of ``path`` (``None``: ``test``
    when the DatasetDict has one, else no held-out data)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column map for files with other names: ``{prefkit column: file column}``, e.g.
    ``data.columns.chosen=answer_good`` (prefkit columns: see ``prefkit.data.COLUMNS``)."""
    unpair: bool = False
    """Unpaired methods (``kto``, ``bco_unpaired``, ``apo_zero_unpaired``): accept a pairs file and
    split each pair into a desirable and an undesirable row (``prefkit.data.unpair``, as TRL's
    ``unpair_preference_dataset``); other methods refuse it."""

    def __post_init__(self) -> None:
        if self.max_row_bytes is not None and self.max_row_bytes < 1:
            raise ConfigError(f"data.max_row_bytes: must be null (no limit) or >= 1, got {self.max_row_bytes}")
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
    preference, an oracle), a preference-model directory, ``llm:SPEC`` (a language model as a
    pairwise judge, asked in both orders: ``llm:DIR`` a local causal LM, ``llm:openai:MODEL`` an
    OpenAI-compatible endpoint, docs/llm.md) or ``rubric:FILE`` (a rubric-conditioned judge,
    docs/principles.md)."""
    judge_labels: str | None = None
    """LLM and rubric judges (``llm:...``, ``rubric:...``): the two answer labels, comma separated
    (``A,B``, ``1,2``, ``Yes,No``); ``None`` uses ``A,B``, or on a local model whose tokenizer
    cannot tell them apart the first pair it can (``prefkit.preference.llm_judge``)."""
    judge_template: str | None = None
    """LLM and rubric judges: a UTF-8 text file holding the judge prompt, a ``str.format`` template
    with ``{prompt}``, ``{first}``, ``{second}``, ``{first_label}``, ``{second_label}`` (rubric
    judges also ``{rubric}``); ``None`` uses the documented default (docs/preference.md)."""
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
    critic: Literal["separate", "shared"] | None = None
    """PPO's value model (``ppo``, ``pairwise_ppo``): ``separate``, its own backbone (a copy of
    the policy's, or ``online.critic_model``) with a scalar head, or ``shared``, a value head on
    the policy's own backbone (one forward gives log-probs and values). ``None``: the method's
    default (``separate``, as AlpacaFarm and TRL)."""
    critic_model: str | None = None
    """Where a separate critic starts: a Bradley-Terry reward-model directory (its backbone and
    head: InstructGPT and AlpacaFarm initialise the value model from the reward model) or a
    causal-LM checkpoint (its backbone, a zero head). ``None``: a copy of the policy's backbone."""
    kl_target: float | None = None
    """Adaptive KL controller (Ziegler et al. 2019) for the methods whose KL penalty is in the
    reward (``ppo``, ``pairwise_ppo``, ``rloo``, ``reinforce_pp``): the target KL per sampled
    sequence in nats; the coefficient starts at ``loss.beta`` and is updated once per rollout
    batch. ``None``: a fixed coefficient."""
    kl_horizon: int = 10000
    """The adaptive controller's horizon (in sampled sequences; Ziegler et al. use 10000)."""
    anchor: Literal["reference", "answer"] | None = None
    """``pairwise_ppo``: what each sample is compared with, its reward being P(y beats anchor):
    one sample of the reference policy per prompt (``reference``, the default) or the prompt's
    reference answer (``answer``: ``online.answers``, in-memory pairs or the world's)."""
    preset: Literal["alpacafarm_sim", "alpacafarm_human"] | None = None
    """``ppo``/``pairwise_ppo``: start ``loss.params`` from AlpacaFarm's PPO settings
    (``prefkit.losses.PPO_PRESETS``: KL coefficient 0.0067 for simulated annotators, 0.02 for
    human preferences, clamped k1 KL, gamma = lambda = 1, whitened rewards and advantages);
    explicit ``loss.params`` and ``loss.beta`` still win."""

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "max_new_tokens", "epochs", "opponents", "keep_top"):
            if getattr(self, name) <= 0:
                raise ValueError(f"online.{name} must be positive, got {getattr(self, name)}")
        if self.samples_per_prompt is not None and self.samples_per_prompt < 1:
            raise ValueError(f"online.samples_per_prompt must be positive, got {self.samples_per_prompt}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"online.iterations must be positive, got {self.iterations}")
        _number("online.temperature", self.temperature, low=0.0, low_open=True)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"online.top_p must be in (0, 1], got {self.top_p}")
        for name in ("mixture_coef", "sample_mixture"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"online.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ValueError("online.vllm_gpu_memory_utilization must be in (0, 1]")
        language_judge = self.judge.startswith(("llm:", "rubric:"))
        for name in ("judge_labels", "judge_template"):
            if getattr(self, name) is not None and not language_judge:
                raise ValueError(f"online.{name} applies to LLM and rubric judges (online.judge=llm:... or "
                                 f"rubric:...), not to online.judge={self.judge!r}; remove it")
        if self.judge_labels is not None:
            parts = [p.strip() for p in self.judge_labels.split(",")]
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise ValueError("online.judge_labels must be two different non-empty labels separated by a "
                                 f"comma (e.g. A,B or 1,2), got {self.judge_labels!r}")
        if self.kl_target is not None and not self.kl_target > 0:
            raise ValueError(f"online.kl_target must be positive (nats per sequence), got {self.kl_target}")
        if self.kl_horizon <= 0:
            raise ValueError(f"online.kl_horizon must be positive, got {self.kl_horizon}")
        if self.critic_model is not None and self.critic == "shared":
            raise ValueError("online.critic_model starts a separate critic; a shared critic is a head on the "
                             "policy's backbone (set online.critic=separate, or drop online.critic_model)")
        if self.judge not in ("world", "world-truth"):
            scheme = next((p for p in ("llm:", "rubric:", "exemplars:") if self.judge.startswith(p)), "")
            _absolute_field(self, "judge", prefix=scheme)
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
        _number("eval.temperature", self.temperature, low=0.0, low_open=True)


@dataclass(frozen=True)
class RewardModelConfig:
    """A preference model (``prefkit rm train``; ``prefkit.preference``, docs/preference.md)."""

    kind: Literal["bt", "gpm", "pairpm", "ordinal"] = "bt"
    """``bt``: scalar reward (Bradley-Terry); ``gpm``: general preference embedding;
    ``pairpm``: pairwise classifier over the prompt and both responses; ``ordinal``: a scalar
    reward with ordered thresholds fitted to graded ratings (a ratings file, ``rm.scale``)."""
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
    scale: str | None = None
    """``rm.kind=ordinal``: the declared integer rating scale ``LOW-HIGH`` (``1-5``, ``1-10``; a
    negative bound as ``-2,2``); one ordinal class per level. Required for ``ordinal``; a rating
    outside it, or not a whole number, is an error naming file, line and field."""
    ordinal_variant: Literal["likelihood", "nested"] = "likelihood"
    """``rm.kind=ordinal``: the exact cumulative-logit likelihood, or GNOLR-style nested binary
    objectives (``prefkit.losses.ordinal``)."""
    head_lr: float | None = None
    """Learning rate of the head (the backbone uses ``train.lr``); ``None``: ``train.lr``.
    ``prefkit rm train`` sets a per-kind default (docs/preference.md)."""
    center_rewards_coefficient: float | None = None
    """BT: weight ``c`` of the auxiliary loss ``c (r_c + r_r)^2`` that keeps rewards centred on
    zero (Eisenstein et al. 2023; TRL's ``RewardConfig.center_rewards_coefficient``); ``None``: off."""

    def __post_init__(self) -> None:
        if self.kind == "ordinal":
            if self.scale is None:
                raise ConfigError("rm.kind=ordinal needs the rating scale: rm.scale=LOW-HIGH (e.g. 1-5 or 1-10; "
                                  "`prefkit rm train --scale 1-5`)")
            low, high = rating_scale(self.scale)
            if high - low < 1:
                raise ConfigError(f"rm.scale: an ordinal scale needs at least 2 levels, got {self.scale!r}")
            for name in ("margin", "adaptive_margin", "label_smoothing"):
                if getattr(self, name):
                    raise ConfigError(f"rm.{name} is a setting of the pairwise losses; rm.kind=ordinal fits ratings "
                                      f"and does not read it: remove rm.{name}")
        else:
            if self.scale is not None:
                raise ConfigError(f"rm.scale applies to rm.kind=ordinal (ratings), not rm.kind={self.kind}: remove it")
            if self.ordinal_variant != "likelihood":
                raise ConfigError(f"rm.ordinal_variant applies to rm.kind=ordinal, not rm.kind={self.kind}: "
                                  "remove it")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"rm.head_lr must be positive, got {self.head_lr}")
        if self.center_rewards_coefficient is not None:
            if not self.center_rewards_coefficient >= 0:
                raise ValueError(f"rm.center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")
            if self.kind != "bt":
                raise ValueError("rm.center_rewards_coefficient centres scalar rewards: it needs rm.kind=bt")
        if self.dim <= 0 or self.dim % 2:
            raise ValueError(f"rm.dim must be a positive even number (2k), got {self.dim}")
        _number("rm.tau", self.tau, low=0.0, low_open=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"rm.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"rm.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        _number("rm.margin", self.margin, low=0.0)
        _number("rm.adaptive_margin", self.adaptive_margin, low=0.0)
        if self.kind == "pairpm" and (self.margin or self.adaptive_margin):
            raise ValueError("rm.margin/rm.adaptive_margin need a score difference; pairpm has none")
        if self.kind == "gpm" and self.adaptive_margin:
            raise ValueError("rm.adaptive_margin is the Bradley-Terry (kind=bt) adaptive margin")


COH_TEMPLATES = ("p", "n", "np", "pn")
"""Chain of Hindsight's templates (``prefkit.data.hindsight.TEMPLATES``)."""
COH_PHRASES = 4
"""Feedback phrase pairs known (``len(prefkit.data.hindsight.PHRASES)``)."""


@dataclass(frozen=True)
class HindsightConfig:
    """Chain of Hindsight (``--method coh``; Liu et al. 2023, docs/feedback.md)."""

    templates: list[str] = field(default_factory=lambda: list(COH_TEMPLATES))
    """Templates drawn per pair: ``p`` (positive), ``n`` (negative), ``np``, ``pn``."""
    phrases: list[int] = field(default_factory=lambda: [0])
    """Feedback phrase pairs drawn per sequence (indices into ``prefkit.data.hindsight.PHRASES``;
    0 is the paper's "A helpful answer:" / "An unhelpful answer:")."""
    per_pair: int = 1
    """CoH sequences built from each decided pair."""
    inference_phrase: int = 0
    """The positive phrase a trained policy is conditioned on when sampled (one of ``phrases``)."""

    def __post_init__(self) -> None:
        if not self.templates or any(t not in COH_TEMPLATES for t in self.templates):
            raise ConfigError(f"coh.templates: a non-empty list of {list(COH_TEMPLATES)}, got {self.templates!r}")
        if not self.phrases or any(isinstance(i, bool) or not 0 <= i < COH_PHRASES for i in self.phrases):
            raise ConfigError(f"coh.phrases: a non-empty list of phrase indices 0..{COH_PHRASES - 1}, "
                              f"got {self.phrases!r}")
        if self.per_pair < 1:
            raise ConfigError(f"coh.per_pair: must be >= 1, got {self.per_pair}")
        if self.inference_phrase not in self.phrases:
            raise ConfigError(f"coh.inference_phrase ({self.inference_phrase}) must be one of coh.phrases "
                              f"{self.phrases}: the policy is conditioned on a phrase it was trained with")


@dataclass(frozen=True)
class ILFConfig:
    """ILF: refine -> select -> SFT, in rounds (``--method ilf``; Scheurer et al. 2023).

    ``refiner`` and ``selector``: ``world`` (the simulated world's imperfect refiner and its
    ground-truth incorporation score; needs ``--world``), ``policy`` (the policy being trained,
    prompted with ILF's instructions) or ``llm:SPEC`` (``llm:DIR``, ``llm:openai:MODEL``; docs/llm.md).
    """

    rounds: int = 2
    """Refine -> select -> SFT rounds; ``train.steps`` is split evenly over them. Round 1 refines the
    critiques of ``--data`` (or, without it, the world's critiques of base responses); each later
    round refines the world critic's feedback on the current policy's own answers (needs a world)."""
    refinements: int = 5
    """N refinements per critique (the paper's 5)."""
    refiner: str = "world"
    selector: str = "world"
    skill: float = 0.8
    """World refiner: probability that each named issue is fixed."""
    slip: float = 0.1
    """World refiner: probability of inserting an off-topic word (its own mistake)."""
    recall: float = 1.0
    """World critic (rounds after the first): probability that each issue is named."""
    prompts: int = 256
    """Without ``--data``: critiques of this many base responses drawn from the world."""
    temperature: float = 1.0
    """LLM refiner (``policy``, ``llm:...``): sampling temperature of the refinements (the paper's 1.0)."""
    max_new_tokens: int = 64
    """LLM refiner: tokens per refinement."""

    def __post_init__(self) -> None:
        for name in ("rounds", "refinements", "prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ilf.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("refiner", "selector"):
            value = getattr(self, name)
            if value not in ("world", "policy") and not (value.startswith("llm:") and len(value) > 4):
                raise ConfigError(f"ilf.{name}: world, policy or llm:SPEC (llm:DIR, llm:openai:MODEL), got {value!r}")
        for name in ("skill", "slip"):
            _number(f"ilf.{name}", getattr(self, name), low=0.0, high=1.0)
        _number("ilf.recall", self.recall, low=0.0, low_open=True, high=1.0)
        _number("ilf.temperature", self.temperature, low=0.0, low_open=True)


@dataclass(frozen=True)
class GenerativeJudgeConfig:
    """A generative pairwise judge (``--method genrm``; Think-RM, Pairwise-RL): a causal LM trained
    to answer which of two responses is better (docs/feedback.md)."""

    labels: str = "A,B"
    """The two answer labels (first, second), comma separated."""
    template: str | None = None
    """A judge prompt template file (``{prompt}``, ``{first}``, ``{second}``, ``{first_label}``,
    ``{second_label}``); ``None``: ``prefkit.preference.llm_judge.DEFAULT_TEMPLATE``."""
    rationale: Literal["none", "world"] = "none"
    """``world``: the target is a rationale, then the answer (Think-RM's think-then-answer form); the
    rationale names each response's issues in the world's terms (its critic), so needs ``--world``."""
    swap: bool = True
    """Position-swap augmentation: every pair is taught in both orders (position consistency)."""
    rl: bool = False
    """Think-RM's RL step after the SFT: GRPO on the judge, its prompts the judge prompts of the
    training pairs, its reward 1 when a sampled judgement names the better response (``--rl``;
    ``online.samples_per_prompt``, ``online.max_new_tokens``, ``online.prompts_per_step`` and
    ``loss.beta`` are its GRPO settings; docs/feedback.md)."""
    rl_steps: int | None = None
    """Optimizer steps of the RL step; ``None``: ``train.steps``."""
    rl_lr: float | None = None
    """Learning rate of the RL step; ``None``: ``train.lr``."""

    def __post_init__(self) -> None:
        parts = [p.strip() for p in self.labels.split(",")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ConfigError(f"genrm.labels: two different non-empty labels separated by a comma (A,B), "
                              f"got {self.labels!r}")
        for name in ("rl_steps", "rl_lr"):
            if getattr(self, name) is not None and not self.rl:
                raise ConfigError(f"genrm.{name} is a setting of the RL step: add --rl (genrm.rl=true) or remove it")
        if self.rl_steps is not None and (isinstance(self.rl_steps, bool) or self.rl_steps < 1):
            raise ConfigError(f"genrm.rl_steps must be a positive number of steps, got {self.rl_steps!r}")
        if self.rl_lr is not None:
            _number("genrm.rl_lr", self.rl_lr, low=0.0, low_open=True)


SECTION_METHODS: dict[str, tuple[str, ...]] = {"coh": ("coh",), "ilf": ("ilf",), "genrm": ("genrm",)}
"""Sections read by one method only: a non-default value with another method is refused."""


LORA_ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraConfig:
    """LoRA / QLoRA adapters through PEFT (extra ``peft``; docs/policy.md, "LoRA and QLoRA").

    ``r > 0`` trains low-rank adapters ``W + (alpha / r) B A`` on the model's linear layers
    (Hu et al. 2021, arXiv:2106.09685, eq. 3; B starts at zero) instead of every weight; the
    reference is the same model with its adapters disabled (no second copy in memory).
    """

    r: int = 0
    """Adapter rank; 0 turns LoRA off (every weight trains, the default)."""
    alpha: float = 16.0
    """Scale numerator: the adapter's update is multiplied by ``alpha / r``."""
    dropout: float = 0.0
    """Dropout on the adapter's input (training only), in [0, 1)."""
    target_modules: str | list[str] = LORA_ALL_LINEAR
    """``all-linear`` (every linear layer except the output head, PEFT's rule) or a list of
    module names (e.g. ``[q_proj, v_proj]``; a comma-separated string works too), each matching
    a module's full name or its last components. Stored as ``all-linear`` or a list."""
    quantize: Literal["none", "4bit", "8bit"] = "none"
    """QLoRA: load the frozen base weights quantized by bitsandbytes (NF4 with double
    quantization, or LLM.int8); CUDA only."""

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 0:
            raise ValueError(f"lora.r must be an integer >= 0 (0 turns LoRA off), got {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        targets = self.target_modules
        if isinstance(targets, str):
            targets = targets if targets.strip() == LORA_ALL_LINEAR else targets.split(",")
        if isinstance(targets, str):
            targets = LORA_ALL_LINEAR
        else:
            targets = [str(t).strip() for t in targets]
            if not targets or not all(targets):
                raise ValueError("lora.target_modules must be 'all-linear' or a non-empty list of module names, "
                                 f"got {self.target_modules!r}")
            if LORA_ALL_LINEAR in targets:
                raise ValueError("lora.target_modules: 'all-linear' stands alone, not inside a list")
        object.__setattr__(self, "target_modules", targets)
        if self.r == 0:
            defaults = LoraConfig.__dataclass_fields__
            unused = [name for name in ("alpha", "dropout", "target_modules", "quantize")
                      if getattr(self, name) != defaults[name].default]
            if unused:
                raise ValueError(f"lora.{unused[0]} is set but lora.r=0 turns LoRA off; set lora.r (e.g. 16) "
                                 f"to train adapters, or drop lora.{unused[0]}")

    @property
    def enabled(self) -> bool:
        return self.r > 0


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``prefkit train`` run needs."""

    method: str = "dpo"
    model: str = "tiny"
    """``tiny`` or a local Hugging Face checkpoint directory (hub names when online)."""
    ref_model: str | None = None
    """Reference policy; ``None`` means the initial policy."""
    trust_remote_code: bool = False
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3"] | None = None
    """Attention kernel of a loaded checkpoint (``model``, ``ref_model``); ``None`` keeps the
    checkpoint's own choice (the tiny preset always uses sdpa). flash-attention needs its package
    and a GPU; with ``train.packing`` it runs the varlen kernels."""
    seed: int = 0
    out: str = "runs/train"
    tiny: TinyConfig = field(default_factory=TinyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rm: RewardModelConfig = field(default_factory=RewardModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    coh: HindsightConfig = field(default_factory=HindsightConfig)
    ilf: ILFConfig = field(default_factory=ILFConfig)
    genrm: GenerativeJudgeConfig = field(default_factory=GenerativeJudgeConfig)

    def __post_init__(self) -> None:
        """Rules across sections (each section checks its own keys); paths made absolute."""
        for section, methods in SECTION_METHODS.items():
            value = getattr(self, section)
            if self.method not in methods and value != type(value)():
                changed = [f for f in value.__dataclass_fields__ if getattr(value, f) != getattr(type(value)(), f)]
                raise CrossSectionError(f"{section}.{changed[0]} is a setting of --method {' or '.join(methods)}, "
                                        f"and this run's method is {self.method}: remove it")
        if self.model == "tiny" and self.attn_implementation not in (None, "sdpa"):
            raise CrossSectionError(f"attn_implementation={self.attn_implementation}: the tiny preset is built with "
                                    "sdpa; this key applies to a loaded checkpoint (model=PATH)")
        if self.model == "tiny" and self.tiny.max_position_embeddings < self.train.max_length:
            raise CrossSectionError(
                f"tiny.max_position_embeddings ({self.tiny.max_position_embeddings}) is smaller than "
                f"train.max_length ({self.train.max_length}): the tiny model has no positions for the "
                "longer sequences; raise tiny.max_position_embeddings or lower train.max_length"
            )
        # Paths are stored absolute, so config.yaml (and --resume, prefkit eval --policy RUN)
        # means the same files from any working directory.
        if self.model != "tiny":
            _absolute_field(self, "model")
        _absolute_field(self, "ref_model")
        _absolute_field(self, "out", always=True)
