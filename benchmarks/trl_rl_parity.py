"""TRL 1.16 parity for the RL baselines: GRPO's loss types, GRPO's and RLOO's advantages, RLOO's loss.

TRL's own trainer code runs on fixed tensors: ``GRPOTrainer._compute_loss`` (loss types grpo,
bnpo, dr_grpo, dapo), ``GRPOTrainer._generate_and_score_completions`` (advantages for each
``scale_rewards``), ``RLOOTrainer._generate_and_score_completions`` (advantages) and
``RLOOTrainer._compute_loss``. The trainers are built without ``__init__`` (no model, no data):
an object of the trainer class gets the attributes those methods read, and its
``_get_per_token_logps_and_entropies`` / ``_generate`` / ``_calculate_rewards`` return the fixed
tensors, so everything between them (ratios, clipping, KL, aggregation, group statistics, the
leave-one-out baseline) is TRL's code. prefkit's functions run on the same tensors and the script
prints both, with the largest difference. ``tests/losses/test_rl_trl_parity.py`` holds TRL's
numbers (printed in the ``TRL = {...}`` block) and checks prefkit against them without TRL.

The inputs are closed-form (no random generator), in float64; ``parity_inputs`` here and in the
test must stay identical (the test checks the printed ``checksum``).

TRL is a benchmark-only peer (``pip install trl==1.16.0``); this script installs nothing.

    python benchmarks/trl_rl_parity.py
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import torch

import prefkit.losses as L

D = torch.float64
N_PROMPTS, K, T = 4, 4, 6
LENGTHS = [6, 4, 5, 2, 3, 6, 6, 1, 4, 4, 2, 5, 6, 3, 5, 4]
MAX_COMPLETION_LENGTH = 8


def parity_inputs() -> dict[str, torch.Tensor]:
    """16 responses (4 prompts x 4 samples) of up to 6 tokens; the last group's rewards tie."""
    i = torch.arange(N_PROMPTS * K, dtype=D)[:, None]
    t = torch.arange(T, dtype=D)[None, :]
    logps = -0.2 - 1.5 * (0.5 + 0.5 * torch.sin(1.3 * i + 0.7 * t + 0.1))
    old = logps + 0.25 * torch.sin(2.1 * i - 1.1 * t + 0.3)
    ref = logps + 0.4 * torch.cos(0.9 * i + 1.7 * t)
    rewards = (torch.cos(0.8 * i) + 0.3 * torch.sin(2.3 * i)).flatten()
    rewards[12:] = 0.5
    mask = t < torch.tensor(LENGTHS, dtype=D)[:, None]
    return {"logps": logps, "old": old, "ref": ref, "rewards": rewards, "mask": mask}


def checksum(x: dict[str, torch.Tensor]) -> float:
    return float(sum((v.to(D) * (j + 1)).sum() for j, v in enumerate(x.values())))


# --------------------------------------------------------------------------- TRL stubs


class _Accelerator:
    device = torch.device("cpu")
    num_processes = 1
    process_index = 0
    is_main_process = True
    sync_gradients = True

    def gather(self, x: Any) -> Any:
        return x

    def gather_for_metrics(self, x: Any) -> Any:
        return x

    def reduce(self, x: Any, reduction: str = "sum") -> Any:
        return x

    def unwrap_model(self, model: Any) -> Any:
        return model


def _stub(cls: type, **attrs: Any) -> Any:
    trainer = object.__new__(cls)
    base = {
        "accelerator": _Accelerator(),
        "model": SimpleNamespace(training=True, is_gradient_checkpointing=False),
        "_metrics": {"train": defaultdict(list), "eval": defaultdict(list)},
        "state": SimpleNamespace(global_step=0),
        "aux_loss_enabled": False,
    }
    for name, value in {**base, **attrs}.items():
        object.__setattr__(trainer, name, value)
    return trainer


def _loss_inputs(x: dict[str, torch.Tensor], rows: slice) -> dict[str, Any]:
    mask = x["mask"][rows].long()
    b = mask.shape[0]
    return {
        "prompt_ids": torch.zeros(b, 2, dtype=torch.long),
        "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.zeros(b, T, dtype=torch.long),
        "completion_mask": mask,
        "old_per_token_logps": x["old"][rows],
        "ref_per_token_logps": x["ref"][rows],
        "num_items_in_batch": x["mask"].sum(),
    }


