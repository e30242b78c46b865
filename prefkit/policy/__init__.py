"""Policies: Hugging Face causal LMs or the tiny preset, sequence log-probs and sampling.

- ``Policy``: ``Policy.tiny(texts, tiny_cfg)``, ``Policy.load(path)``, ``policy.save(dir)``,
  ``encode``/``encode_pairs``/``encode_token_ids`` -> ``EncodedBatch``, ``sample`` ->
  ``Samples``, ``logprob``/``logprob_ids``;
- ``sequence_logps(model, batch)`` and ``token_logps(model, batch)``: response-token
  log-probs with a chunked LM head (gradients flow); ``tail_logps`` (LD-DPO's excess) and
  ``wpo_weight_logps`` (WPO's weights), the extra inputs of those losses;
- ``prefkit.policy.chat``: TRL 1.16's prompt/completion tokenization rules;
- ``build_tiny_checkpoint(dir, texts, tiny_cfg, seed)``: a tiny model saved as a normal
  Hugging Face directory.
"""

from prefkit.policy.encoding import EncodedBatch, SequenceTooLongError, count_tokens
from prefkit.policy.logps import (
    check_fast_path,
    sequence_logps,
    tail_logps,
    token_logps,
    use_full_forward,
    wpo_weight_logps,
)
from prefkit.policy.policy import Policy, build_tiny_checkpoint, resolve_device, resolve_dtype
from prefkit.policy.sampling import Samples

__all__ = [
    "EncodedBatch",
    "Policy",
    "Samples",
    "SequenceTooLongError",
    "build_tiny_checkpoint",
    "check_fast_path",
    "count_tokens",
    "resolve_device",
    "resolve_dtype",
    "sequence_logps",
    "tail_logps",
    "token_logps",
    "use_full_forward",
    "wpo_weight_logps",
]
