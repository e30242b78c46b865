"""TRL 1.16's own loss code on fixed tensors: the numbers prefkit's loss tests assert.

Each case runs TRL's trainer method unbound (``DPOTrainer._compute_loss``,
``KTOTrainer._compute_loss``, ``TPOTrainer._compute_loss``, ``CPOTrainer.cpo_loss``,
``RewardTrainer.compute_loss``) on a stand-in ``self`` (only the attributes the method reads)
and a stand-in model that returns fixed per-token log-probs (TRL's fused LM head output) or
fixed logits, so the loss arithmetic is TRL's, line for line. It prints one JSON object: the
inputs in prefkit's terms (sequence sums, tails, lengths) and TRL's loss. The tests
(``tests/losses/test_trl_parity.py``) hard-code these numbers; they never import TRL.

    pip install trl==1.16.0
    PYTHONPATH=. python benchmarks/trl_loss_parity.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from trl.experimental.cpo import CPOTrainer
from trl.experimental.tpo import TPOTrainer
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer
from trl.trainer.reward_trainer import RewardTrainer

D = torch.float32


class Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


class Model:
    """Returns fixed outputs for the ``input_ids`` tensor it is called with."""

    training = True
    is_gradient_checkpointing = False

    def __init__(self, by_input: list[tuple[torch.Tensor, SimpleNamespace]]) -> None:
        self.by_input = by_input

    def __call__(self, **kwargs):
        for ids, out in self.by_input:
            if kwargs["input_ids"] is ids:
                return out
        raise KeyError("unexpected input_ids")


def fused(log_probs: torch.Tensor) -> SimpleNamespace:
    """What TRL's fused LM head returns (``log_probs`` [N, T-1], zero at non-completion)."""
    zeros = torch.zeros_like(log_probs)
    return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros,
                           is_top1=torch.zeros_like(log_probs, dtype=torch.bool), log_sum_sq_probs=zeros)


# ----------------------------------------------------------------------------------- DPO family

# Two pairs; rows [chosen_1, chosen_2, rejected_1, rejected_2]; 6 tokens per row, the completion
# at the end. Shifted completion masks (position t predicts token t+1): lengths 3, 4 | 5, 2.
SHIFTED_MASK = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
POLICY_TOKENS = torch.tensor([[0, 0, -0.5, -1.0, -0.25], [0, -2.0, -0.5, -0.5, -1.0],
                              [-1.5, -0.5, -0.75, -1.25, -2.0], [0, 0, 0, -0.5, -3.0]], dtype=D)
REF_TOKENS = torch.tensor([[0, 0, -0.75, -0.5, -1.0], [0, -1.0, -1.0, -0.25, -1.5],
                           [-1.0, -1.0, -0.5, -1.0, -1.0], [0, 0, 0, -1.0, -1.5]], dtype=D)
SUM_SQ_TOKENS = torch.tensor([[0, 0, -0.4, -0.9, -0.3], [0, -1.1, -0.6, -0.7, -0.8],
                              [-0.9, -0.6, -0.7, -0.8, -1.2], [0, 0, 0, -0.6, -1.4]], dtype=D)
"""log Σ_v π(v)² per position (WPO's ``log_sum_sq_probs``)."""


def dpo_trl(*, loss_type: str = "sigmoid", beta: float = 0.1, ld_alpha=None, f_divergence_type="reverse_kl",
            f_alpha_divergence_coef: float = 0.5, use_weighting: bool = False, label_smoothing: float = 0.0) -> float:
    input_ids = torch.arange(24).reshape(4, 6)
    completion_mask = torch.cat([torch.zeros(4, 1, dtype=torch.long), SHIFTED_MASK], dim=1)
    policy = fused(POLICY_TOKENS * SHIFTED_MASK)
    policy.log_sum_sq_probs = SUM_SQ_TOKENS * SHIFTED_MASK
    ref = fused(REF_TOKENS * SHIFTED_MASK)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask}
    model = Model([(input_ids, policy)])
    this = SimpleNamespace(
        model=model, ref_model=Model([(input_ids, ref)]), accelerator=Accelerator(), precompute_ref_logps=False,
        aux_loss_enabled=False, ld_alpha=ld_alpha, f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=f_alpha_divergence_coef, loss_types=[loss_type], loss_weights=[1.0], beta=beta,
        label_smoothing=label_smoothing, use_weighting=use_weighting, _metrics={"train": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1, args=SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=0.05),
    )
    return float(DPOTrainer._compute_loss(this, model, inputs, return_outputs=False))


