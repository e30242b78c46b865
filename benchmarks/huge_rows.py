"""Peak memory of `prefkit train`, `prefkit rm train` and `prefkit validate` on one huge JSONL row.

Writes 16 ordinary pairs, the first with a `chosen` of 5 MB or 50 MB of words (3000 distinct
ones), runs each command in a child process and reports the child's peak resident set size
(`ru_maxrss` from `os.wait4`) and wall time. Train and rm train raise `data.max_row_bytes` to
64 MiB so the 50 MB row is read at all; one more run shows the default 16 MiB limit refusing it.

    PYTHONPATH=. python benchmarks/huge_rows.py [--sizes 5 50] [--prefkit-root DIR]

`--prefkit-root DIR` runs another checkout's `prefkit` package (e.g. `git archive <commit>
prefkit | tar -x -C DIR`) with this environment, for before/after tables; `--legacy` leaves out
the keys an older checkout does not know (`data.max_row_bytes`, `--max-row-bytes`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCH = (
    "import sys; root = sys.argv.pop(1)\n"
    "if root:\n"
    "    sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
    "    sys.path.insert(0, root)\n"
    "from prefkit.cli.main import main; sys.exit(main(sys.argv[1:]))\n"
)


def write_file(path: Path, megabytes: int) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    words, size = [], 0
    while size < megabytes * 1024 * 1024:
        word = rng.choice(vocab)
        words.append(word)
        size += len(word) + 1
    rows = [{"prompt": f"question {i} about topic {i % 5}", "chosen": f"a good answer number {i}",
             "rejected": f"bad reply {i} here"} for i in range(16)]
    rows[0]["chosen"] = " ".join(words)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(root: str, args: list[str]) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS in MB) of one prefkit command in a child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", LAUNCH, root, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - start, usage.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50], help="row sizes in MB")
    parser.add_argument("--prefkit-root", default="", help="directory holding another prefkit package")
    parser.add_argument("--legacy", action="store_true", help="no data.max_row_bytes / --max-row-bytes")
    args = parser.parse_args()
    raise_limit = [] if args.legacy else ["data.max_row_bytes=67108864"]
    train = ["train.steps=2", "train.batch_size=4", "train.threads=1", *raise_limit]
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.sizes:
            data = Path(tmp) / f"row{mb}.jsonl"
            write_file(data, mb)
            commands = {
                "train (dpo)": ["train", "--method", "dpo", "--data", str(data), "--out", f"{tmp}/t{mb}", *train],
                "rm train (bt)": ["rm", "train", "--data", str(data), "--out", f"{tmp}/r{mb}", *train],
                "validate": ["validate", "--data", str(data), "--max-length", "512",
                             *([] if args.legacy else ["--max-row-bytes", "67108864"])],
            }
            if not args.legacy and mb * 1024 * 1024 > 16 * 1024 * 1024:
                commands["train, default 16 MiB limit"] = ["train", "--method", "dpo", "--data", str(data),
                                                           "--out", f"{tmp}/d{mb}", "train.steps=2",
                                                           "train.batch_size=4"]
            for name, command in commands.items():
                code, wall, peak = run(args.prefkit_root, command)
                print(f"huge_rows: {mb} MB row, {name}: exit {code}, peak RSS {peak} MB, {wall:.1f} s", flush=True)


if __name__ == "__main__":
    main()
