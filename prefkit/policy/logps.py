"""Sequence log-probabilities of response tokens, without full-vocabulary logits for the batch.

``log π(y|x) = Σ_t log softmax(W h_{t-1})[y_t]`` over the response tokens ``y_t`` (prompt and
padding masked). The model runs once over the whole batch and returns its final hidden states
(its own logits for one position only); the LM head, the log-softmax and the gather then run
only at the positions whose next token is a response token, in chunks of ``chunk_size``
positions. For a plain linear head the chunks go through a custom autograd
function that keeps only the hidden states and one float32 log-sum-exp per position and
recomputes each chunk's logits in the backward pass, so peak memory is ``chunk_size x vocab``
instead of ``tokens x vocab`` (the same idea as the Liger kernel's fused linear cross-entropy,
Hsu et al. 2024, arXiv:2410.10989). Logits are always reduced in float32. Calling the model
itself (not its backbone) keeps DDP, PEFT and accelerate wrappers working. Under FSDP2 the head
weight is a sharded DTensor outside the forward: it is gathered once per call with the
differentiable ``full_tensor()`` and the same chunked function runs on it (the gradient is
reduce-scattered back to the shards), so full-vocabulary logits are still never materialised;
under FSDP1, whose weight exists only inside the wrapped forward, the full-logits path is used.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from prefkit.policy._hf import innermost, logits_to_keep_argument, unwrap
from prefkit.policy.encoding import EncodedBatch

ChunkSize = int | Literal["auto"] | None

_AUTO_CHUNK_ELEMENTS = 1 << 25
"""``auto`` chunks hold at most this many float32 logits (128 MiB)."""

_FULL_FORWARD_MODELS: weakref.WeakSet[nn.Module] = weakref.WeakSet()
"""Models whose logits are not ``lm_head(last hidden state)`` (soft-capping, scaling, ...)."""


def sequence_logps(
    model: nn.Module, batch: EncodedBatch, *, chunk_size: ChunkSize = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the response tokens' log-probs per sequence, and their count.

    Returns ``(logp_sums [N], token_counts [N] long)``; sums are float32 (float64 for a float64
    model). Gradients flow to the model.
    ``chunk_size``: positions per LM-head chunk; ``"auto"`` sizes chunks to 128 MiB of float32
    logits; ``None`` computes full logits through ``model(...)`` (the plain reference
    computation; also the path for wrappers such as FSDP that must see the whole forward).
    """
    values, rows = _response_token_logps(model, batch, chunk_size)
    sums = torch.zeros(batch.num_rows, dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, rows, values)
    return sums, batch.response_lengths.to(values.device)


def token_logps(
    model: nn.Module, batch: EncodedBatch, *, chunk_size: ChunkSize = "auto"
) -> torch.Tensor:
    """Per-token log-probs ``[N, T]`` (float32, or float64), aligned with ``batch.input_ids``.

    Entry ``[i, t]`` is ``log π(input_ids[i, t] | input_ids[i, :t])`` where
    ``batch.response_mask[i, t]`` is true, and 0 elsewhere. Needs a padded (not packed) batch.
    """
    if batch.packed:
        raise ValueError("token_logps needs a padded batch, not a packed one")
    values, _ = _response_token_logps(model, batch, chunk_size)
    out = torch.zeros(batch.input_ids.shape, dtype=values.dtype, device=values.device)
    target = batch.response_mask.to(values.device).clone()
    target[:, 0] = False
    return out.masked_scatter(target, values)


def use_full_forward(model: nn.Module) -> None:
    """Always compute this model's log-probs from ``model(...).logits`` (see ``check_fast_path``);
    recorded on the innermost Hugging Face model, so it holds under PEFT adapters too."""
    _FULL_FORWARD_MODELS.add(innermost(model))


@torch.no_grad()
def check_fast_path(model: nn.Module) -> bool:
    """Whether ``lm_head(last hidden state)`` reproduces ``model(x).logits`` for this model.

    Some architectures transform the logits after the head (Gemma-2's soft-capping, Cohere's
    scale, Granite's divisor). When they differ, the model is switched to the full-forward
    path with a warning, so log-probs stay exact.
    """
    inner = unwrap(model)
    vocab = int(getattr(getattr(inner, "config", None), "vocab_size", 0) or 0)
    same = False
    if vocab > 0:
        ids = torch.arange(5, device=_model_device(inner)).remainder(vocab).unsqueeze(0)
        was_training = inner.training
        inner.eval()
        try:
            out = inner(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                use_cache=False,
                output_hidden_states=True,
            )
            got = inner.get_output_embeddings()(out.hidden_states[-1]).float()
            expected = out.logits.float()
            same = got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4)
        except (AttributeError, TypeError, NotImplementedError, RuntimeError):
            same = False
        finally:
            inner.train(was_training)
    if not same:
        warnings.warn(
            f"{type(inner).__name__}: logits are not lm_head(last hidden state); log-probs will "
            "use the model's full forward (exact, but materialises full-vocabulary logits)",
            stacklevel=2,
        )
        use_full_forward(inner)
    return same


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _forward_kwargs(batch: EncodedBatch) -> dict[str, torch.Tensor | bool | None]:
    kwargs: dict[str, torch.Tensor | bool | None] = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "use_cache": False,
    }
    if batch.position_ids is not None:
        kwargs["position_ids"] = batch.position_ids
    return kwargs