def dpo_inputs() -> dict:
    """The DPO cases in prefkit's terms: sequence sums, lengths, tails past the shared length,
    and WPO exponents."""
    mask = SHIFTED_MASK.to(D)
    lengths = mask.sum(1)
    shared = torch.minimum(lengths[:2], lengths[2:]).repeat(2)
    position = SHIFTED_MASK.cumsum(1)
    tail = (position > shared[:, None]).to(D) * mask
    wpo = ((POLICY_TOKENS - SUM_SQ_TOKENS) * mask).sum(1) / lengths
    out = {
        "logps": (POLICY_TOKENS * mask).sum(1).tolist(),
        "ref_logps": (REF_TOKENS * mask).sum(1).tolist(),
        "lengths": lengths.tolist(),
        "tail_logps": (POLICY_TOKENS * tail).sum(1).tolist(),
        "ref_tail_logps": (REF_TOKENS * tail).sum(1).tolist(),
        "wpo_logps": wpo.tolist(),
    }
    return {"rows": "chosen_1, chosen_2, rejected_1, rejected_2", **out}


# ------------------------------------------------------------------------------------------ KTO

KTO_LABELS = [True, False, True, False]
KTO_POLICY = torch.tensor([[0, -0.5, -1.0], [0, -2.0, -0.25], [-0.5, -0.5, -0.5], [0, 0, -1.5]], dtype=D)
KTO_REF = [-2.0, -1.5, -1.75, -2.5]


