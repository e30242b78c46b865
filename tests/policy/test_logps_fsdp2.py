"""The chunked LM-head log-prob path under FSDP2 (raw ``fully_shard``, 2 CPU processes, gloo):
the same values and gradients as the unsharded model, without full-vocabulary logits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_chunked_logps_under_fsdp2_equal_the_unsharded_model(tmp_path):
    out = tmp_path / "result.json"
    worker = Path(__file__).with_name("fsdp2_logps_worker.py")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(worker), str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["head_is_dtensor"] == "DTensor"
    assert result["values"] < 1e-10
    assert result["head_grad_norm"] > 0.1
    assert result["head_grad"] < 1e-10 and result["layer_grad"] < 1e-10