def trl_grpo_loss(
    x: dict[str, torch.Tensor],
    advantages: torch.Tensor,
    *,
    loss_type: str,
    beta: float,
    epsilon: float,
    epsilon_high: float | None,
    micro_batches: int = 1,
) -> tuple[float, torch.Tensor]:
    """TRL's ``GRPOTrainer._compute_loss`` over ``micro_batches`` equal micro-batches (gradient
    accumulation), summed; returns the loss and its gradient w.r.t. the per-token log-probs."""
    from trl import GRPOTrainer

    logps = x["logps"].clone().requires_grad_()
    trainer = _stub(
        GRPOTrainer,
        loss_type=loss_type,
        beta=beta,
        epsilon_low=epsilon,
        epsilon_high=epsilon if epsilon_high is None else epsilon_high,
        importance_sampling_level="token",
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        current_gradient_accumulation_steps=micro_batches,
        max_completion_length=MAX_COMPLETION_LENGTH,
        _entropy_bonus_enabled=False,
        args=SimpleNamespace(
            use_bias_correction_kl=False, delta=None, steps_per_generation=micro_batches
        ),
    )
    size = logps.shape[0] // micro_batches
    total = torch.zeros((), dtype=D)
    for m in range(micro_batches):
        rows = slice(m * size, (m + 1) * size)
        part = logps[rows]

        def per_token(*_: Any, part: torch.Tensor = part, **__: Any) -> tuple:
            return part, torch.zeros_like(part), None

        object.__setattr__(trainer, "_get_per_token_logps_and_entropies", per_token)
        inputs = {**_loss_inputs(x, rows), "advantages": advantages[rows]}
        total = total + trainer._compute_loss(None, inputs)
    total.backward()
    return float(total.detach()), logps.grad


