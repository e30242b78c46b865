"""Entry point of the ``prefkit`` command: dispatches to one module per command."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Sequence

import prefkit.cli
from prefkit import __version__


def command_modules() -> list[str]:
    """Every module under prefkit.cli that defines ``register(subparsers)``: one per command."""
    names = [m.name for m in pkgutil.iter_modules(prefkit.cli.__path__) if not m.name.startswith("_")]
    return sorted(n for n in names if n != "main")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefkit",
        description="Learning from pairwise and general preference feedback.",
    )
    parser.add_argument("--version", action="version", version=f"prefkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"prefkit.cli.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from prefkit.config import ConfigError
    from prefkit.errors import InputError, NonFiniteLossError
    from prefkit.llm.base import LLMError

    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1 and not getattr(args, "multiprocess", False):
            raise InputError(f"prefkit {args.command} runs in one process, but it was launched with {world} "
                             "(torchrun / accelerate launch); only `prefkit train` and `prefkit rm train` "
                             "train across processes")
        return int(args.func(args) or 0)
    except (ConfigError, InputError, NonFiniteLossError, LLMError, ValueError, OSError) as err:
        if os.environ.get("PREFKIT_DEBUG") or not is_user_error(err):
            raise
        message = describe_error(err)
        if getattr(args, "json", False):
            print(json.dumps({"error": message}))
        print(f"prefkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prefkit {args.command}: interrupted", file=sys.stderr)
        return 130


def is_user_error(err: BaseException) -> bool:
    """Errors a user causes and can fix get one line; anything else keeps its traceback.

    Filesystem errors count when they name a path (a missing, unreadable or unwritable file or
    directory, a full disk); an ``OSError`` without a path is not the user's to fix.
    """
    if isinstance(err, OSError):
        return err.filename is not None
    return True


def describe_error(err: BaseException) -> str:
    """The one-line message; a filesystem error as ``path: reason`` (with how to see the
    traceback, in case the path is prefkit's own rather than one the user gave)."""
    if isinstance(err, OSError):
        path = err.filename if err.filename2 is None else err.filename2  # a rename: its target
        reason = err.strerror or type(err).__name__
        return f"{path}: {reason} ({type(err).__name__}; PREFKIT_DEBUG=1 shows the traceback)"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
