"""Batched ancestral sampling with a KV cache, temperature, nucleus (top-p) and Nash-MD mixtures.

Prompts are left padded; position ids count only real tokens, so each row sees exactly the
positions it would see alone. Each row stops at its first end-of-sequence token. With
``mixture=(reference, coef)`` tokens are drawn from the token-level geometric mixture
``softmax((1 - coef) * logits + coef * ref_logits)`` (Munos et al. 2024, "Nash Learning from
Human Feedback", arXiv:2312.00886, App. F.1: the per-prefix approximation of
``π^{1-β} μ^β``); the reference keeps its own cache. The returned log-probs are always those
of the policy itself at temperature 1, ``log π(y|x)``, whatever distribution drew ``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prefkit.policy._hf import cache_argument, logits_to_keep_argument


@dataclass(frozen=True)
class Samples:
    """``n`` responses for each of ``P`` prompts.

    - ``texts[i][j]``: the decoded response (end-of-sequence token excluded);
    - ``token_ids[i][j]``: the sampled ids, *including* the final end-of-sequence token when
      the response finished (so they re-score exactly with ``Policy.logprob_ids``);
    - ``logps [P, n]``: ``log π(y|x)`` summed over ``token_ids`` (float32, no grad);
    - ``lengths [P, n]``: ``len(token_ids[i][j])``;
    - ``finished [P, n]``: whether the response ended with an end-of-sequence token (otherwise
      it was cut at ``max_new_tokens``);
    - ``prompt_ids[i]``: the prompt's ids as the model saw them (``bos`` included).
    """

    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    logps: torch.Tensor
    lengths: torch.Tensor
    finished: torch.Tensor
    prompt_ids: list[list[int]]

    @property
    def flat_prompt_ids(self) -> list[list[int]]:
        """Prompt ids repeated per sample, prompt-major (row ``i * n + j``)."""
        return [ids for ids, row in zip(self.prompt_ids, self.token_ids) for _ in row]

    @property
    def flat_token_ids(self) -> list[list[int]]:
        return [ids for row in self.token_ids for ids in row]

    @property
    def flat_texts(self) -> list[str]:
        return [text for row in self.texts for text in row]


def last_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    past: object | None,
    use_cache: bool,
) -> tuple[torch.Tensor, object | None]:
    """Float32 logits at the last position ``[N, V]`` (only that position is computed where the
    model allows), and the new KV cache when ``use_cache``."""
    cache_name, keep = cache_argument(model), logits_to_keep_argument(model)
    kwargs: dict[str, object] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "use_cache": use_cache,
    }
    if past is not None:
        kwargs[cache_name] = past
    if keep is not None:
        kwargs[keep] = 1
    out = model(**kwargs)
    new_past = None
    if use_cache:
        new_past = out["cache"] if "cache" in out else out.get("past_key_values")
    return out.logits[:, -1].float(), new_past


def choose_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One token per row: greedy when ``temperature == 0``, else nucleus sampling.

    Nucleus sampling (Holtzman et al. 2020, arXiv:1904.09751) keeps the smallest set of most
    probable tokens whose probability reaches ``top_p`` (always at least the top token).
    Draws use one uniform number per row against the cumulative distribution (inverse-CDF),
    which is much cheaper than ``torch.multinomial``'s one exponential per vocabulary entry.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return _inverse_cdf(probs, generator)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return order.gather(-1, _inverse_cdf(sorted_probs, generator)[:, None]).squeeze(-1)


def _inverse_cdf(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Index ``i`` with probability ``weights[i] / sum(weights)`` per row (zero weights never)."""
    cdf = weights.double().cumsum(-1)
    u = torch.rand(
        (weights.shape[0], 1), generator=generator, dtype=torch.float64, device=weights.device
    )
    drawn = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    # u * total rounding up to total would step past the last token with positive weight.
    last_positive = weights.shape[-1] - 1 - (weights > 0).flip(-1).int().argmax(-1)
    return torch.minimum(drawn, last_positive)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def sample_ids(
    model: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    mixture: tuple[nn.Module, float] | None = None,
    use_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one response per row of ``prompt_ids``.

    Returns ``(tokens [B, S], logps [B], lengths [B], finished [B])``: ``tokens[b, :lengths[b]]``
    are the sampled ids (``pad_id`` after), ``logps`` their summed log-prob under ``model`` at
    temperature 1. ``use_cache=False`` recomputes the whole prefix at every step (slow; kept to
    check the cache and to measure its speed-up).
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if any(len(row) == 0 for row in prompt_ids):
        raise ValueError("every prompt needs at least one token to condition on")
    models = [model]
    coef = 0.0
    if mixture is not None:
        reference, coef = mixture
        if not 0.0 <= coef <= 1.0:
            raise ValueError(f"mixture coefficient must be in [0, 1], got {coef}")
        models.append(reference)
    device = next(model.parameters()).device
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        ids, mask = left_pad(prompt_ids, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        batch = ids.shape[0]
        eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
        tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
        logps = torch.zeros(batch, dtype=torch.float32, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)

        steps = [last_logits(m, ids, mask, positions, None, use_cache) for m in models]
        for t in range(max_new_tokens):
            logits = steps[0][0]
            if mixture is not None:
                ref_logits = steps[1][0]
                if ref_logits.shape != logits.shape:
                    raise ValueError(
                        f"policy and reference vocabularies differ ({logits.shape[-1]} vs "
                        f"{ref_logits.shape[-1]}); a mixture needs the same tokenizer"
                    )
                sampler_logits = (1.0 - coef) * logits + coef * ref_logits
            else:
                sampler_logits = logits
            chosen = choose_tokens(
                sampler_logits, temperature=temperature, top_p=top_p, generator=generator
            )
            chosen = chosen.masked_fill(finished, pad_id)
            step_logp = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None]).squeeze(1)
            logps += step_logp.masked_fill(finished, 0.0)
            lengths += (~finished).long()
            tokens[:, t] = chosen
            finished |= torch.isin(chosen, eos)
            if t + 1 == max_new_tokens or bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            if use_cache:
                step_ids, step_positions = chosen[:, None], positions[:, -1:] + 1
                positions = torch.cat([positions, step_positions], dim=1)
                steps = [
                    last_logits(m, step_ids, mask, step_positions, past, True)
                    for m, (_, past) in zip(models, steps)
                ]
            else:
                ids = torch.cat([ids, chosen[:, None]], dim=1)
                positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
                steps = [last_logits(m, ids, mask, positions, None, False) for m in models]
        width = int(lengths.max()) if batch else 0
        return tokens[:, :width].cpu(), logps.cpu(), lengths.cpu(), finished.cpu()
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
