"""Tools for fault injection: kill ``prefkit`` subprocesses at chosen moments, then compare the
resumed run directory with an uninterrupted one.

Shared by ``tests/engine/test_faults.py`` (a few seeded kills) and ``benchmarks/faults.py``
(many). Nothing in prefkit is patched: the moments are found by watching the run directory
(a checkpoint's staging directory appearing, ``latest`` moving, ``metrics.jsonl`` being
replaced), and the kill is ``SIGKILL`` after a random delay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open

TIMING_KEYS = frozenset({"gen_share", "ref_cache_hit"})
"""Summary and row keys that measure time or the machine's cache, not what was computed (with
every key ending in ``_s``)."""

LEFTOVER = re.compile(r"(^|/)(\.[^/]*\.(tmp|old)-[^/]*|\.tmp-[^/]*|\.prefkit\.lock)$")
"""Paths no finished run may leave: staging files and directories of an atomic write
(``.NAME.tmp-*``, ``.NAME.old-*``), checkpoint staging (``checkpoints/.tmp-step-*``), the lock."""


def prefkit_command(*args: str) -> list[str]:
    """``python -m prefkit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "prefkit", *args]


def subprocess_env(cache: Path | None = None, prefkit_root: Path | None = None) -> dict[str, str]:
    """The runs' environment: one thread, this repository importable (``prefkit_root``'s
    ``prefkit`` package first when given), the reference-log-prob cache in ``cache``. Start runs
    in a directory without a ``prefkit/`` of its own (the current directory comes first on
    ``sys.path``)."""
    paths = [str(prefkit_root.resolve())] if prefkit_root is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([*paths, str(Path(__file__).resolve().parents[2])])}
    if cache is not None:
        env["PREFKIT_CACHE"] = str(cache)
    return env


# ----------------------------------------------------------------------------- what a run left

def tensors_digest(path: Path) -> str:
    """sha256 of a safetensors file's tensors (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as handle:
        for name in sorted(handle.keys()):
            tensor = handle.get_tensor(name).contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def weights_digests(run: Path) -> dict[str, str]:
    """Every safetensors file of the run's outputs and of its last checkpoint (model, optimizer
    and each rank's generator state), by path relative to the run."""
    out = {}
    for path in sorted(run.rglob("*.safetensors")):
        rel = path.relative_to(run).as_posix()
        if rel.startswith("checkpoints/"):
            continue
        out[rel] = tensors_digest(path)
    latest = run / "checkpoints" / "latest"
    if latest.is_file():
        step = run / "checkpoints" / latest.read_text(encoding="utf-8").strip()
        for path in sorted(step.glob("*.safetensors")):
            out[f"checkpoints/latest/{path.name}"] = tensors_digest(path)
    return out


def deterministic(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.endswith("_s") and k not in TIMING_KEYS}


