"""The registry: every entry documented, calling conventions honoured, specs consistent."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
import torch

from prefkit import losses as L
from prefkit.losses import INPUTS, LOSSES, LossSpec

D = torch.float64
ARXIV = re.compile(r"arXiv \d{4}\.\d{4,5}")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_entry_is_documented_with_a_paper(name):
    spec = LOSSES[name]
    assert isinstance(spec, LossSpec) and spec.name == name
    doc = inspect.getdoc(spec.fn) or ""
    assert "Paper" in doc and ARXIV.search(doc), (
        f"{name}: docstring must name the paper and arXiv id"
    )
    assert ARXIV.search(spec.paper), f"{name}: spec.paper must cite an arXiv id"
    assert spec.kind in ("pairwise", "listwise", "reward", "online", "token", "unpaired")
    assert set(spec.inputs) <= set(INPUTS)
    if spec.strength_arg is not None:
        # token losses may put their strength in the advantages (the KL penalty in the reward)
        owners = [spec.fn] if spec.kind != "token" else [spec.fn, spec.advantage_fn]
        takes = [f for f in owners if spec.strength_arg in inspect.signature(f).parameters]
        assert len(takes) == 1, f"{name}: exactly one function takes {spec.strength_arg!r}"
        assert any(spec.strength_arg in d for d in spec.all_defaults.values()), (
            "the strength argument is keyword-only with a default"
        )


@pytest.mark.parametrize("name", sorted(n for n, s in LOSSES.items() if s.kind == "pairwise"))
def test_pairwise_losses_take_four_tensors_positionally_and_beta_by_keyword(name):
    spec = LOSSES[name]
    params = list(inspect.signature(spec.fn).parameters.values())
    assert [p.name for p in params[:4]] == [
        "chosen_logps",
        "rejected_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
    ]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:4])
    beta = inspect.signature(spec.fn).parameters["beta"]
    assert beta.kind is inspect.Parameter.KEYWORD_ONLY
    g = torch.Generator().manual_seed(0)
    c, r, rc, rr = (torch.randn(3, generator=g, dtype=D) - 2 for _ in range(4))
    extra = {name: torch.full((3,), 2.0 if name == "gold_lengths" else -0.5, dtype=D) for name in spec.inputs}
    if spec.needs_lengths:
        extra.update(chosen_lengths=torch.ones(3), rejected_lengths=torch.full((3,), 2.0))
    out = spec.fn(c, r, rc, rr, beta=0.5, **extra)
    assert out.shape == (3,) and out.dtype == D
    if not spec.needs_reference:
        torch.testing.assert_close(spec.fn(c, r, None, None, beta=0.5, **extra), out)


@pytest.mark.parametrize("name", sorted(n for n, s in LOSSES.items() if s.kind == "listwise"))
def test_listwise_losses_follow_the_listwise_convention(name):
    spec = LOSSES[name]
    params = list(inspect.signature(spec.fn).parameters)
    assert params[:3] == ["logps", "ref_logps", params[2]] and "mask" in spec.defaults
    g = torch.Generator().manual_seed(1)
    logps, ref = torch.randn(2, 4, generator=g, dtype=D), torch.randn(2, 4, generator=g, dtype=D)
    scores = torch.rand(2, 4, generator=g, dtype=D)
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    labels = spec.targets_from_scores(scores, mask) if spec.targets_from_scores else scores
    out = spec.fn(logps, ref, labels, mask=mask, **{spec.strength_arg: 0.5})
    assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(n for n, s in LOSSES.items() if s.kind == "token"))
def test_token_losses_follow_the_token_convention(name):
    spec = LOSSES[name]
    params = list(inspect.signature(spec.fn).parameters)
    assert params[:5] == ["logps", "old_logps", "ref_logps", "advantages", "mask"]
    assert spec.reduction in ("sequences", "tokens", "micro_tokens")
    g = torch.Generator().manual_seed(2)
    k = max(2, spec.min_samples_per_prompt)
    rows, width = 3 * k, 5
    old = -torch.rand(rows, width, generator=g, dtype=D) - 0.1
    mask = torch.arange(width)[None, :] < torch.randint(1, width + 1, (rows,), generator=g)[:, None]
    values = torch.zeros(rows, width, dtype=D) if spec.value_fn else None
    rollout = L.Rollout(torch.rand(rows, generator=g, dtype=D), mask, old, old + 0.1, values, k)
    adv = spec.advantage_fn(rollout)
    engine = (
        {"max_completion_length": width} if "max_completion_length" in spec.engine_params else {}
    )
    logps = (old + 0.05).requires_grad_()
    per_seq = spec.fn(logps, old, old + 0.1, adv.advantages, mask, **engine)
    if spec.value_fn is not None:
        per_seq = per_seq + spec.value_fn(values + 0.1, values, adv.returns, mask)
    assert per_seq.shape == (rows,) and per_seq.dtype == D
    L.reduce_to_step(per_seq, mask, spec.reduction).backward()
    assert torch.isfinite(logps.grad).all() and logps.grad.abs().sum() > 0


def test_split_params_sorts_keys_and_refuses_unknown_and_engine_ones():
    spec = LOSSES["ppo"]
    parts = spec.split_params({"cliprange": 0.1, "kl_coef": 0.01, "vf_coef": 0.5})
    assert parts == {"fn": {"cliprange": 0.1}, "advantage_fn": {"kl_coef": 0.01},
                     "value_fn": {"vf_coef": 0.5}}  # fmt: skip
    with pytest.raises(ValueError, match=r"loss\.params\.clip: is not a setting of ppo"):
        spec.split_params({"clip": 0.1})
    with pytest.raises(ValueError, match=r"loss\.params\.entropies: is set by the engine"):
        spec.split_params({"entropies": None})
    with pytest.raises(ValueError, match="max_completion_length: is set by the engine"):
        LOSSES["dr_grpo"].split_params({"max_completion_length": 8})


def test_a_token_spec_with_overlapping_keywords_is_refused():
    def advantages(rollout, *, cliprange=0.2):
        return rollout

    with pytest.raises(ValueError, match="'cliprange' is in both fn and advantage_fn"):
        LossSpec("x", L.ppo, "token", "arXiv 1707.06347", advantage_fn=advantages,
                 reduction="tokens")  # fmt: skip
    with pytest.raises(ValueError, match="needs advantage_fn and reduction"):
        LossSpec("x", L.ppo, "token", "arXiv 1707.06347")
@pytest.mark.parametrize("name", sorted(n for n, s in LOSSES.items() if s.kind == "unpaired"))
def test_unpaired_losses_follow_the_unpaired_convention(name):
    spec = LOSSES[name]
    params = list(inspect.signature(spec.fn).parameters.values())
    assert [p.name for p in params[:3]] == ["logps", "ref_logps", "labels"]
    assert spec.strength_arg == "beta" and "beta" in spec.defaults
    assert {"desirable_weight", "undesirable_weight"} <= set(spec.defaults)
    g = torch.Generator().manual_seed(2)
    logps, ref = torch.randn(4, generator=g, dtype=D) - 3, torch.randn(4, generator=g, dtype=D) - 3
    labels = torch.tensor([True, False, True, False])
    extra = {name: torch.randn(4, generator=g, dtype=D) for name in spec.inputs}
    out = spec.fn(logps, ref, labels, beta=0.5, **extra)
    assert out.shape == (4,) and out.dtype == D and torch.isfinite(out).all()
    # 0/1 integer labels mean the same as bool labels
    torch.testing.assert_close(spec.fn(logps, ref, labels.long(), beta=0.5, **extra), out)


def test_registry_covers_the_required_methods():
    required = {
        "dpo", "robust", "ipo", "hinge", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
        "aot_unpaired", "apo_zero", "apo_down", "discopop", "simpo", "dpo_norm", "orpo",
        "lipo_lambda", "dpo_pl", "adpo", "irpo", "bradley_terry", "gpm", "online_ipo",
        "nash_md_pg", "p3o", "dno", "sppo", "grao", "superhf", "ppo", "pairwise_ppo", "rloo",
        "grpo", "bnpo", "dr_grpo", "dapo", "reinforce_pp",
        "kto", "bco_unpaired",
        "apo_zero_unpaired", "fdpo", "ld_dpo", "wpo", "tpo", "alphapo", "cpo",
    }  # fmt: skip
    assert required <= set(LOSSES)


def test_importing_losses_pulls_in_only_torch():
    code = (
        "import sys; import prefkit.losses; "
        "heavy = [m for m in ('transformers', 'accelerate', 'datasets', 'scipy', 'prefkit.engine') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