def kto_trl(kl_policy: torch.Tensor, kl_ref: list[float], *, loss_type: str = "kto", beta: float = 0.1,
            desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> float:
    input_ids = torch.arange(16).reshape(4, 4)
    kl_ids = torch.arange(20).reshape(4, 5)
    batch = {
        "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
        "completion_mask": torch.ones_like(input_ids), "label": torch.tensor(KTO_LABELS),
        "ref_logps": torch.tensor(KTO_REF, dtype=D),
    }
    calculate_kl = loss_type != "apo_zero_unpaired"
    outputs = [(input_ids, fused(KTO_POLICY))]
    if calculate_kl:
        batch.update(KL_input_ids=kl_ids, KL_attention_mask=torch.ones_like(kl_ids),
                     KL_completion_mask=torch.ones_like(kl_ids), ref_KL_logps=torch.tensor(kl_ref, dtype=D))
        outputs.append((kl_ids, fused(kl_policy)))
    model = Model(outputs)
    this = SimpleNamespace(
        model=model, accelerator=Accelerator(), calculate_KL=calculate_kl, precompute_ref_logps=True,
        aux_loss_enabled=False, loss_type=loss_type, beta=beta, desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight, _metrics={"train": defaultdict(list)}, _total_train_tokens=0,
        _tp_size=1,
    )
    this._compute_kl_logps = lambda m, b: KTOTrainer._compute_kl_logps(this, m, b)
    return float(KTOTrainer._compute_loss(this, model, batch, return_outputs=False))


KL_POSITIVE = (torch.tensor([[0, -1.0, -0.5, -0.5], [-0.25, -0.5, -1.0, 0], [0, 0, -2.0, -1.0],
                             [-1.0, -1.0, 0, -0.5]], dtype=D), [-3.5, -2.0, -3.5, -3.5])
KL_NEGATIVE = (KL_POSITIVE[0], [-1.0, -1.0, -2.0, -1.5])


# ------------------------------------------------------------------------------------------ TPO


def tpo_trl(*, loss_type: str = "sigmoid", beta: float = 0.01, tpo_alpha: float = 1.0, tpo_l_gamma: float = 0.5,
            label_smoothing: float = 0.0) -> tuple[float, dict]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 7, generator=g, dtype=D)  # rows [chosen x2, rejected x2, gold x2]
    input_ids = torch.randint(7, (6, 5), generator=g)
    # Both gold responses have 3 tokens, so TRL's batch-pooled NLL equals the per-row mean.
    completion_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 1, 1, 1, 1],
                                    [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
    if tpo_alpha == 0.0:  # TRL's collator then drops the gold rows
        logits, input_ids, completion_mask = logits[:4], input_ids[:4], completion_mask[:4]
    model = Model([(input_ids, SimpleNamespace(logits=logits))])
    this = SimpleNamespace(
        model=model, accelerator=Accelerator(), loss_type=loss_type, beta=beta, tpo_alpha=tpo_alpha,
        tpo_l_gamma=tpo_l_gamma, label_smoothing=label_smoothing, _metrics={"train": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask}
    loss = float(TPOTrainer._compute_loss(this, model, inputs, return_outputs=False))
    token_logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    mask = completion_mask[:, 1:].to(D)
    sums, lengths = (token_logps * mask).sum(1), mask.sum(1)
    return loss, {"logps": sums.tolist(), "lengths": lengths.tolist(), "rows": "chosen x2, rejected x2, gold x2"}


# -------------------------------------------------------------------------------- CPO, AlphaPO


def cpo_trl(chosen: list[float], rejected: list[float], *, loss_type: str, beta: float, alpha: float = 0.0,
            simpo_gamma: float = 0.5, label_smoothing: float = 0.0) -> list[float]:
    this = SimpleNamespace(alpha=alpha, beta=beta, loss_type=loss_type, simpo_gamma=simpo_gamma,
                           label_smoothing=label_smoothing, accelerator=Accelerator())
    losses, _, _ = CPOTrainer.cpo_loss(this, torch.tensor(chosen, dtype=D), torch.tensor(rejected, dtype=D))
    return losses.tolist()


# --------------------------------------------------------------------------------- reward model


def reward_trl(chosen: list[float], rejected: list[float], *, center: float | None, margin=None) -> float:
    logits = torch.tensor(chosen + rejected, dtype=D)[:, None]
    model = Model([])
    ids = torch.zeros(4, 3, dtype=torch.long)
    model.by_input = [(ids, SimpleNamespace(logits=logits))]
    this = SimpleNamespace(model=model, accelerator=Accelerator(), args=SimpleNamespace(center_rewards_coefficient=center),
                           _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if margin is not None:
        inputs["margin"] = torch.tensor(margin, dtype=D)
    return float(RewardTrainer.compute_loss(this, model, inputs))


def main() -> None:
    out: dict = {"trl": trl.__version__, "torch": torch.__version__}
    out["dpo_inputs"] = dpo_inputs()
    dpo = {"sigmoid": dpo_trl(), "sigmoid_label_smoothing_0.3": dpo_trl(label_smoothing=0.3)}
    for f in ("forward_kl", "js_divergence"):
        dpo[f"f_{f}"] = dpo_trl(f_divergence_type=f, beta=0.5)
    for a in (0.5, 0.3, 1.0):
        dpo[f"f_alpha_divergence_{a}"] = dpo_trl(f_divergence_type="alpha_divergence", f_alpha_divergence_coef=a,
                                                 beta=0.5)
    for a in (0.0, 0.5, 1.0):
        dpo[f"ld_alpha_{a}"] = dpo_trl(ld_alpha=a, beta=0.5)
    dpo["wpo"] = dpo_trl(use_weighting=True, beta=0.5)
    out["dpo_trl_batch_loss"] = dpo
    kto = {}
    for name, (kl_policy, kl_ref) in (("kl_positive", KL_POSITIVE), ("kl_negative", KL_NEGATIVE)):
        kto[name] = {
            "kl_logps": kl_policy.sum(1).tolist(), "ref_kl_logps": kl_ref,
            "kto": kto_trl(kl_policy, kl_ref),
            "kto_weighted": kto_trl(kl_policy, kl_ref, beta=0.5, desirable_weight=1.33, undesirable_weight=0.5),
        }
    kto["apo_zero_unpaired"] = kto_trl(*KL_POSITIVE, loss_type="apo_zero_unpaired", beta=0.5,
                                       desirable_weight=2.0, undesirable_weight=0.5)
    out["kto"] = {"labels": KTO_LABELS, "logps": KTO_POLICY.sum(1).tolist(), "ref_logps": KTO_REF, **kto}
    tpo, tpo_inputs = tpo_trl()
    out["tpo"] = {"inputs": tpo_inputs, "sigmoid": tpo, "sigmoid_smoothed": tpo_trl(label_smoothing=0.2, beta=0.5)[0],
                  "tpo-l": tpo_trl(loss_type="tpo-l", beta=0.5)[0], "no_nll": tpo_trl(tpo_alpha=0.0, beta=0.5)[0]}
    # CPOTrainer receives sequence sums (sigmoid) or per-token means (simpo, alphapo).
    sums_c, sums_r = [-4.0, -9.0, -3.0], [-6.0, -7.5, -8.0]
    means_c, means_r = [-2.0, -3.0, -0.5], [-3.0, -2.5, -1.0]
    out["cpo"] = {
        "sums": [sums_c, sums_r], "means": [means_c, means_r],
        "sigmoid": cpo_trl(sums_c, sums_r, loss_type="sigmoid", beta=0.1),
        "sigmoid_smoothed": cpo_trl(sums_c, sums_r, loss_type="sigmoid", beta=0.1, label_smoothing=0.1),
        "alphapo": cpo_trl(means_c, means_r, loss_type="simpo", beta=2.0, alpha=0.25, simpo_gamma=0.5),
        "alphapo_alpha0": cpo_trl(means_c, means_r, loss_type="simpo", beta=2.0, alpha=0.0, simpo_gamma=0.5),
    }
    rc, rr = [1.5, -0.5], [0.25, 1.0]
    out["reward"] = {"chosen": rc, "rejected": rr, "center_0.01": reward_trl(rc, rr, center=0.01),
                     "center_none": reward_trl(rc, rr, center=None),
                     "center_0.5_margin": reward_trl(rc, rr, center=0.5, margin=[0.5, 0.0])}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
