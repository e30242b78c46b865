"""Reference log-probs, computed once per (data, reference model, length settings) and cached.

The cache key hashes the tokenized data, the reference weights and the settings that change
what is scored (``max_length``, ``max_prompt_length``, the dtype). Entries are safetensors files
written atomically; nothing is unpickled. The cache lives in ``$PREFKIT_CACHE`` (default
``~/.cache/prefkit``) under ``refcache/``; it is optional: a cache directory that cannot be
read or written is reported with a warning and the run goes on without it.

Under several processes each rank scores its share of the examples (``session.shard_index``),
the shares are summed across ranks (each example is scored by exactly one rank, the others
contribute zeros) and the main process writes the cache entry.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from prefkit._atomic import atomic_path
from prefkit.config import TrainConfig
from prefkit.engine.offline.examples import (
    ListExamples,
    PairExamples,
    SequenceExamples,
    UnpairedExamples,
    shared_lengths,
)
from prefkit.engine.run import RunSession
from prefkit.policy import Policy, sequence_logps, tail_logps
from prefkit.policy.encoding import first_token_rule

Examples = PairExamples | ListExamples | SequenceExamples | UnpairedExamples


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


def cache_key(examples: Examples, reference: Policy, cfg: TrainConfig, model_hash: str) -> str:
    parts = [
        type(examples).__name__,
        examples.fingerprint(),
        model_hash,
        str(cfg.max_length),
        str(cfg.max_prompt_length),
        str(reference.dtype),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _length_sorted_chunks(index: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """``index`` sorted by length and cut into batches: little padding, same results."""
    order = sorted(index, key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def output_shape(examples: Examples) -> tuple[int, ...]:
    n = len(examples)
    if isinstance(examples, PairExamples):
        return (n, 4 if examples.tails else 2)
    if isinstance(examples, UnpairedExamples):
        return (n, 2) if examples.kl_partner is not None else (n,)
    if isinstance(examples, ListExamples):
        return (n, examples.k)
    return (n,)


@torch.no_grad()
def compute_reference_logps(examples: Examples, reference: Policy, cfg: TrainConfig, batch_size: int,
                            index: Sequence[int] | None = None) -> torch.Tensor:
    """Reference log-prob sums of the examples in ``index`` (default: all): ``[N, 2]`` for pairs
    (``[N, 4]`` with their tails past the shared length, LD-DPO), ``[N, K]`` for lists, ``[N]``
    for sequences, ``[N]`` or ``[N, 2]`` (with the KL partner's completion) for unpaired rows;
    rows outside ``index`` are 0."""
    pad_id = reference.tokenizer.pad_token_id
    keep_bos = first_token_rule(reference.tokenizer)
    model = reference.model
    was_training = model.training
    model.eval()
    index = list(range(len(examples))) if index is None else list(index)
    out = torch.zeros(output_shape(examples))
    try:
        if isinstance(examples, PairExamples):
            lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                       zip(examples.prompt_ids, examples.chosen_ids, examples.rejected_ids)]
            for rows in _length_sorted_chunks(index, lengths, batch_size):
                batch = examples.batch(rows, cfg, pad_id, keep_bos).to(reference.device)
                if examples.tails:
                    sums, tails = tail_logps(model, batch, shared_lengths(batch, len(rows)))
                    out[rows, 2], out[rows, 3] = tails.float().cpu()[: len(rows)], tails.float().cpu()[len(rows) :]
                else:
                    sums, _ = sequence_logps(model, batch)
                sums = sums.float().cpu()
                out[rows, 0], out[rows, 1] = sums[: len(rows)], sums[len(rows) :]
            return out
        if isinstance(examples, UnpairedExamples):
            lengths = [len(p) + len(c) for p, c in zip(examples.prompt_ids, examples.completion_ids)]
            for rows in _length_sorted_chunks(index, lengths, batch_size):
                sums, _ = sequence_logps(model, examples.batch(rows, cfg, pad_id, keep_bos).to(reference.device))
                sums = sums.float().cpu()
                if examples.kl_partner is not None:
                    out[rows, 0], out[rows, 1] = sums[: len(rows)], sums[len(rows) :]
                else:
                    out[rows] = sums
            return out
        if isinstance(examples, ListExamples):
            lengths = [len(p) + max(len(r) for r in group) for p, group in
                       zip(examples.prompt_ids, examples.response_ids)]
            for rows in _length_sorted_chunks(index, lengths, batch_size):
                batch, slots = examples.batch(rows, cfg, pad_id, keep_bos)
                sums, _ = sequence_logps(model, batch.to(reference.device))
                block = torch.zeros(len(rows) * examples.k)
                block[slots] = sums.float().cpu()
                out[rows] = block.view(len(rows), examples.k)
            return out
        lengths = [len(p) + len(r) for p, r in zip(examples.prompt_ids, examples.response_ids)]
        for rows in _length_sorted_chunks(index, lengths, batch_size):
            sums, _ = sequence_logps(model, examples.batch(rows, cfg, pad_id, keep_bos).to(reference.device))
            out[rows] = sums.float().cpu()
        return out
    finally:
        model.train(was_training)


def read_cached(path: Path) -> torch.Tensor | None:
    """A cache entry, or ``None`` when absent or unreadable (warned: the cache is optional)."""
    try:
        if not path.is_file():
            return None
        return load_file(path)["logps"]
    except (OSError, SafetensorError, KeyError) as err:
        warnings.warn(f"reference log-prob cache entry {path} is unreadable ({err}); recomputing", stacklevel=2)
        return None


def write_cached(path: Path, logps: torch.Tensor) -> None:
    """Store a cache entry atomically; a read-only or full cache directory only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"logps": logps.contiguous()}, str(tmp))
    except OSError as err:
        warnings.warn(f"reference log-prob cache {path.parent} is not writable ({err.strerror or err}); going on "
                      "without caching (set PREFKIT_CACHE to a writable directory, or train.ref_cache=false)",
                      stacklevel=2)