def metric_rows(run: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` without its timing keys (a line that is not JSON is kept as text, so
    it shows as a mismatch)."""
    rows: list[dict[str, Any]] = []
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rows.append(deterministic(json.loads(line)))
        except json.JSONDecodeError:
            rows.append({"unparsable": line})
    return rows


def summary(run: Path) -> dict[str, Any] | None:
    path = run / "metrics.json"
    return deterministic(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def listing(run: Path) -> set[str]:
    """Every path under the run, relative, with ``step-XXXXXXXX`` kept as is."""
    return {p.relative_to(run).as_posix() for p in run.rglob("*")}


def leftovers(run: Path, reference: set[str] | None = None, *, keep: int = 2) -> list[str]:
    """Paths a finished run should not have: staging names, the lock, checkpoints beyond the
    newest ``keep`` and (given the listing of an uninterrupted run) anything else that run does
    not have (checkpoint directories are compared by count, since ``train.save_every`` may differ)."""
    found = listing(run)
    bad = {p for p in found if LEFTOVER.search(p)}
    steps = sorted(p for p in found if re.fullmatch(r"checkpoints/step-\d{8}", p))
    for old in steps[:-keep]:
        bad |= {p for p in found if p == old or p.startswith(old + "/")}
    if reference is not None:
        bad |= {p for p in found - reference if not re.match(r"checkpoints/step-\d{8}(/|$)", p)}
    return sorted(bad)


def checkpoint_problem(run: Path) -> str | None:
    """Why the resume point is not safe, or None: ``checkpoints/latest`` (when present) must
    name a complete, readable checkpoint of the step it is named after. (Other checkpoint
    directories may be half removed by a kill during pruning; they are never resumed from.)"""
    from prefkit.engine import checkpoint as ckpt
    from prefkit.engine.rundir import latest_checkpoint

    root = run / "checkpoints"
    if not os.path.lexists(root / "latest"):
        return None
    try:
        path = latest_checkpoint(root)
        if path is None:
            return f"latest names {(root / 'latest').read_text()!r}, which has no state.json"
        loaded = ckpt.read_checkpoint(path)
        for name in ("model.safetensors", "optimizer.safetensors", "rank-0.safetensors"):
            tensors_digest(path / name)
        json.loads((path / "rank-0.json").read_text(encoding="utf-8"))
        if path.name != f"step-{loaded.state.step:08d}":
            return f"{path.name} holds step {loaded.state.step}"
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


@dataclass
class Comparison:
    weights: list[str]
    rows: bool
    summary: bool
    leftovers: list[str]

    @property
    def matches(self) -> bool:
        return not self.weights and self.rows and self.summary

    def describe(self) -> str:
        parts = []
        if self.weights:
            parts.append("weights differ: " + ", ".join(self.weights))
        if not self.rows:
            parts.append("metrics.jsonl rows differ")
        if not self.summary:
            parts.append("metrics.json differs")
        if self.leftovers:
            parts.append("leftovers: " + ", ".join(self.leftovers))
        return "; ".join(parts) or "same"


def compare(run: Path, reference: Path) -> Comparison:
    """``run`` against the uninterrupted ``reference``: weights, metric rows, summary, leftovers."""
    mine, theirs = weights_digests(run), weights_digests(reference)
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return Comparison(weights=differ, rows=metric_rows(run) == metric_rows(reference),
                      summary=summary(run) == summary(reference) and summary(run) is not None,
                      leftovers=leftovers(run, listing(reference)))


# ----------------------------------------------------------------------------- watching and killing

class Run(Protocol):
    """A started run (a ``subprocess.Popen`` or a :class:`ForkedRun`)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


def metrics_inode(run: Path) -> int | None:
    try:
        return os.stat(run / "metrics.jsonl").st_ino
    except FileNotFoundError:
        return None


def latest_name(run: Path) -> str | None:
    try:
        return (run / "checkpoints" / "latest").read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def latest_step(run: Path) -> int:
    """The step ``checkpoints/latest`` names (0 when none)."""
    name = latest_name(run)
    return int(name[5:]) if name and re.fullmatch(r"step-\d{8}", name) else 0


def logged_step(run: Path) -> int:
    """The step of the last complete row of ``metrics.jsonl`` (0 when none)."""
    try:
        lines = (run / "metrics.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def staging_exists(run: Path, step: int) -> bool:
    return os.path.isdir(run / "checkpoints" / f".tmp-step-{step:08d}")


def checkpoint_in_progress(run: Path, step: int) -> bool:
    """The checkpoint of ``step`` is being written: its staging directory exists, or its
    directory exists without ``state.json`` (the last file written)."""
    final = run / "checkpoints" / f"step-{step:08d}"
    return staging_exists(run, step) or (final.is_dir() and not (final / "state.json").exists())


def started_training(run: Path, inode_before: int | None) -> Callable[[], bool]:
    """True once this process has replaced ``metrics.jsonl`` (its logger exists: training began)."""
    return lambda: (inode := metrics_inode(run)) is not None and inode != inode_before


def wait_until(proc: Run, event: Callable[[], bool], *, timeout: float, poll: float = 2e-4) -> bool:
    """Poll ``event`` until it holds (True) or ``proc`` exits or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if event():
            return True
        if proc.poll() is not None:
            return event()
        time.sleep(poll)
    return False


def kill_while(proc: Run, condition: Callable[[], bool], *, timeout: float, poll: float = 1e-4) -> bool:
    """SIGKILL ``proc`` at an instant where ``condition`` holds: when it is seen to hold, the
    process is frozen (SIGSTOP), ``condition`` is checked again on the frozen state and, if it
    still holds, the process is killed; else it continues. True when killed that way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            os.kill(proc.pid, signal.SIGSTOP)
            _wait_stopped(proc.pid)
            if condition():
                os.kill(proc.pid, signal.SIGKILL)
                return proc.wait() == -signal.SIGKILL
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(poll)
    return False


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("T", "t", "Z", "X"):
            return
        time.sleep(1e-4)


def kill_after(proc: Run, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; True when it died of the kill (not finished first)."""
    if delay > 0:
        time.sleep(delay)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


class ExecLauncher:
    """Each run is a fresh ``python -m prefkit`` process (interpreter start and imports included)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def start(self, args: Sequence[str], log: Path) -> subprocess.Popen:
        """Start ``prefkit ARGS``; stdout and stderr go to ``log`` (a pipe could fill and stall it)."""
        with open(log, "ab") as handle:
            return subprocess.Popen(prefkit_command(*args), env=self.env, cwd=self.cwd, stdout=handle,
                                    stderr=subprocess.STDOUT)

    def close(self) -> None:
        pass


WARM = ("prefkit.engine", "prefkit.engine.train", "prefkit.engine.online.train", "prefkit.engine.preference.train",
        "prefkit.preference.io", "prefkit.sim", "transformers.models.llama.modeling_llama", "accelerate", "safetensors.torch")
"""What the zygote imports before it forks (the imports every run would repeat)."""


def serve() -> None:
    """The zygote: import prefkit once, then fork one child per request line on stdin (JSON:
    ``argv``, ``log``), each running ``prefkit.cli.main.main(argv)`` as ``python -m prefkit``
    does and exiting through the interpreter's normal shutdown. Replies ``pid PID`` for each
    child and, when it ends, ``exit PID STATUS`` (negative: the signal that killed it); children
    may run at the same time."""
    import importlib
    import select

    from prefkit.cli.main import build_parser, main

    build_parser()  # imports every command module
    for name in WARM:
        importlib.import_module(name)
    import gc

    gc.freeze()  # the children's collections skip (and so do not copy) the zygote's objects
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    reply.write("ready\n")
    pending, children, closed = b"", set(), False
    while not closed or children:
        if not closed and select.select([0], [], [], 0.002)[0]:
            chunk = os.read(0, 65536)
            closed = not chunk
            pending += chunk
        elif closed:
            time.sleep(0.002)
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                reply.close()
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                sys.argv = ["prefkit", *request["argv"]]
                raise SystemExit(main(request["argv"]))
            children.add(pid)
            reply.write(f"pid {pid}\n")
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                reply.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")


class ForkedRun:
    """A run forked by the zygote, with the part of ``subprocess.Popen`` the tools use."""

    def __init__(self, launcher: ForkLauncher, pid: int) -> None:
        self.launcher, self.pid, self.returncode = launcher, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.launcher.pump(block=False)
            self.returncode = self.launcher.exits.get(self.pid)
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            self.launcher.pump(block=True)
        return self.returncode


class ForkLauncher:
    """Runs forked from a zygote that imported prefkit once: a start costs milliseconds instead
    of the seconds of imports. Each child runs the CLI's ``main(argv)``, as ``python -m prefkit``
    does. (All children share the zygote's ``PYTHONHASHSEED``: :class:`ExecLauncher` is the
    check that nothing depends on it.)"""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.engine.fault_tools import serve; serve()"],
                                     env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buffer = b""
        self.lines: list[str] = []
        self.exits: dict[int, int] = {}
        while not self.lines:
            self.pump(block=True)
        if self.lines.pop(0) != "ready":
            raise RuntimeError("the zygote did not start")

    def pump(self, *, block: bool) -> None:
        """Read what the zygote said: exit statuses into ``exits``, other lines into ``lines``."""
        import select

        fd = self.proc.stdout.fileno()
        if not block and not select.select([fd], [], [], 0)[0]:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"the zygote exited ({self.proc.wait()})")
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            words = line.decode().split()
            if words[:1] == ["exit"]:
                self.exits[int(words[1])] = int(words[2])
            else:
                self.lines.append(" ".join(words))

    def start(self, args: Sequence[str], log: Path) -> ForkedRun:
        self.proc.stdin.write((json.dumps({"argv": list(args), "log": str(log)}) + "\n").encode())
        self.proc.stdin.flush()
        while not self.lines:
            self.pump(block=True)
        return ForkedRun(self, int(self.lines.pop(0).split()[1]))

    def close(self) -> None:
        """Stop the zygote (its children are left to the caller)."""
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)


def landed(run: Path, final_step: int) -> str:
    """Where a kill landed, read from what it left: ``staging`` (a checkpoint half written),
    ``renamed`` (a checkpoint in place, ``latest`` not yet moved), ``pruning`` (``latest``
    moved, the oldest checkpoint not yet removed), ``outputs`` (a final output
    half written), ``done`` (everything written), else ``between``."""
    checkpoints = run / "checkpoints"
    if checkpoints.is_dir() and any(p.name.startswith(".tmp-") for p in checkpoints.iterdir()):
        return "staging"
    steps = sorted(p.name for p in checkpoints.glob("step-*")) if checkpoints.is_dir() else []
    if steps and latest_name(run) != steps[-1]:
        return "renamed"
    if len(steps) > 2:
        return "pruning"
    if any(LEFTOVER.search(p.name) and p.name != ".prefkit.lock" for p in run.iterdir()):
        return "outputs"
    if (run / "metrics.json").exists():
        return "done"
    return "between"
