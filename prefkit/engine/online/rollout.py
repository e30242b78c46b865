"""Generation for the online step: batched sampling with a KV cache, timed and counted.

``Sampler`` draws responses from the policy (or from Nash-MD's token-level geometric mixture
with the reference) through ``Policy.sample`` — the Hugging Face path, batched over every
prompt and sample of a step with a KV cache. With ``online.backend=vllm`` the draws come from
a vLLM engine instead (GPU machines, extra ``vllm``); the policy's weights are copied into it
before each draw and the sampled ids are re-scored by the policy, so the log-probs the losses
see are always the training model's own, at temperature 1. Mixture sampling needs both models'
logits at every token and stays on the Hugging Face path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prefkit.data.records import Text
from prefkit.errors import InputError
from prefkit.policy import Policy, Samples
from prefkit.policy.encoding import first_token_rule
from prefkit.policy.policy import keep_end


@dataclass
class GenerationStats:
    """Cumulative generation cost: seconds and sampled tokens (end-of-sequence included)."""

    seconds: float = 0.0
    tokens: int = 0
    responses: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "tokens": self.tokens, "responses": self.responses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds, self.tokens, self.responses = float(state["seconds"]), int(state["tokens"]), int(state["responses"])


class Sampler:
    """Draws ``n`` responses per prompt for the online step and keeps the cost."""

    def __init__(self, policy: Policy, *, max_new_tokens: int, top_p: float = 1.0,
                 max_prompt_length: int | None = None, backend: str = "hf",
                 vllm_gpu_memory_utilization: float = 0.3, rank: int = 0, world: int = 1) -> None:
        self.policy = policy
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.max_prompt_length = max_prompt_length
        self.stats = GenerationStats()
        self._vllm: VLLMBackend | None = None
        if backend == "vllm":
            self._vllm = VLLMBackend(policy, gpu_memory_utilization=vllm_gpu_memory_utilization, rank=rank,
                                     world=world)
        elif backend != "hf":
            raise ValueError(f"online.backend must be 'hf' or 'vllm', got {backend!r}")

    def sample(self, prompts: Sequence[Text], n: int, *, seed: int, temperature: float = 1.0,
               policy: Policy | None = None, mixture: tuple[Policy, float] | None = None) -> Samples:
        """``n`` responses per prompt from ``policy`` (default: the trained policy) or from the
        mixture ``softmax((1 - coef) logits + coef ref_logits)`` when ``mixture=(ref, coef)``
        with ``0 < coef < 1`` (``coef = 1`` samples the reference itself, ``0`` the policy).
        Reproducible from ``seed``."""
        source = policy or self.policy
        if mixture is not None:
            reference, coef = mixture
            if coef >= 1.0:
                source, mixture = reference, None
            elif coef <= 0.0:
                mixture = None
        began = time.perf_counter()
        if self._vllm is not None and mixture is None and source is self.policy:
            samples = self._vllm.sample(prompts, n, seed=seed, temperature=temperature, top_p=self.top_p,
                                        max_new_tokens=self.max_new_tokens, max_prompt_length=self.max_prompt_length)
        else:
            generator = torch.Generator(device=source.device).manual_seed(seed)
            samples = source.sample(prompts, n, max_new_tokens=self.max_new_tokens, temperature=temperature,
                                    top_p=self.top_p, generator=generator, mixture=mixture,
                                    max_prompt_length=self.max_prompt_length)
        self.stats.seconds += time.perf_counter() - began
        self.stats.tokens += int(samples.lengths.sum())
        self.stats.responses += int(samples.lengths.numel())
        return samples


class VLLMBackend:
    """vLLM generation behind the ``Sampler`` interface (colocated: one engine per process, on
    that process's GPU, the policy's architecture).

    The engine is built once from a saved copy of the policy; before every draw (every step,
    or every round of a batched-iterative method) the policy's current weights are loaded into
    it (``model.load_weights``; a LoRA policy's merged weights ``W + (alpha / r) B A``), so samples
    are on-policy. Under several processes each rank runs its own engine through vLLM's
    ``external_launcher`` (as TRL's colocate mode does) with its rank as the seed offset. Sampled
    ids are re-scored by the policy (exact training log-probs at temperature 1).
    """

    def __init__(self, policy: Policy, *, gpu_memory_utilization: float, rank: int = 0, world: int = 1) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise InputError(
                "vLLM is not installed: pip install 'prefkit[vllm]' (GPU machines); "
                "the default online.backend=hf needs nothing extra", field="online.backend"
            ) from None
        if policy.device.type != "cuda":
            raise InputError("vLLM needs the policy on a CUDA device (train.device=cuda or auto on a GPU machine)",
                             field="online.backend")
        import os
        import tempfile

        from vllm import LLM

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process
        self.policy = policy
        self._dir = tempfile.mkdtemp(prefix="prefkit-vllm-")
        policy.save(self._dir)
        launch: dict[str, Any] = {"distributed_executor_backend": "external_launcher", "seed": rank} if world > 1 else {}
        self.llm = LLM(model=self._dir, gpu_memory_utilization=gpu_memory_utilization,
                       dtype=str(policy.dtype).replace("torch.", ""), enable_prefix_caching=True, **launch)

    def _model(self) -> Any:
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        runner = getattr(getattr(worker, "worker", worker), "model_runner", None)
        model = getattr(runner, "model", None)
        if model is None or not hasattr(model, "load_weights"):
            raise RuntimeError("this vLLM version does not expose the in-process model for weight sync; "
                               "use online.backend=hf")
        return model

    def sync_weights(self) -> None:
        from prefkit.policy.lora import is_lora, merged_state_dict

        model = self.policy.model
        with torch.no_grad():
            weights = merged_state_dict(model, device=self.policy.device) if is_lora(model) else model.state_dict()
            self._model().load_weights((name, p.detach()) for name, p in weights.items())
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()

    def sample(self, prompts: Sequence[Text], n: int, *, seed: int, temperature: float, top_p: float,
               max_new_tokens: int, max_prompt_length: int | None) -> Samples:
        from vllm import SamplingParams

        try:
            from vllm.inputs import TokensPrompt
        except ImportError:  # pragma: no cover - older vLLM
            TokensPrompt = dict
        self.sync_weights()
        prompt_ids = self.policy.prompt_ids(prompts)
        if max_prompt_length is not None:
            specials = first_token_rule(self.policy.tokenizer)
            prompt_ids = [keep_end(ids, max_prompt_length, bool(ids) and ids[0] in specials) for ids in prompt_ids]
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], params, use_tqdm=False)
        eos = self.policy.eos_ids
        token_ids, finished = [], []
        for out in outputs:
            rows, done = [], []
            for completion in out.outputs:
                ids = list(completion.token_ids)
                stopped = completion.finish_reason == "stop"
                if stopped and (not ids or ids[-1] not in eos):
                    ids.append(eos[0])
                rows.append(ids)
                done.append(stopped)
            token_ids.append(rows), finished.append(done)
        flat_prompts = [ids for ids, rows in zip(prompt_ids, token_ids) for _ in rows]
        flat_ids = [ids for rows in token_ids for ids in rows]
        logps = self.policy.logprob_ids(flat_prompts, flat_ids).view(len(prompt_ids), n)
        texts = [[self.policy.tokenizer.decode(ids[:-1] if d else ids) for ids, d in zip(rows, done)]
                 for rows, done in zip(token_ids, finished)]
        lengths = torch.tensor([[len(ids) for ids in rows] for rows in token_ids])
        return Samples(texts=texts, token_ids=token_ids, logps=logps, lengths=lengths,
                       finished=torch.tensor(finished), prompt_ids=prompt_ids)
