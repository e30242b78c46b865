"""Offline runs (pairs, lists, SFT): data, policy, reference log-probs and the step shape,
handed to the driver (``prefkit.engine.run``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefkit.data import check_batch_size
from prefkit.engine.data import TrainData, load_eval_data, load_train_data
from prefkit.engine.losses import ResolvedLoss, resolve_loss
from prefkit.engine.methods import KL_INPUTS, TAIL_INPUTS, Method
from prefkit.engine.models import (
    build_policy,
    build_reference,
    frozen_copy,
    initial_reference,
    lora_summary,
    prepare_for_training,
    save_policy_outputs,
    with_lora,
)
from prefkit.engine.offline.examples import (
    tokenize_lists,
    tokenize_pairs,
    tokenize_sequences,
    tokenize_unpaired,
)
from prefkit.engine.offline.refcache import reference_logps
from prefkit.engine.offline.shapes import (
    ListwiseShape,
    OfflineShape,
    PairwiseShape,
    SFTShape,
    UnpairedShape,
)
from prefkit.engine.run import RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import Policy
from prefkit.policy.lora import is_lora

Evaluate = Callable[[Policy, Policy | None, int], dict[str, Any]]


def tokenize(method: Method, policy: Policy, data: TrainData, session: RunSession) -> Any:
    """The examples of ``data`` in the method's step shape."""
    train = session.cfg.train
    if method.step == "sft":
        sequences = data.sequences or [(r.prompt, r.chosen) for r in data.pairs or ()]
        sources = data.sources or [getattr(r, "source", None) for r in data.pairs or ()] or None
        return tokenize_sequences(policy, [p for p, _ in sequences], [r for _, r in sequences], train, sources)
    if method.step == "pairwise":
        if not data.pairs:
            raise InputError(f"method {method.name} needs pairs (prompt/chosen/rejected)")
        examples = tokenize_pairs(policy, data.pairs, train)
        examples.tails = bool(set(resolve_loss(method, session.cfg.loss).spec.inputs) & set(TAIL_INPUTS))
        return examples
    if method.step == "unpaired":
        if not data.unpaired:
            raise InputError(f"method {method.name} needs unpaired rows (prompt/completion/label), or pairs with "
                             "data.unpair=true", field="data.path")
        loss = resolve_loss(method, session.cfg.loss)
        kl_chunk = train.batch_size // train.grad_accum if set(KL_INPUTS) & set(loss.spec.inputs) else None
        return tokenize_unpaired(policy, data.unpaired, train, kl_chunk=kl_chunk)
    if not data.lists:
        raise InputError(f"method {method.name} needs ranked lists (prompt/responses/scores)")
    return tokenize_lists(policy, data.lists, train)


def build_shape(method: Method, session: RunSession, policy: Policy, examples: Any, loss: ResolvedLoss | None,
                ref: Any, eval_examples: Any, eval_ref: Any) -> OfflineShape:
    if method.step == "sft":
        return SFTShape(session, policy, examples, label=method.name, eval_examples=eval_examples)
    assert loss is not None
    cls = {"pairwise": PairwiseShape, "listwise": ListwiseShape, "unpaired": UnpairedShape}[method.step]
    return cls(session, policy, examples, loss, ref, label=method.name, eval_examples=eval_examples,
               eval_ref=eval_ref)


def run_offline(session: RunSession, method: Method, *, data: TrainData | None, policy: Policy | None,
                reference: Policy | None, evaluate: Evaluate | None, progress: bool | None) -> TrainResult:
    """Train ``method`` on pairs, lists or sequences; write the run's outputs."""
    cfg = session.cfg
    reference_given = reference is not None
    loss = resolve_loss(method, cfg.loss)
    data = data or load_train_data(cfg, method)
    held_out = load_eval_data(cfg, method)
    setup_start = time.perf_counter()
    loaded_from_model = policy is None
    policy = with_lora(cfg, policy) if policy is not None else build_policy(cfg, data.texts(), session.device,
                                                                            session.model_dtype)
    prepare_for_training(cfg, policy.model)
    examples = tokenize(method, policy, data, session)
    session.resolve_epochs(len(examples))
    cfg = session.cfg
    check_batch_size(cfg.train.batch_size, len(examples), file=cfg.data.path)
    eval_examples = tokenize(method, policy, held_out, session) if held_out is not None else None

    save_reference = not cfg.ref_model and (cfg.model == "tiny" or reference_given)
    ref_logps = eval_ref = None
    cache_hit, ref_s = False, 0.0
    if loss is not None and loss.spec.needs_reference:
        began = time.perf_counter()
        if reference is not None or cfg.ref_model or is_lora(policy.model):
            reference = reference or build_reference(cfg, policy, session.device, session.model_dtype)
            source, same_as = reference, None
        else:  # the initial policy: keyed by the policy's own weights, copied only on a cache miss
            built: list[Policy] = []
            source = lambda: built[0] if built else built.append(frozen_copy(policy)) or built[0]  # noqa: E731
            same_as = policy
        ref_logps, cache_hit = reference_logps(examples, source, cfg.train, session=session, same_as=same_as)
        if eval_examples is not None:
            eval_ref, _ = reference_logps(eval_examples, source, cfg.train, session=session, same_as=same_as)
        if same_as is not None:
            reference = built[0] if built else None
        ref_s = time.perf_counter() - began
    needs_reference_later = evaluate is not None or (save_reference and loss is not None
                                                      and loss.spec.needs_reference)
    if not needs_reference_later:
        reference = None  # its log-probs are computed: free its weights before training
    elif reference is None:
        reference = initial_reference(policy)
    setup_s = time.perf_counter() - setup_start

    shape = build_shape(method, session, policy, examples, loss, ref_logps, eval_examples, eval_ref)
    world_eval = (lambda step: evaluate(policy, reference, step)) if evaluate is not None else None
    fit = session.fit(shape, policy.model, label=method.name, evaluate=world_eval, progress=progress)

    def save() -> None:
        # reference/: the tiny preset's (or an in-memory) reference is not loadable from a path otherwise
        save_policy_outputs(cfg, session.out, policy, reference, loaded_from_model=loaded_from_model,
                            save_reference=save_reference, state_dict=session.state_dict)

    session.on_main(save)
    summary = session.finish({
        **fit.summary(method.name),
        "setup_s": setup_s,
        "ref_logps_s": ref_s,
        "ref_cache_hit": cache_hit,
        "truncated_rows": examples.truncated,
        "examples": len(examples),
        "processes": session.world,
        **lora_summary(policy.model),
        **({"eval_examples": len(eval_examples)} if eval_examples is not None else {}),
        **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
    })
    return TrainResult(policy=policy, metrics=summary, history=fit.history)
