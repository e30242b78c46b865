"""TRL 1.16 parity: prefkit's GRPO loss types, GRPO/RLOO advantages and RLOO loss against the
numbers TRL's own trainer code computed on the same tensors (``benchmarks/trl_rl_parity.py``
runs ``GRPOTrainer._compute_loss``, ``GRPOTrainer._generate_and_score_completions``,
``RLOOTrainer._generate_and_score_completions`` and ``RLOOTrainer._compute_loss`` and printed
the ``TRL`` block below). TRL is not imported here.

TRL 1.16's ``nanstd`` computes its Bessel factor ``n/(n-1)`` in float32, so its std-scaled
advantages differ from an all-float64 computation by up to 4e-8; everything else agrees to
float64 rounding. The tolerance is 1e-6.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from prefkit import losses as L

D = torch.float64
N_PROMPTS, K, T = 4, 4, 6
LENGTHS = [6, 4, 5, 2, 3, 6, 6, 1, 4, 4, 2, 5, 6, 3, 5, 4]
MAX_COMPLETION_LENGTH = 8
ATOL = 1e-6
CHECKSUM = -218.6105805478528  # printed by benchmarks/trl_rl_parity.py for these inputs


def parity_inputs() -> dict[str, torch.Tensor]:
    """Identical to ``benchmarks/trl_rl_parity.py::parity_inputs`` (closed form, float64)."""
    i = torch.arange(N_PROMPTS * K, dtype=D)[:, None]
    t = torch.arange(T, dtype=D)[None, :]
    logps = -0.2 - 1.5 * (0.5 + 0.5 * torch.sin(1.3 * i + 0.7 * t + 0.1))
    old = logps + 0.25 * torch.sin(2.1 * i - 1.1 * t + 0.3)
    ref = logps + 0.4 * torch.cos(0.9 * i + 1.7 * t)
    rewards = (torch.cos(0.8 * i) + 0.3 * torch.sin(2.3 * i)).flatten()
    rewards[12:] = 0.5
    mask = t < torch.tensor(LENGTHS, dtype=D)[:, None]
    return {"logps": logps, "old": old, "ref": ref, "rewards": rewards, "mask": mask}


# TRL 1.16.0, torch 2.13.0 (CPU), float64: printed by `python benchmarks/trl_rl_parity.py`.
TRL: dict[str, Any] = {
    "grpo_advantages_group": [
        0.9078134925446586,
        0.8105379125136047,
        -0.7146009233282388,
        -1.0037504817300245,
        -0.8662463966315337,
        -0.8482060401840649,
        0.684345437443063,
        1.0301069993725356,
        0.8330279156001973,
        0.8726099051612969,
        -0.6414953805081623,
        -1.064142440253332,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
    "grpo_advantages_batch": [
        1.0610704355929872,
        0.9473728061528374,
        -0.8352397482721315,
        -1.173203493473693,
        -1.039213595209647,
        -1.0175710420567106,
        0.8209916776289135,
        1.2357929596374442,
        1.018750274589363,
        1.0671570110012034,
        -0.7845158401079921,
        -1.3013914454825743,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
    "grpo_advantages_none": [
        0.7426875841539832,
        0.6631058571541646,
        -0.5846192392373449,
        -0.8211742020708027,
        -0.7273890672629058,
        -0.7122405389683674,
        0.5746464185744516,
        0.8649831876568215,
        0.7130659331471638,
        0.7469478328934298,
        -0.5491154540506246,
        -0.9108983119899691,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
    "grpo_beta0.0_highNone_micro1": {
        "loss": -0.0006332327101644941,
        "grad_sum": 0.011116407153010922,
        "grad_norm": 0.09853448025652323,
    },
    "grpo_beta0.0_highNone_micro2": {
        "loss": -0.000633232710164508,
        "grad_sum": 0.011116407153010922,
        "grad_norm": 0.09853448025652323,
    },
    "bnpo_beta0.0_highNone_micro1": {
        "loss": -0.015302739073630129,
        "grad_sum": 0.009276785944417115,
        "grad_norm": 0.08000447366447401,
    },
    "bnpo_beta0.0_highNone_micro2": {
        "loss": -0.01530273907363013,
        "grad_sum": 0.009276785944417115,
        "grad_norm": 0.08000447366447401,
    },
    "dr_grpo_beta0.0_highNone_micro1": {
        "loss": -0.007890474834840535,
        "grad_sum": 0.004783342752590078,
        "grad_norm": 0.04125230673324441,
    },
    "dr_grpo_beta0.0_highNone_micro2": {
        "loss": -0.007890474834840537,
        "grad_sum": 0.004783342752590078,
        "grad_norm": 0.04125230673324441,
    },
    "dapo_beta0.0_highNone_micro1": {
        "loss": -0.015302739073630129,
        "grad_sum": 0.009276785944417115,
        "grad_norm": 0.08000447366447401,
    },
    "dapo_beta0.0_highNone_micro2": {
        "loss": -0.01530273907363013,
        "grad_sum": 0.009276785944417115,
        "grad_norm": 0.08000447366447401,
    },
    "grpo_beta0.04_high0.28_micro1": {
        "loss": -0.0022222477708619404,
        "grad_sum": -0.061984890426363806,
        "grad_norm": 0.10463832253919532,
    },
    "grpo_beta0.04_high0.28_micro2": {
        "loss": -0.002222247770861968,
        "grad_sum": -0.061984890426363806,
        "grad_norm": 0.10463832253919532,
    },
    "bnpo_beta0.04_high0.28_micro1": {
        "loss": -0.017419156595641392,
        "grad_sum": -0.0718496402436134,
        "grad_norm": 0.08764081277243296,
    },
    "bnpo_beta0.04_high0.28_micro2": {
        "loss": -0.0174191565956414,
        "grad_sum": -0.0718496402436134,
        "grad_norm": 0.08764081277243296,
    },
    "dr_grpo_beta0.04_high0.28_micro1": {
        "loss": -0.008981752619627593,
        "grad_sum": -0.03704747075061316,
        "grad_norm": 0.045189794085785745,
    },
    "dr_grpo_beta0.04_high0.28_micro2": {
        "loss": -0.008981752619627595,
        "grad_sum": -0.03704747075061316,
        "grad_norm": 0.045189794085785745,
    },
    "dapo_beta0.04_high0.28_micro1": {
        "loss": -0.017419156595641392,
        "grad_sum": -0.0718496402436134,
        "grad_norm": 0.08764081277243296,
    },
    "dapo_beta0.04_high0.28_micro2": {
        "loss": -0.0174191565956414,
        "grad_sum": -0.0718496402436134,
        "grad_norm": 0.08764081277243296,
    },
    "rloo_normalizeFalse": {
        "advantages": [
            1.0134952065104663,
            0.8870046821309374,
            -0.7916572751864646,
            -1.1088426134549392,
            -1.0034752858196307,
            -0.9328906591582504,
            0.7810604610786,
            1.155305483899281,
            0.9680911585850065,
            1.0391589585839263,
            -0.7757873999841606,
            -1.231462717184772,
            0.0075991257071365,
            -0.0327656834529666,
            0.006971587582411343,
            0.018194970163418533,
        ],
        "loss": -0.005083485224190609,
        "grad_sum": -0.01291062208647105,
        "grad_norm": 0.3540708117781085,
    },
    "rloo_normalizeTrue": {
        "advantages": [
            1.1509172013404636,
            1.0072755547102663,
            -0.8989997877893404,
            -1.2591929682613894,
            -1.1395386580527693,
            -1.0593833100521783,
            0.8869661288654463,
            1.311955839239501,
            1.0993567209038362,
            1.1800607567539907,
            -0.8809780820761526,
            -1.3984393955816743,
            0.008629507505619983,
            -0.037208452943291136,
            0.007916880136882978,
            0.02066206530078805,
        ],
        "loss": -0.005772765919066655,
        "grad_sum": -0.01466120110275243,
        "grad_norm": 0.40208003466644765,
    },
}


X = parity_inputs()


def close(ours: Any, theirs: Any) -> None:
    torch.testing.assert_close(torch.as_tensor(ours, dtype=D), torch.as_tensor(theirs, dtype=D),
                               rtol=0, atol=ATOL)  # fmt: skip


def test_inputs_are_the_benchmarks():
    total = float(sum((v.to(D) * (j + 1)).sum() for j, v in enumerate(X.values())))
    assert abs(total - CHECKSUM) < 1e-9


def rollout() -> L.Rollout:
    return L.Rollout(X["rewards"], X["mask"], X["old"], X["ref"], group_size=K)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_advantages_match_trl(scale):
    close(L.grpo_advantages(rollout(), scale=scale).advantages, TRL[f"grpo_advantages_{scale}"])


@pytest.mark.parametrize("micro", [1, 2])
@pytest.mark.parametrize("beta,high", [(0.0, None), (0.04, 0.28)])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_loss_types_match_trl(loss_type, beta, high, micro):
    spec = L.LOSSES[loss_type]
    advantages = torch.tensor(TRL["grpo_advantages_group"], dtype=D)
    params: dict[str, Any] = {"beta": beta, "epsilon": 0.2, "epsilon_high": high}
    if "max_completion_length" in spec.engine_params:
        params["max_completion_length"] = MAX_COMPLETION_LENGTH
    logps = X["logps"].clone().requires_grad_()
    size = logps.shape[0] // micro
    masks = [X["mask"][m * size : (m + 1) * size] for m in range(micro)]
    step = L.StepSize.of(*masks)
    total = torch.zeros((), dtype=D)
    for m, mask in enumerate(masks):
        rows = slice(m * size, (m + 1) * size)
        per_seq = spec.fn(logps[rows], X["old"][rows], X["ref"][rows], advantages[rows], mask,
                          **params)  # fmt: skip
        total = total + L.reduce_to_step(per_seq, mask, spec.reduction, step)
    total.backward()
    trl = TRL[f"{loss_type}_beta{beta}_high{high}_micro{micro}"]
    close(total.detach(), trl["loss"])
    close(logps.grad.sum(), trl["grad_sum"])
    close(logps.grad.norm(), trl["grad_norm"])


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_and_loss_match_trl(normalize):
    trl = TRL[f"rloo_normalize{normalize}"]
    advantages = L.rloo_advantages(rollout(), kl_coef=0.05, normalize=normalize).advantages
    close(advantages, trl["advantages"])
    logps = X["logps"].clone().requires_grad_()
    per_seq = L.rloo(logps, X["old"], None, advantages, X["mask"], epsilon=0.2)
    loss = L.reduce_to_step(per_seq, X["mask"], L.LOSSES["rloo"].reduction)
    loss.backward()
    close(loss.detach(), trl["loss"])
    close(logps.grad.sum(), trl["grad_sum"])
    close(logps.grad.norm(), trl["grad_norm"])


def test_the_loss_types_really_differ_on_these_inputs():
    # Guards the parity tests against degenerate inputs where the normalisations coincide.
    losses = {k: TRL[f"{k}_beta0.04_high0.28_micro1"]["loss"] for k in ("grpo", "bnpo", "dr_grpo")}
    assert len({round(v, 9) for v in losses.values()}) == 3
