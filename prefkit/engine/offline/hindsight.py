"""Chain of Hindsight (``prefkit train --method coh``): feedback-conditioned SFT on segment-masked
sequences, and sampling conditioned on the positive phrase.

Chain of Hindsight (Liu, Sferrazza & Abbeel 2023, arXiv 2302.02676; algorithms.md §11a) turns each
decided pair into sequences such as ``"User: {x} An unhelpful answer: {y-} A helpful answer: {y+}"``
(``prefkit.data.hindsight``) and trains next-token cross-entropy **on the response fields only**.

The per-token mask is built from the segments, exactly: the leading non-trainable segments (the
user turn and the first feedback phrase) are the prompt, ``[bos] + tokens(text)`` as every prefkit
prompt; each later segment is tokenized on its own (``Policy.response_ids`` without eos) and its
tokens are trained iff the segment is a response; the eos after the last response is trained (the
model learns to stop). So a token is in the loss exactly when it belongs to a response field, and
the ``p`` template's sequence is token for token what the policy sees at inference: the prompt
``"User: {x} A helpful answer:"`` followed by its answer. A sequence longer than
``train.max_length`` keeps its first ``max_length`` tokens (``train.truncation=truncate``,
counted) or stops the run naming the pair's file and line (``error``). The step is the SFT shape
(:class:`~prefkit.engine.offline.shapes.SFTShape`): the loss is the summed NLL of the trained
tokens over their number in the global batch.

Inference: the trained policy is sampled on :meth:`InferenceFormat.apply` of the prompt and each
sample is cut at the first feedback phrase it goes on to write. The run writes the format into
``policy/prefkit_inference.json``; ``prefkit eval --world`` and training with ``--world`` use it
(:func:`evaluate_formatted_on_world`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prefkit._atomic import atomic_write_json
from prefkit.config import EvalConfig, RunConfig, TrainConfig
from prefkit.data import check_batch_size
from prefkit.data.hindsight import (
    INFERENCE_FILE,
    PHRASES,
    HindsightExample,
    InferenceFormat,
    hindsight_examples,
    hindsight_format,
)
from prefkit.data.records import PairRecord
from prefkit.engine.data import TrainData
from prefkit.engine.methods import Method
from prefkit.engine.models import (
    build_policy,
    initial_reference,
    lora_summary,
    prepare_for_training,
    save_policy_outputs,
    with_lora,
)
from prefkit.engine.offline.shapes import SFTShape
from prefkit.engine.run import RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import EncodedBatch, Policy


@dataclass
class MaskedExamples:
    """Whole token sequences and which of their tokens the loss covers (``trained[i][t]``)."""

    ids: list[list[int]]
    trained: list[list[bool]]
    truncated: int
    templates: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: Sequence[int], cfg: TrainConfig, pad_id: int, keep_bos: bool) -> EncodedBatch:
        """A right-padded batch whose ``response_mask`` is the trained tokens (``prompt_lengths`` +
        ``response_lengths`` = the row's length; ``response_lengths`` counts the trained tokens)."""
        rows = [self.ids[i] for i in index]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, i in enumerate(index):
            n = len(self.ids[i])
            input_ids[j, :n] = torch.tensor(self.ids[i], dtype=torch.long)
            attention[j, :n] = 1
            mask[j, :n] = torch.tensor(self.trained[i], dtype=torch.bool)
        trained = mask.sum(1)
        lengths = attention.sum(1)
        rows_of = torch.where(attention.bool(), torch.arange(len(rows))[:, None], -1)
        return EncodedBatch(input_ids=input_ids, attention_mask=attention, response_mask=mask, row_ids=rows_of,
                            prompt_lengths=lengths - trained, response_lengths=trained,
                            truncated=torch.zeros(len(rows), dtype=torch.bool))


def segment_ids(policy: Policy, example: HindsightExample) -> tuple[list[int], list[bool]]:
    """Token ids of one CoH sequence and, per token, whether the loss covers it (module doc)."""
    segments = list(example.segments)
    lead = 0
    while lead < len(segments) and not segments[lead].train:
        lead += 1
    if lead == 0 or lead == len(segments):
        raise ValueError("a CoH sequence starts with its prompt and holds at least one response")
    (ids,) = policy.prompt_ids([" ".join(s.text for s in segments[:lead])])
    ids = list(ids)
    trained = [False] * len(ids)
    rest = segments[lead:]
    pieces = policy.response_ids([s.text for s in rest], add_eos=False)
    for segment, piece in zip(rest, pieces):
        ids += piece
        trained += [segment.train] * len(piece)
    if rest[-1].train:
        ids.append(policy.tokenizer.eos_token_id)
        trained.append(True)
    return ids, trained


def tokenize_hindsight(policy: Policy, examples: Sequence[HindsightExample], cfg: TrainConfig) -> MaskedExamples:
    """Every example's ids and mask; over-long sequences are cut (counted) or refused
    (``train.truncation=error``) naming the pair's file and line."""
    if not examples:
        raise InputError("no Chain of Hindsight sequences: every pair is a tie (label 0.5) or the data is empty")
    out_ids, out_mask, truncated = [], [], 0
    for example in examples:
        ids, trained = segment_ids(policy, example)
        file, line = example.source if example.source else (None, None)
        if len(ids) > cfg.max_length:
            if cfg.truncation == "error":
                raise InputError(f"the Chain of Hindsight sequence (template {example.template}) is {len(ids)} tokens, "
                                 f"over train.max_length={cfg.max_length}", file=file, line=line,
                                 field="chosen+rejected")
            ids, trained = ids[:cfg.max_length], trained[:cfg.max_length]
            truncated += 1
            if not any(trained):
                raise InputError(f"the prompt of the Chain of Hindsight sequence fills train.max_length="
                                 f"{cfg.max_length}: no response token is left to train on", file=file, line=line,
                                 field="prompt")
        out_ids.append(ids), out_mask.append(trained)
    return MaskedExamples(out_ids, out_mask, truncated, [e.template for e in examples])


def check_phrases(policy: Policy, phrases: Sequence[int]) -> None:
    """The tokenizer must tell each positive phrase from its negative one, with no unknown tokens
    (a word-level tokenizer fitted without them maps both to ``<unk>``: CoH would learn nothing)."""
    unk = policy.tokenizer.unk_token_id
    for k in phrases:
        positive, negative = (policy.response_ids([p], add_eos=False)[0] for p in PHRASES[k])
        if positive == negative or (unk is not None and (unk in positive or unk in negative)):
            raise InputError(f"this model's tokenizer cannot tell the feedback phrases {PHRASES[k][0]!r} and "
                             f"{PHRASES[k][1]!r} apart (unknown words): with --model tiny they are part of the "
                             "fitted vocabulary; for a given policy choose coh.phrases its tokenizer knows",
                             field="coh.phrases")


def hindsight_data(records: Sequence[PairRecord], cfg: RunConfig) -> tuple[list[HindsightExample], int]:
    """The run's CoH sequences (a pure function of the pairs and the seed, so a resumed run
    rebuilds them exactly) and the number of ties skipped."""
    return hindsight_examples(records, np.random.default_rng(cfg.seed), templates=cfg.coh.templates,
                              phrases=cfg.coh.phrases, per_pair=cfg.coh.per_pair)


def run_hindsight(session: RunSession, method: Method, *, data: TrainData | None, policy: Policy | None,
                  reference: Policy | None, evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None,
                  progress: bool | None) -> TrainResult:
    """Train Chain of Hindsight on pairs (``data.pairs`` or ``data.path``); write the run's outputs
    and ``policy/prefkit_inference.json``."""
    from prefkit.data import eval_source, read_options, read_pairs, train_source

    cfg = session.cfg
    if data is not None and data.pairs is not None:
        records = list(data.pairs)
    else:
        if cfg.data.path is None:
            raise InputError("no training data: pass --data FILE (pairs)", field="data.path")
        records, _ = read_pairs(train_source(cfg.data), **read_options(cfg.data))
    examples, ties = hindsight_data(records, cfg)
    eval_examples_raw: list[HindsightExample] = []
    held_out_source = eval_source(cfg.data)
    if held_out_source is not None:
        held_out, _ = read_pairs(held_out_source, **read_options(cfg.data))
        eval_examples_raw, _ = hindsight_data(held_out, cfg)
    setup_start = time.perf_counter()
    reference_given = reference is not None
    loaded_from_model = policy is None
    if policy is None:
        texts = [e.text for e in [*examples, *eval_examples_raw]] + [p for pair in PHRASES for p in pair]
        policy = build_policy(cfg, texts, session.device, session.model_dtype)
    else:
        policy = with_lora(cfg, policy)
    prepare_for_training(cfg, policy.model)
    check_phrases(policy, cfg.coh.phrases)
    tokenized = tokenize_hindsight(policy, examples, cfg.train)
    check_batch_size(cfg.train.batch_size, len(tokenized), what="Chain of Hindsight sequences", file=cfg.data.path)
    eval_tokenized = tokenize_hindsight(policy, eval_examples_raw, cfg.train) if eval_examples_raw else None
    save_reference = not cfg.ref_model and (cfg.model == "tiny" or reference_given)
    if reference is None and (evaluate is not None or save_reference):
        reference = initial_reference(policy)
    setup_s = time.perf_counter() - setup_start
    shape = SFTShape(session, policy, tokenized, label=method.name, eval_examples=eval_tokenized)
    world_eval = (lambda step: evaluate(policy, reference, step)) if evaluate is not None else None
    fit = session.fit(shape, policy.model, label=method.name, evaluate=world_eval, progress=progress)
    fmt = hindsight_format(cfg.coh.inference_phrase, cfg.coh.phrases)

    def save() -> None:
        save_policy_outputs(cfg, session.out, policy, reference, loaded_from_model=loaded_from_model,
                            save_reference=save_reference, state_dict=session.state_dict)
        atomic_write_json(session.out / "policy" / INFERENCE_FILE, fmt.to_json())

    session.on_main(save)
    counts = {t: tokenized.templates.count(t) for t in cfg.coh.templates}
    summary = session.finish({
        **fit.summary(method.name),
        "setup_s": setup_s,
        "examples": len(tokenized),
        "pairs": len(records),
        "ties_skipped": ties,
        "templates": counts,
        "truncated_rows": tokenized.truncated,
        "inference_prompt": fmt.template,
        "processes": session.world,
        **lora_summary(policy.model),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    })
    return TrainResult(policy=policy, metrics=summary, history=fit.history)


# ----------------------------------------------------------------------------- inference

def sample_formatted(policy: Policy, prompts: Sequence[str], fmt: InferenceFormat, cfg: EvalConfig, seed: int, *,
                     temperature: float | None = None) -> tuple[list[list[str]], Any]:
    """``cfg.samples`` answers per prompt, sampled on ``fmt.apply(prompt)`` and cut at the first
    stop phrase; also the raw ``Samples`` (for the KL)."""
    from prefkit.engine.evaluation import sample_texts

    samples = sample_texts(policy, [fmt.apply(p) for p in prompts], cfg, seed, temperature=temperature)
    return [[fmt.cut(t) for t in row] for row in samples.texts], samples


def evaluate_formatted_on_world(policy: Policy, reference: Policy, world: Any, cfg: EvalConfig, fmt: InferenceFormat,
                                *, seed: int = 0, ref_samples: Any = None, pool: Any = None) -> tuple[Any, list]:
    """``(Evaluation, answers)`` of a policy prompted with ``fmt`` against ``reference`` prompted plainly,
    under the world's P* (as ``prefkit.engine.evaluation.evaluate_on_world``). Win-rates use the cut
    answers; the KL is ``E[log pi(y | fmt(x)) - log pi_ref(y | x)]`` on uncut samples at temperature 1,
    the divergence of what the policy is sampled from to the reference's own distribution."""
    from dataclasses import replace

    from prefkit.engine.evaluation import sample_texts
    from prefkit.sim.evaluation import evaluate

    prompts = world.prompts("eval", cfg.prompts)
    answers, samples = sample_formatted(policy, prompts, fmt, cfg, seed)
    if ref_samples is None:
        ref_samples = sample_texts(reference, prompts, cfg, seed + 1)
    result = evaluate(world, prompts, answers, ref_samples.texts, pool=pool)
    if cfg.temperature != 1.0:
        _, samples = sample_formatted(policy, prompts, fmt, cfg, seed + 3, temperature=1.0)
    n = len(samples.token_ids[0])
    plain = reference.prompt_ids(prompts)
    ref = reference.logprob_ids([ids for ids in plain for _ in range(n)],
                                [ids for row in samples.token_ids for ids in row]).view(len(prompts), n).numpy()
    per_prompt = (samples.logps.numpy() - ref).mean(axis=1)
    kl_se = float(per_prompt.std(ddof=1) / np.sqrt(len(per_prompt))) if len(per_prompt) > 1 else 0.0
    return replace(result, kl=float(per_prompt.mean()), kl_se=kl_se), answers


def formatted_world_evaluator(cfg: RunConfig, fmt: InferenceFormat) -> Callable[[Policy, Policy | None, int],
                                                                                 dict[str, Any]]:
    """``prefkit.engine.evaluation.world_evaluator`` for a policy prompted with ``fmt``."""
    from prefkit.engine.evaluation import sample_texts
    from prefkit.sim import make_world

    world = make_world(cfg.eval.world, seed=cfg.seed)
    cache: dict[str, Any] = {}

    def evaluate(policy: Policy, reference: Policy | None, step: int) -> dict[str, Any]:
        if reference is None:
            raise ValueError("world evaluation needs a reference policy")
        if "ref" not in cache:
            cache["ref"] = sample_texts(reference, world.prompts("eval", cfg.eval.prompts), cfg.eval, cfg.seed + 1)
        result, _ = evaluate_formatted_on_world(policy, reference, world, cfg.eval, fmt, seed=cfg.seed + 2,
                                                ref_samples=cache["ref"])
        return {"win_rate": result.win_rate, "win_rate_se": result.win_rate_se, "kl": result.kl, "kl_se": result.kl_se}

    return evaluate


def inference_format_of(cfg: RunConfig) -> InferenceFormat | None:
    """The inference format a run of ``cfg.method`` trains its policy for (``None``: plain prompts)."""
    if cfg.method == "coh":
        return hindsight_format(cfg.coh.inference_phrase, cfg.coh.phrases)
    return None