def _fsdp1(model: nn.Module) -> bool:
    """FSDP1: the head's full weight exists only inside the wrapped forward."""
    return "FullyShardedDataParallel" in type(model).__name__


def _is_dtensor(tensor: torch.Tensor | None) -> bool:
    if tensor is None:
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(tensor, DTensor)


def _full_weights(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head's weight and bias as plain tensors: an FSDP2-sharded (DTensor) weight is gathered
    with ``full_tensor()``, which is differentiable (its backward reduce-scatters the gradient
    back to the shards), so only the ``vocab x hidden`` weight is materialised, never the
    ``tokens x vocab`` logits."""
    weight, bias = head.weight, head.bias
    if _is_dtensor(weight):
        weight = weight.full_tensor()
    if _is_dtensor(bias):
        bias = bias.full_tensor()
    return weight, bias


def _response_token_logps(
    model: nn.Module, batch: EncodedBatch, chunk_size: ChunkSize
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of every response token, flattened in row-major order, and their row ids.

    The forward always goes through ``model`` itself (so DDP, PEFT and accelerate wrappers see
    it); the fast path asks it for hidden states and the logits of one position only.
    """
    inner = unwrap(model)
    batch = batch.to(_model_device(inner))
    # Position t-1 predicts token t; a response token is never a sequence's first token.
    selected = batch.response_mask[:, 1:]
    targets = batch.input_ids[:, 1:][selected]
    rows = batch.row_ids[:, 1:][selected]
    head = inner.get_output_embeddings()

    if chunk_size is None or innermost(inner) in _FULL_FORWARD_MODELS or _fsdp1(model):
        logits = model(**_forward_kwargs(batch)).logits[:, :-1][selected]
        chunk = _auto_chunk(logits.shape[-1])
        return _chunked_target_logps(logits, targets, lambda x: x, chunk), rows

    chunk = _auto_chunk(inner.config.vocab_size) if chunk_size == "auto" else int(chunk_size)
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, 'auto' or None, got {chunk_size}")
    kwargs = _forward_kwargs(batch)
    kwargs["output_hidden_states"] = True
    keep = logits_to_keep_argument(inner)
    if keep is not None:
        kwargs[keep] = 1
    hidden = model(**kwargs).hidden_states[-1][:, :-1][selected]
    plain_linear = type(head) is nn.Linear and not hasattr(head, "_hf_hook")
    if plain_linear or (isinstance(head, nn.Linear) and _is_dtensor(head.weight)):  # FSDP2: FSDPLinear
        weight, bias = _full_weights(head)
        return _LinearTargetLogProb.apply(hidden, weight, bias, targets, chunk), rows
    return _chunked_target_logps(hidden, targets, head, chunk), rows


def _auto_chunk(vocab: int) -> int:
    return max(1, _AUTO_CHUNK_ELEMENTS // max(vocab, 1))


def _reduction_dtype(dtype: torch.dtype) -> torch.dtype:
    """Logits are reduced in float32, or float64 for a float64 model."""
    return torch.promote_types(dtype, torch.float32)


def _target_logps(inputs: torch.Tensor, targets: torch.Tensor, head: Callable) -> torch.Tensor:
    logits = head(inputs)
    logits = logits.to(_reduction_dtype(logits.dtype))
    return logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def _chunked_target_logps(
    inputs: torch.Tensor, targets: torch.Tensor, head: Callable, chunk: int
) -> torch.Tensor:
    """Any head: each chunk is checkpointed, so its logits are recomputed in the backward."""
    parts = []
    for start in range(0, inputs.shape[0], chunk):
        args = (inputs[start : start + chunk], targets[start : start + chunk])
        if torch.is_grad_enabled() and inputs.requires_grad and inputs.shape[0] > chunk:
            parts.append(checkpoint(_target_logps, *args, head, use_reentrant=False))
        else:
            parts.append(_target_logps(*args, head))
    if not parts:
        return inputs.new_zeros(0, dtype=_reduction_dtype(inputs.dtype))
    return torch.cat(parts)


def _autocast_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


class _LinearTargetLogProb(torch.autograd.Function):
    """``log_softmax(hidden @ weight.T + bias)[targets]`` chunk by chunk, recomputed in backward.

    Forward keeps ``hidden`` and one float32 log-sum-exp per position. With ``g`` the incoming
    gradient and ``p = softmax(logits)``: ``d logits = g (onehot(target) - p)``, then
    ``d hidden = d logits @ weight`` and ``d weight = d logits.T @ hidden``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        device_type = hidden.device.type
        compute = _autocast_dtype(device_type, hidden.dtype)
        reduce = _reduction_dtype(compute)
        ctx.compute_dtype, ctx.reduce_dtype, ctx.chunk = compute, reduce, chunk
        out = torch.empty(hidden.shape[0], dtype=reduce, device=hidden.device)
        lse = torch.empty_like(out)
        with torch.autocast(device_type, enabled=False):
            w = weight.to(compute)
            b = bias.to(compute) if bias is not None else None
            for start in range(0, hidden.shape[0], chunk):
                stop = start + chunk
                logits = F.linear(hidden[start:stop].to(compute), w, b).to(reduce)
                out[start:stop] = logits.gather(1, targets[start:stop, None]).squeeze(1)
                # log-sum-exp in place: one chunk-sized buffer at a time.
                peak = logits.amax(dim=-1)
                logits.sub_(peak[:, None]).exp_()
                lse[start:stop] = logits.sum(dim=-1).log_().add_(peak)
        out -= lse
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        compute, reduce, chunk = ctx.compute_dtype, ctx.reduce_dtype, ctx.chunk
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = grad_bias = None
        if need_weight:
            grad_weight = torch.zeros(weight.shape, dtype=reduce, device=weight.device)
        if need_bias:
            grad_bias = torch.zeros(bias.shape, dtype=reduce, device=bias.device)
        grad_out = grad_out.to(reduce)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            b = bias.to(compute) if bias is not None else None
            for start in range(0, hidden.shape[0], chunk):
                stop = start + chunk
                h = hidden[start:stop].to(compute)
                g = grad_out[start:stop]
                # d logits = g * (onehot - softmax), built in place in the logits buffer.
                d_logits = F.linear(h, w, b).to(reduce)
                d_logits.sub_(lse[start:stop, None]).exp_().mul_(-g[:, None])
                d_logits.scatter_add_(1, targets[start:stop, None], g[:, None])
                if need_bias:
                    grad_bias += d_logits.sum(0)
                d_logits = d_logits.to(compute)
                if need_hidden:
                    grad_hidden[start:stop] = (d_logits @ w).to(hidden.dtype)
                if need_weight and compute == reduce:
                    grad_weight.addmm_(d_logits.t(), h)
                elif need_weight:
                    grad_weight += d_logits.t() @ h
        if need_weight:
            grad_weight = grad_weight.to(weight.dtype)
        if need_bias:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None


def tail_logps(
    model: nn.Module, batch: EncodedBatch, keep: torch.Tensor, *, chunk_size: ChunkSize = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp_sums [N], tail_sums [N])``: every response's log-prob sum, and the sum over its
    tokens past the first ``keep[i]`` response tokens (LD-DPO's excess; ``keep`` is the shared
    length ``min(|y_c|, |y_r|)`` of each row's pair). Gradients flow; needs a padded batch."""
    per_token = token_logps(model, batch, chunk_size=chunk_size)
    mask = batch.response_mask.to(per_token.device)
    position = mask.long().cumsum(dim=1)
    tail = mask & (position > keep.to(per_token.device)[:, None])
    return (per_token * mask).sum(dim=1), (per_token * tail).sum(dim=1)


@torch.no_grad()
def wpo_weight_logps(model: nn.Module, batch: EncodedBatch, *, rows_per_chunk: int = 8) -> torch.Tensor:
    """WPO's weight exponent per sequence (Zhou et al. 2024, arXiv 2406.11827, §3.2): the mean over
    its response tokens of ``log π(y_t|·) − log Σ_v π(v|·)²`` (TRL 1.16's ``use_weighting``), so
    the pair's weight is ``exp(chosen + rejected)``. No gradients; full-vocabulary logits are
    built for ``rows_per_chunk`` rows at a time. Needs a padded batch."""
    if batch.packed:
        raise ValueError("wpo_weight_logps needs a padded batch, not a packed one")
    inner = unwrap(model)
    batch = batch.to(_model_device(inner))
    out = torch.zeros(batch.num_rows, dtype=torch.float32, device=batch.input_ids.device)
    for start in range(0, batch.num_rows, rows_per_chunk):
        part = batch.select(list(range(start, min(batch.num_rows, start + rows_per_chunk))))
        logits = model(**_forward_kwargs(part)).logits[:, :-1].float()
        targets = part.input_ids[:, 1:]
        selected = part.response_mask[:, 1:]
        lse = torch.logsumexp(logits, dim=-1)
        token = logits.gather(-1, targets[..., None])[..., 0] - lse
        log_sum_sq = torch.logsumexp(2 * logits, dim=-1) - 2 * lse
        aligned = ((token - log_sum_sq) * selected).sum(dim=1)
        out[start : start + part.num_rows] = aligned / selected.sum(dim=1).clamp_min(1)
    return out
