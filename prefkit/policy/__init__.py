"""Policies: Hugging Face causal LMs or the tiny preset, sequence log-probs and sampling.

- ``Policy``: ``Policy.tiny(texts, tiny_cfg)``, ``Policy.load(path)``, ``policy.save(dir)``,
  ``encode``/``encode_pairs``/``encode_token_ids`` -> ``EncodedBatch``, ``sample`` ->
  ``Samples``, ``logprob``/``logprob_ids``;
- ``sequence_logps(model, batch)`` and ``token_logps(model, batch)``: response-token
  log-probs with a chunked LM head (gradients flow); ``tail_logps`` (LD-DPO's excess) and
  ``wpo_weight_logps`` (WPO's weights), the extra inputs of those losses;
- ``prefkit.policy.chat``: TRL 1.16's prompt/completion tokenization rules;
- ``build_tiny_checkpoint(dir, texts, tiny_cfg, seed)``: a tiny model saved as a normal
  Hugging Face directory;
- ``SharedCritic`` / ``SeparateCritic``: PPO value heads on a causal LM's hidden states
  (``save_critic``/``load_critic``; ``value``).
- ``prefkit.policy.lora``: LoRA/QLoRA adapters through PEFT, the adapters-off reference
  (``AdaptersOff``) and the merged/adapter outputs (docs/policy.md, "LoRA and QLoRA").
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
from prefkit.policy.policy import (
    Policy,
    build_tiny_checkpoint,
    check_device,
    require_safetensors,
    resolve_device,
    resolve_dtype,
)
from prefkit.policy.sampling import Samples
from prefkit.policy.value import (
    SeparateCritic,
    SharedCritic,
    ValueHead,
    backbone_of,
    load_critic,
    save_critic,
)

__all__ = [
    "EncodedBatch",
    "Policy",
    "Samples",
    "SeparateCritic",
    "SequenceTooLongError",
    "SharedCritic",
    "ValueHead",
    "backbone_of",
    "build_tiny_checkpoint",
    "check_device",
    "check_fast_path",
    "count_tokens",
    "load_critic",
    "require_safetensors",
    "resolve_device",
    "resolve_dtype",
    "save_critic",
    "sequence_logps",
    "tail_logps",
    "token_logps",
    "use_full_forward",
    "wpo_weight_logps",
]
