"""What the DPO-against-TRL benchmarks share: the data, and how each system is configured.

Used by ``benchmarks/dpo_vs_trl_cpu.py`` and ``benchmarks/gpu/dpo_vs_trl.py``. Both systems
must see the same token sequences in the same order, so that the comparison is of one
computation:

- the data is words ``w0 .. wV-1`` of a word-level tokenizer (one word, one token), so every
  row's length is known from its text;
- both build every row as ``[bos] + prompt + response + [eos]``: the tiny tokenizer adds its
  bos itself, prefkit follows TRL 1.16's tokenization rules (``prefkit.policy.chat``), and the
  responses start with a space (as in TRL's own datasets; without it the prompt's last word
  and the response's first would merge in TRL's joined string);
- TRL reads the data in order (no shuffling), as prefkit does with ``train.shuffle=false``.

prefkit and TRL are imported only inside the functions that need them, so that a worker process
loads only its own system (TRL is a test-only peer of prefkit).
"""

from __future__ import annotations

import json
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def make_pairs(
    pairs: int,
    seed: int,
    *,
    vocabulary: int = 1000,
    prompt_words: tuple[int, int] = (10, 40),
    response_words: tuple[int, int] = (10, 43),
    row_tokens: tuple[int, int] | None = None,
    separable: bool = False,
) -> list:
    """Synthetic ``PairRecord`` s over the words ``w0 .. w{vocabulary-1}``.

    Word counts are drawn uniformly from ``[low, high)``: prompts from ``prompt_words``;
    responses from ``response_words``, or, with ``row_tokens=(low, high)``, so that each row
    ``[bos] + prompt + response + [eos]`` has between ``low`` and ``high - 1`` tokens (long rows
    of a controlled length). ``separable``: chosen responses use the first half of the words
    and rejected ones the second half, so DPO has something to learn from the first step (the
    loss leaves log 2 at once, which makes a loss-agreement check discriminating).
    """
    from prefkit.data import PairRecord

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    chosen_words = words[: vocabulary // 2] if separable else words
    rejected_words = words[vocabulary // 2 :] if separable else words

    def text(pool: list[str], low: int, high: int) -> str:
        return " ".join(rng.choice(pool, size=int(rng.integers(low, high))))

    def response_range(prompt: str) -> tuple[int, int]:
        if row_tokens is None:
            return response_words
        used = len(prompt.split()) + 2
        low, high = row_tokens[0] - used, row_tokens[1] - used
        if low < 1:
            raise ValueError(f"row_tokens {row_tokens} leaves no room for a response after a {used - 2}-word prompt")
        return low, high

    records = []
    for _ in range(pairs):
        prompt = text(words, *prompt_words)
        chosen = " " + text(chosen_words, *response_range(prompt))
        rejected = " " + text(rejected_words, *response_range(prompt))
        records.append(PairRecord(prompt, chosen, rejected))
    return records


def make_data(directory: Path, pairs: int, seed: int, **options: Any) -> Path:
    """:func:`make_pairs` written to ``directory/pairs.jsonl`` (TRL's column names)."""
    from prefkit.data import write_jsonl

    path = directory / "pairs.jsonl"
    write_jsonl(make_pairs(pairs, seed, **options), path)
    return path


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def pair_tokens(row: dict[str, Any]) -> int:
    """Non-padding tokens of a pair's two rows, ``[bos] + prompt + response + [eos]`` each
    (one token per word)."""
    prompt = len(row["prompt"].split())
    return (prompt + len(row["chosen"].split()) + 2) + (prompt + len(row["rejected"].split()) + 2)


def trl_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The rows as TRL sees them: as they are (prefkit builds TRL 1.16's sequences by default,
    ``prefkit.policy.chat``; the tiny tokenizer adds its bos itself)."""
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def in_order_trainer(base: type) -> type:
    """``base`` (TRL's ``DPOTrainer`` or a subclass) reading the data in order, as prefkit's
    ``train.shuffle=false`` run does."""
    from torch.utils.data import SequentialSampler

    class InOrderDPOTrainer(base):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    return InOrderDPOTrainer


def trl_config_kwargs(
    output_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    max_length: int,
    lr: float,
    beta: float,
    bf16: bool,
    precompute: bool,
    gradient_checkpointing: bool = False,
    use_cpu: bool = False,
) -> dict[str, Any]:
    """``DPOConfig`` keywords for the settings prefkit runs with (:func:`prefkit_overrides`).

    TRL's DPOConfig defaults to bf16 and activation checkpointing; both are set explicitly.
    AdamW, constant learning rate, no weight decay, clipping at 1.0, a log line every step.
    """
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        max_length=max_length,
        max_steps=steps,
        learning_rate=lr,
        lr_scheduler_type="constant",
        beta=beta,
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=gradient_checkpointing,
        precompute_ref_log_probs=precompute,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=use_cpu,
    )


def prefkit_overrides(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    steps: int,
    batch_size: int,
    max_length: int,
    lr: float,
    beta: float,
    precision: str,
) -> list[str]:
    """``prefkit train --method dpo`` settings (``key=value``) equal to :func:`trl_config_kwargs`."""
    return [
        "method=dpo", f"model={model}", f"data.path={data}", f"out={out}",
        f"train.batch_size={batch_size}", f"train.max_length={max_length}", f"train.steps={steps}",
        f"train.lr={lr}", f"loss.beta={beta}", "train.shuffle=false", "train.log_every=1",
        f"train.precision={precision}", "train.max_grad_norm=1.0", "seed=0",
    ]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
