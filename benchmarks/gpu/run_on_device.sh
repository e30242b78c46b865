#!/usr/bin/env bash
# The GPU benchmark (benchmarks/gpu/dpo_vs_trl.py) on a fresh GPU machine, in one call.
#
#   bash benchmarks/gpu/run_on_device.sh wheels      # on a machine with PyPI: fetch the wheels
#                                                    # into benchmarks/gpu/wheels/ (git-ignored)
#   bash benchmarks/gpu/run_on_device.sh run [ARGS]  # on the GPU machine: install, check, run
#
# `run` installs what the machine lacks, then runs the benchmark under a time budget:
# - with benchmarks/gpu/wheels/ present (a machine without network: carry that folder there),
#   the wheels are unpacked into $SITE (default /tmp/prefkit-site) without resolving
#   dependencies, and put first on PYTHONPATH;
# - without it, from PyPI: `pip install torch` when torch has no CUDA (PyPI's Linux wheels are
#   CUDA builds; set TORCH_INDEX for another index), `pip install -e .` and `trl==1.16.0`, and
#   flash-attn when FLASH_ATTN=1 (it compiles for a long time unless a wheel fits).
# Then it prints the versions, checks that CUDA works and that prefkit, TRL and datasets import,
# and runs `dpo_vs_trl.py --out $OUT ARGS` (OUT defaults to benchmarks/gpu/out) under
# `timeout $BUDGET_S` (default 480 s). results.jsonl gets each line as soon as it is known, so a
# run stopped by the budget still leaves every finished configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/gpu/wheels
SITE=${SITE:-/tmp/prefkit-site}
BUDGET_S=${BUDGET_S:-480}
OUT=${OUT:-benchmarks/gpu/out}
# Pure-Python wheels the GPU image lacks or has in another version (torch, accelerate, numpy,
# pyarrow, pandas, safetensors, tokenizers, huggingface_hub and the rest are used as installed).
PACKAGES=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 transformers==5.24.0)

case "${1:-}" in
wheels)
  # Wheels for the GPU machine's Python (3.12 by default; PY_VERSION to change it).
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${PACKAGES[@]}" regex==2026.11.19
  du -sh "$WHEELS"
  ;;
run)
  shift
  mkdir -p "$OUT"
  exec > >(tee "$OUT/log.txt") 2>&1
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      "$PY" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch
    fi
    "$PY" -m pip install -q -e . "trl==1.16.0"
    if [ "${FLASH_ATTN:-0}" = 1 ]; then
      "$PY" -m pip install -q flash-attn --no-build-isolation || echo "flash-attn did not install: sdpa only"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" - <<'EOF'
import importlib.metadata as md
import sys

import torch

for name in ("torch", "transformers", "trl", "accelerate", "datasets", "pyarrow", "tokenizers", "safetensors",
             "huggingface_hub", "numpy", "flash-attn"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} (not installed)")
import datasets  # noqa: F401  (an import that fails here fails before the first worker)
import trl  # noqa: F401

import prefkit.engine  # noqa: F401

print("python", sys.version.split()[0], "| cuda", torch.version.cuda, "| available", torch.cuda.is_available())
if not torch.cuda.is_available():
    sys.exit("CUDA is not available: stopping before the benchmark")
print("device", torch.cuda.get_device_name())
EOF
  echo "benchmark: timeout ${BUDGET_S}s, out $OUT"
  status=0
  timeout "$BUDGET_S" "$PY" benchmarks/gpu/dpo_vs_trl.py --out "$OUT" "$@" || status=$?
  [ "$status" = 124 ] && echo "stopped by the ${BUDGET_S}s budget: $OUT/results.jsonl holds what finished"
  exit "$status"
  ;;
*)
  echo "usage: $0 wheels | run [dpo_vs_trl.py arguments]" >&2
  exit 2
  ;;
esac
