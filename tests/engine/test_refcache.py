import torch

from prefkit.config import TrainConfig
from prefkit.engine.offline.examples import tokenize_lists, tokenize_pairs
from prefkit.engine.offline.refcache import model_fingerprint, reference_logps
from prefkit.policy import Policy

from .conftest import make_lists, make_pairs, tiny_config


def _policy(tmp_path, records):
    cfg = tiny_config(tmp_path)
    texts = [t for r in records for t in ((r.prompt, r.chosen, r.rejected) if hasattr(r, "chosen") else (r.prompt, *r.responses))]
    return Policy.tiny(texts, cfg.tiny, seed=0)


def test_cached_pair_logps_equal_one_by_one_scoring(tmp_path):
    pairs = make_pairs(10)
    policy = _policy(tmp_path, pairs)
    cfg = TrainConfig(max_length=64)
    logps, hit = reference_logps(tokenize_pairs(policy, pairs, cfg), policy, cfg, batch_size=3)
    assert not hit and logps.shape == (10, 2)
    expected_c = policy.logprob([p.prompt for p in pairs], [p.chosen for p in pairs], batch_size=1)
    expected_r = policy.logprob([p.prompt for p in pairs], [p.rejected for p in pairs], batch_size=1)
    torch.testing.assert_close(logps[:, 0], expected_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logps[:, 1], expected_r, rtol=1e-5, atol=1e-5)
    again, hit = reference_logps(tokenize_pairs(policy, pairs, cfg), policy, cfg)
    assert hit and torch.equal(again, logps)


def test_cached_list_logps_fill_real_slots(tmp_path):
    lists = make_lists(5, k=3)
    policy = _policy(tmp_path, lists)
    cfg = TrainConfig(max_length=64)
    logps, _ = reference_logps(tokenize_lists(policy, lists, cfg), policy, cfg, batch_size=2, use_cache=False)
    for i, record in enumerate(lists):
        expected = policy.logprob([record.prompt] * 3, record.responses)
        torch.testing.assert_close(logps[i], expected, rtol=1e-5, atol=1e-5)


def test_fingerprint_changes_with_any_weight(tmp_path):
    policy = _policy(tmp_path, make_pairs(2))
    before = model_fingerprint(policy.model)
    with torch.no_grad():
        next(policy.model.parameters()).view(-1)[0] += 1e-6
    assert model_fingerprint(policy.model) != before
