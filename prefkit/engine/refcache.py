"""Reference log-probs, computed once per (data, reference model, length settings) and cached.

The cache key hashes the tokenized data, the reference weights (or the files they were loaded
from) and the settings that change what is scored (``max_length``, ``max_prompt_length``).
Entries are safetensors files written atomically; nothing is unpickled. The cache lives in
``$PREFKIT_CACHE`` (default ``~/.cache/prefkit``) under ``refcache/``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prefkit.config import TrainConfig
from prefkit.engine.examples import ListExamples, PairExamples, SequenceExamples
from prefkit.policy import Policy, sequence_logps

Examples = PairExamples | ListExamples | SequenceExamples


def cache_dir() -> Path:
    root = os.environ.get("PREFKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "prefkit")
    return Path(root) / "refcache"


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's weights (exact: any change in any parameter changes it)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        t = tensor.detach().contiguous().cpu()
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _key(examples: Examples, reference: Policy, cfg: TrainConfig, model_hash: str) -> str:
    parts = [
        type(examples).__name__,
        examples.fingerprint(),
        model_hash,
        str(cfg.max_length),
        str(cfg.max_prompt_length),
        str(reference.dtype),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _length_sorted_chunks(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Example indices sorted by length and cut into batches: little padding, same results."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def _compute(examples: Examples, reference: Policy, cfg: TrainConfig, batch_size: int) -> torch.Tensor:
    """Per-example reference log-prob sums: ``[N, 2]`` for pairs, ``[N, K]`` for lists,
    ``[N]`` for sequences. Examples are scored in length-sorted batches."""
    pad_id = reference.tokenizer.pad_token_id
    keep_bos = reference.tokenizer.bos_token_id is not None
    model = reference.model
    was_training = model.training
    model.eval()
    n = len(examples)
    try:
        if isinstance(examples, PairExamples):
            lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                       zip(examples.prompt_ids, examples.chosen_ids, examples.rejected_ids)]
            out = torch.zeros(n, 2)
            for index in _length_sorted_chunks(lengths, batch_size):
                sums, _ = sequence_logps(model, examples.batch(index, cfg, pad_id, keep_bos).to(reference.device))
                sums = sums.float().cpu()
                out[index, 0], out[index, 1] = sums[: len(index)], sums[len(index) :]
            return out
        if isinstance(examples, ListExamples):
            lengths = [len(p) + max(len(r) for r in group) for p, group in
                       zip(examples.prompt_ids, examples.response_ids)]
            out = torch.zeros(n, examples.k)
            for index in _length_sorted_chunks(lengths, batch_size):
                batch, slots = examples.batch(index, cfg, pad_id, keep_bos)
                sums, _ = sequence_logps(model, batch.to(reference.device))
                block = torch.zeros(len(index) * examples.k)
                block[slots] = sums.float().cpu()
                out[index] = block.view(len(index), examples.k)
            return out
        lengths = [len(p) + len(r) for p, r in zip(examples.prompt_ids, examples.response_ids)]
        out = torch.zeros(n)
        for index in _length_sorted_chunks(lengths, batch_size):
            sums, _ = sequence_logps(model, examples.batch(index, cfg, pad_id, keep_bos).to(reference.device))
            out[index] = sums.float().cpu()
        return out
    finally:
        model.train(was_training)


def reference_logps(
    examples: Examples,
    reference: Policy,
    cfg: TrainConfig,
    *,
    batch_size: int = 32,
    use_cache: bool | None = None,
    model_hash: str | None = None,
) -> tuple[torch.Tensor, bool]:
    """Reference log-prob sums for every example; returns ``(logps, cache_hit)``."""
    use_cache = cfg.ref_cache if use_cache is None else use_cache
    if not use_cache:
        return _compute(examples, reference, cfg, batch_size), False
    model_hash = model_hash or model_fingerprint(reference.model)
    path = cache_dir() / f"{_key(examples, reference, cfg, model_hash)}.safetensors"
    if path.exists():
        try:
            return load_file(path)["logps"], True
        except Exception:  # a corrupt entry (disk full, foreign file): recompute and replace
            path.unlink(missing_ok=True)
    logps = _compute(examples, reference, cfg, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file({"logps": logps.contiguous()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return logps, False