def reference_logps(
    examples: Examples,
    reference: Policy | Callable[[], Policy],
    cfg: TrainConfig,
    *,
    session: RunSession | None = None,
    batch_size: int = 32,
    use_cache: bool | None = None,
    model_hash: str | None = None,
    same_as: Policy | None = None,
) -> tuple[torch.Tensor, bool]:
    """Reference log-prob sums for every example; returns ``(logps, cache_hit)``.

    ``reference`` may be a function that builds it, called only on a cache miss; ``same_as`` is
    then a policy with the reference's weights, dtype and tokenizer (the initial policy), whose
    fingerprint is the key, so a hit never builds the reference. ``session`` (a ``RunSession``)
    shards the work over its processes; without one, this process scores everything.
    """
    use_cache = cfg.ref_cache if use_cache is None else use_cache
    world = session.world if session is not None else 1
    keyed = same_as if same_as is not None else reference
    if not isinstance(keyed, Policy):
        raise TypeError("a lazily built reference needs same_as= (a policy with its weights) for the cache key")
    path = None
    if use_cache:
        model_hash = model_hash or model_fingerprint(keyed.model)
        path = cache_dir() / f"{cache_key(examples, keyed, cfg, model_hash)}.safetensors"
        cached = read_cached(path)
        hit = cached is not None and tuple(cached.shape) == output_shape(examples)
        if world > 1:
            hit = bool(session.all_sum(torch.tensor([float(hit)]))[0] == world)
        if hit:
            return cached, True
    if not isinstance(reference, Policy):
        reference = reference()
    if session is not None and world > 1:
        mine = session.shard_index(len(examples))
        logps = session.all_sum(compute_reference_logps(examples, reference, cfg, batch_size, mine))
    else:
        logps = compute_reference_logps(examples, reference, cfg, batch_size)
    if path is not None and (session is None or session.is_main):
        write_cached(path, logps)
    if session is not None:
        session.barrier()
    return logps, False
