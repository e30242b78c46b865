"""prefkit's losses against TRL 1.16's own loss code on the same tensors.

Every expected number below was printed by ``benchmarks/trl_loss_parity.py`` (TRL 1.16.0, torch
2.13.0, float32): TRL's ``DPOTrainer._compute_loss``, ``KTOTrainer._compute_loss``,
``TPOTrainer._compute_loss``, ``CPOTrainer.cpo_loss`` and ``RewardTrainer.compute_loss`` run on
fixed per-token log-probs (or logits). The inputs are given here in prefkit's terms (sequence
sums, tails past the shared length, WPO exponents), as that script derives them. TRL's batch
loss is the mean of prefkit's per-example loss. No TRL import: the numbers are the evidence.
"""

from __future__ import annotations

import pytest
import torch

from prefkit import losses as L

D = torch.float64
REL = 2e-6  # TRL ran in float32


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def close(value: torch.Tensor, expected: float) -> None:
    assert value.item() == pytest.approx(expected, rel=REL, abs=1e-7)


# -- DPOTrainer: rows chosen_1, chosen_2, rejected_1, rejected_2 (lengths 3, 4 | 5, 2) ---------
LOGPS = t(-1.75, -4.0, -6.0, -3.5)
REF = t(-2.25, -3.75, -4.5, -2.5)
TAIL = t(0.0, -1.5, -3.25, 0.0)  # past the shared lengths min(3, 5) = 3 and min(4, 2) = 2
REF_TAIL = t(0.0, -1.75, -2.0, 0.0)
WPO = t(-0.05, -0.2, -0.36, -0.75)
C, R, RC, RR = LOGPS[:2], LOGPS[2:], REF[:2], REF[2:]


def test_sigmoid_and_trl_ignoring_label_smoothing():
    close(L.dpo(C, R, RC, RR, beta=0.1).mean(), 0.6272444725036621)
    # TRL 1.16 printed the same number with label_smoothing=0.3: its sigmoid loss ignores it.
    assert L.dpo(C, R, RC, RR, beta=0.1, label_smoothing=0.3).mean().item() != pytest.approx(0.6272444725036621)


@pytest.mark.parametrize(
    ("kind", "coef", "expected"),
    [
        ("forward_kl", 0.5, 0.2660558819770813),
        ("js_divergence", 0.5, 0.5056928992271423),
        ("alpha_divergence", 0.5, 0.35058772563934326),
        ("alpha_divergence", 0.3, 0.31827569007873535),
        ("alpha_divergence", 1.0, 0.41819247603416443),  # the limit a -> 1 is reverse KL (DPO)
    ],
)
def test_f_divergence_dpo(kind, coef, expected):
    out = L.fdpo(C, R, RC, RR, beta=0.5, f_divergence_type=kind, f_alpha_divergence_coef=coef)
    close(out.mean(), expected)


def test_f_divergence_reverse_kl_is_dpo():
    torch.testing.assert_close(L.fdpo(C, R, RC, RR, beta=0.5, f_divergence_type="reverse_kl"),
                               L.dpo(C, R, RC, RR, beta=0.5))
    close(L.dpo(C, R, RC, RR, beta=0.5).mean(), 0.41819247603416443)


@pytest.mark.parametrize(("ld_alpha", "expected"), [(0.0, 0.5495313405990601), (0.5, 0.4782029390335083),
                                                    (1.0, 0.41819247603416443)])
def test_ld_dpo(ld_alpha, expected):
    out = L.ld_dpo(C, R, RC, RR, beta=0.5, ld_alpha=ld_alpha, chosen_tail_logps=TAIL[:2],
                   rejected_tail_logps=TAIL[2:], ref_chosen_tail_logps=REF_TAIL[:2],
                   ref_rejected_tail_logps=REF_TAIL[2:])
    close(out.mean(), expected)


def test_wpo_weighting():
    out = L.wpo(C, R, RC, RR, beta=0.5, chosen_wpo_logps=WPO[:2], rejected_wpo_logps=WPO[2:])
    close(out.mean(), 0.20510470867156982)


# -- KTOTrainer: labels [True, False, True, False]; KL rows are the mismatched completions -----
KTO_LOGPS, KTO_REF = t(-1.5, -2.25, -1.5, -1.5), t(-2.0, -1.5, -1.75, -2.5)
LABELS = torch.tensor([True, False, True, False])
KL_LOGPS = t(-2.0, -1.75, -3.0, -2.5)
REF_KL_POSITIVE = t(-3.5, -2.0, -3.5, -3.5)  # estimate 0.8125
REF_KL_NEGATIVE = t(-1.0, -1.0, -2.0, -1.5)  # estimate -0.9375, clamped to 0


@pytest.mark.parametrize(
    ("ref_kl", "plain", "weighted"),
    [(REF_KL_POSITIVE, 0.4968937039375305, 0.4733717739582062),
     (REF_KL_NEGATIVE, 0.49687275290489197, 0.43017327785491943)],
)
def test_kto(ref_kl, plain, weighted):
    close(L.kto(KTO_LOGPS, KTO_REF, LABELS, kl_logps=KL_LOGPS, ref_kl_logps=ref_kl).mean(), plain)
    out = L.kto(KTO_LOGPS, KTO_REF, LABELS, kl_logps=KL_LOGPS, ref_kl_logps=ref_kl, beta=0.5,
                desirable_weight=1.33, undesirable_weight=0.5)
    close(out.mean(), weighted)


