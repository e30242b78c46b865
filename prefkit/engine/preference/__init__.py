"""preference step shapes of the run driver."""

from prefkit.engine.preference import ordinal  # noqa: F401  (registers rm.kind=ordinal's run in kinds.KIND_RUNS)
