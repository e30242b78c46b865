"""The ``prefkit`` command line. Each command lives in its own module with
``register(subparsers)`` (cheap: no heavy imports) and ``run(args) -> int``."""