def test_kto_with_an_averaged_estimate_equals_the_tensors_form():
    from_tensors = L.kto(KTO_LOGPS, KTO_REF, LABELS, kl_logps=KL_LOGPS, ref_kl_logps=REF_KL_POSITIVE, beta=0.5)
    from_value = L.kto(KTO_LOGPS, KTO_REF, LABELS, kl=0.8125, beta=0.5)
    torch.testing.assert_close(from_tensors, from_value)
    assert L.kto_kl(KL_LOGPS, REF_KL_POSITIVE).item() == pytest.approx(0.8125)


def test_apo_zero_unpaired():
    out = L.apo_zero_unpaired(KTO_LOGPS, KTO_REF, LABELS, beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    close(out.mean(), 0.5820311307907104)


# -- TPOTrainer: sums and lengths from fixed logits; rows chosen x2, rejected x2, gold x2 -------
TPO = t(-6.436542510986328, -8.385662078857422, -6.5136399269104, -8.194494247436523,
        -6.507340908050537, -5.61338996887207)
TPO_LENGTHS = t(3.0, 4.0, 2.0, 4.0, 3.0, 3.0)


def test_tpo_and_tpo_l():
    c, r, gold = TPO[:2], TPO[2:4], TPO[4:]
    lc, lr, lg = TPO_LENGTHS[:2], TPO_LENGTHS[2:4], TPO_LENGTHS[4:]
    close(L.tpo(c, r, None, None, gold_logps=gold, gold_lengths=lg).mean(), 2.7135543823242188)
    close(L.tpo(c, r, None, None, gold_logps=gold, gold_lengths=lg, beta=0.5, label_smoothing=0.2).mean(),
          2.7224879264831543)
    close(L.tpo_l(c, r, None, None, chosen_lengths=lc, rejected_lengths=lr, gold_logps=gold, gold_lengths=lg,
                  beta=0.5).mean(), 2.847484827041626)
    close(L.tpo(c, r, None, None, beta=0.5, tpo_alpha=0.0).mean(), 0.7080696821212769)


def test_tpo_nll_is_per_row_where_trl_pools_the_batch():
    """The documented deviation: with unequal gold lengths TRL's cross-entropy averages over
    all gold tokens of the batch, prefkit over each row's own."""
    gold, lengths = t(-6.0, -2.0), t(3.0, 1.0)
    per_row = L.tpo(t(-1.0, -1.0), t(-1.0, -1.0), None, None, gold_logps=gold, gold_lengths=lengths) - L.tpo(
        t(-1.0, -1.0), t(-1.0, -1.0), None, None, tpo_alpha=0.0)
    assert per_row.mean().item() == pytest.approx((6.0 / 3 + 2.0 / 1) / 2)  # TRL: 8 / 4 = 2.0


# -- CPOTrainer.cpo_loss: sums (sigmoid), per-token means (AlphaPO) -----------------------------
SUMS_C, SUMS_R = t(-4.0, -9.0, -3.0), t(-6.0, -7.5, -8.0)
MEANS_C, MEANS_R = t(-2.0, -3.0, -0.5), t(-3.0, -2.5, -1.0)
ONE = torch.ones(3, dtype=D)


def test_cpo_preference_term():
    out = L.cpo(SUMS_C, SUMS_R, chosen_lengths=ONE, rejected_lengths=ONE, cpo_alpha=0.0)
    torch.testing.assert_close(out, t(0.5981388688087463, 0.7709571123123169, 0.4740769863128662), rtol=REL, atol=1e-7)
    out = L.cpo(SUMS_C, SUMS_R, chosen_lengths=ONE, rejected_lengths=ONE, cpo_alpha=0.0, label_smoothing=0.1)
    torch.testing.assert_close(out, t(0.61813884973526, 0.7559570670127869, 0.5240769386291504), rtol=REL, atol=1e-7)


def test_cpo_adds_cpo_alpha_times_the_chosen_nll():
    lengths = t(2.0, 3.0, 1.0)
    with_nll = L.cpo(SUMS_C, SUMS_R, chosen_lengths=lengths, rejected_lengths=ONE, cpo_alpha=0.5)
    without = L.cpo(SUMS_C, SUMS_R, chosen_lengths=lengths, rejected_lengths=ONE, cpo_alpha=0.0)
    torch.testing.assert_close(with_nll - without, 0.5 * t(2.0, 3.0, 3.0))


def test_alphapo():
    out = L.alphapo(MEANS_C, MEANS_R, chosen_lengths=ONE, rejected_lengths=ONE, beta=2.0, alpha=0.25, simpo_gamma=0.5)
    torch.testing.assert_close(out, t(0.03818230703473091, 2.5696823596954346, 0.40086349844932556), rtol=REL,
                               atol=1e-7)
    out = L.alphapo(MEANS_C, MEANS_R, chosen_lengths=ONE, rejected_lengths=ONE, beta=2.0, alpha=0.0, simpo_gamma=0.5)
    torch.testing.assert_close(out, t(0.20141328871250153, 1.7014132738113403, 0.4740769863128662), rtol=REL,
                               atol=1e-7)
    # alpha = 0 is SimPO with gamma = simpo_gamma
    torch.testing.assert_close(out, L.simpo(MEANS_C, MEANS_R, chosen_lengths=ONE, rejected_lengths=ONE, beta=2.0,
                                            gamma=0.5))


# -- RewardTrainer.compute_loss: center_rewards_coefficient -----------------------------------
def test_bradley_terry_center_rewards_coefficient():
    rc, rr = t(1.5, -0.5), t(0.25, 1.0)
    close(L.bradley_terry(rc, rr).mean(), 0.9766711592674255)
    close(L.bradley_terry(rc, rr, center_rewards_coefficient=0.01).mean(), 0.9932336807250977)
    close(L.bradley_terry(rc, rr, center_rewards_coefficient=0.5, margin=t(0.5, 0.0)).mean(), 1.8722671270370483)