def trl_grpo_advantages(x: dict[str, torch.Tensor], scale_rewards: str) -> torch.Tensor:
    """TRL's ``GRPOTrainer._generate_and_score_completions`` with generation, rewards and
    log-probs stubbed: its group statistics give the advantages."""
    from trl import GRPOTrainer

    b = N_PROMPTS * K
    trainer = _stub(
        GRPOTrainer,
        environment_factories=None, tools=None, environments=None, pad_to_multiple_of=None,
        mask_truncated_completions=False, _tokenizer=SimpleNamespace(pad_token_id=0),
        num_iterations=1, use_vllm=False, vllm_importance_sampling_correction=False, beta=0.0,
        ref_model=None, num_generations=K, multi_objective_aggregation="sum_then_normalize",
        reward_weights=torch.ones(1, dtype=D), scale_rewards=scale_rewards,
        reward_func_names=["reward"], log_multimodal=False, _pending_extra_logs={},
        _pending_metrics={},
        _logs={"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list), "images": []},
        args=SimpleNamespace(steps_per_generation=1, gradient_accumulation_steps=1,
                             per_device_train_batch_size=b, gradient_checkpointing_kwargs=None,
                             report_to=[]),
    )  # fmt: skip
    lengths = LENGTHS

    def generate(prompts: list) -> tuple:
        completions = [[1] * n for n in lengths]
        return [[5, 6]] * b, completions, None, ["text"] * b, None, {}, None, None

    object.__setattr__(trainer, "_generate", generate)
    object.__setattr__(trainer, "_calculate_rewards", lambda *_: x["rewards"][:, None].clone())
    object.__setattr__(
        trainer, "_get_per_token_logps_and_entropies", lambda *_, **__: (x["old"], None, None)
    )
    out = trainer._generate_and_score_completions([{"prompt": "p"}] * b)
    return out["advantages"]


def trl_rloo(x: dict[str, torch.Tensor], *, beta: float, normalize: bool, epsilon: float
             ) -> tuple[torch.Tensor, float, torch.Tensor]:  # fmt: skip
    """TRL's RLOO: advantages from ``_generate_and_score_completions``, then ``_compute_loss``."""
    from trl import RLOOTrainer

    b = N_PROMPTS * K
    trainer = _stub(
        RLOOTrainer,
        pad_to_multiple_of=None, mask_truncated_completions=False,
        _tokenizer=SimpleNamespace(pad_token_id=0), beta=beta, ref_model=object(),
        num_generations=K, reward_weights=torch.ones(1, dtype=D), reward_clip_range=None,
        normalize_advantages=normalize, reward_func_names=["reward"], log_multimodal=False,
        epsilon_low=epsilon, epsilon_high=epsilon, _pending_extra_logs={}, _pending_metrics={},
        _logs={"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list), "images": []},
        args=SimpleNamespace(per_device_train_batch_size=b, gradient_checkpointing_kwargs=None,
                             report_to=[]),
    )  # fmt: skip

    def generate(prompts: list) -> tuple:
        return [[5, 6]] * b, [[1] * n for n in LENGTHS], ["text"] * b

    def per_token(model: Any, *_: Any, **__: Any) -> tuple:
        return (x["ref"] if model is trainer.ref_model else x["old"]), None, None

    object.__setattr__(trainer, "_generate", generate)
    object.__setattr__(trainer, "_calculate_rewards", lambda *_: x["rewards"][:, None].clone())
    object.__setattr__(trainer, "_get_per_token_logps_and_entropies", per_token)
    out = trainer._generate_and_score_completions([{"prompt": "p"}] * b)
    advantages = out["advantages"]

    logps = x["logps"].clone().requires_grad_()
    object.__setattr__(trainer, "_get_per_token_logps_and_entropies",
                       lambda *_, **__: (logps, torch.zeros_like(logps), None))  # fmt: skip
    inputs = {**_loss_inputs(x, slice(None)), "advantages": advantages,
              "old_logps": (x["old"] * x["mask"]).sum(1)}  # fmt: skip
    loss = trainer._compute_loss(None, inputs)
    loss.backward()
    return advantages, float(loss), logps.grad


# ------------------------------------------------------------------------------ prefkit


def prefkit_grpo_loss(
    x: dict[str, torch.Tensor], advantages: torch.Tensor, *, loss_type: str, beta: float,
    epsilon: float, epsilon_high: float | None, micro_batches: int = 1,
) -> tuple[float, torch.Tensor]:  # fmt: skip
    spec = L.LOSSES[loss_type]
    logps = x["logps"].clone().requires_grad_()
    params: dict[str, Any] = {"beta": beta, "epsilon": epsilon, "epsilon_high": epsilon_high}
    if "max_completion_length" in spec.engine_params:
        params["max_completion_length"] = MAX_COMPLETION_LENGTH
    size = logps.shape[0] // micro_batches
    masks = [x["mask"][m * size : (m + 1) * size] for m in range(micro_batches)]
    step = L.StepSize.of(*masks)
    total = torch.zeros((), dtype=D)
    for m, mask in enumerate(masks):
        rows = slice(m * size, (m + 1) * size)
        per_seq = spec.fn(logps[rows], x["old"][rows], x["ref"][rows], advantages[rows], mask,
                          **params)  # fmt: skip
        total = total + L.reduce_to_step(per_seq, mask, spec.reduction, step)
    total.backward()
    return float(total.detach()), logps.grad


def prefkit_rollout(x: dict[str, torch.Tensor]) -> L.Rollout:
    return L.Rollout(x["rewards"], x["mask"], x["old"], x["ref"], group_size=K)


def main() -> None:
    import trl

    if trl.__version__ != "1.16.0":
        print(f"warning: TRL {trl.__version__}; the recorded numbers are from TRL 1.16.0")
    x = parity_inputs()
    print(f"torch {torch.__version__}, trl {trl.__version__}; inputs checksum {checksum(x)!r}")
    record: dict[str, Any] = {}
    worst = 0.0

    def compare(name: str, theirs: torch.Tensor | float, ours: torch.Tensor | float) -> None:
        nonlocal worst
        a, b = torch.as_tensor(theirs, dtype=D), torch.as_tensor(ours, dtype=D)
        diff = float((a - b).abs().max())
        worst = max(worst, diff)
        print(f"{name:<48} max |TRL - prefkit| = {diff:.2e}")

    for scale in ("group", "batch", "none"):
        theirs = trl_grpo_advantages(x, scale)
        ours = L.grpo_advantages(prefkit_rollout(x), scale=scale).advantages
        compare(f"GRPO advantages, scale_rewards={scale}", theirs, ours)
        record[f"grpo_advantages_{scale}"] = theirs.tolist()
    advantages = torch.tensor(record["grpo_advantages_group"], dtype=D)

    for beta, high in ((0.0, None), (0.04, 0.28)):
        for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
            for micro in (1, 2):
                kwargs = {"loss_type": loss_type, "beta": beta, "epsilon": 0.2,
                          "epsilon_high": high, "micro_batches": micro}  # fmt: skip
                loss, grad = trl_grpo_loss(x, advantages, **kwargs)
                ours, our_grad = prefkit_grpo_loss(x, advantages, **kwargs)
                key = f"{loss_type}_beta{beta}_high{high}_micro{micro}"
                compare(f"{key} loss", loss, ours)
                compare(f"{key} grad", grad, our_grad)
                record[key] = {"loss": loss, "grad_sum": float(grad.sum()),
                               "grad_norm": float(grad.norm())}  # fmt: skip

    for normalize in (False, True):
        theirs, loss, grad = trl_rloo(x, beta=0.05, normalize=normalize, epsilon=0.2)
        ours = L.rloo_advantages(prefkit_rollout(x), kl_coef=0.05, normalize=normalize)
        compare(f"RLOO advantages, normalize={normalize}", theirs, ours.advantages)
        logps = x["logps"].clone().requires_grad_()
        per_seq = L.rloo(logps, x["old"], None, ours.advantages, x["mask"], epsilon=0.2)
        our_loss = L.reduce_to_step(per_seq, x["mask"], "sequences")
        our_loss.backward()
        compare(f"RLOO loss, normalize={normalize}", loss, float(our_loss))
        compare(f"RLOO grad, normalize={normalize}", grad, logps.grad)
        record[f"rloo_normalize{normalize}"] = {
            "advantages": theirs.tolist(), "loss": loss, "grad_sum": float(grad.sum()),
            "grad_norm": float(grad.norm()),
        }  # fmt: skip

    print(f"\nlargest difference: {worst:.2e}")
    print("\nTRL = {")
    for key, value in record.items():
        print(f"    {key!r}: {value!r},")
    print("}")
    if not math.isfinite(worst) or worst > 1e-6:
        raise SystemExit(f"parity broken: {worst:.2e} > 1e-6")


if __name__ == "__main__":
    main()
