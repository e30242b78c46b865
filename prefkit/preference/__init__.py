"""Preference models: one interface (P(a beats b | x)) for rewards, embeddings, judges and worlds."""

from prefkit.preference.base import (
    JudgeError,
    PreferenceModel,
    ScoringPreferenceModel,
    WorldJudge,
    checked_probabilities,
    symmetrised,
)

__all__ = [
    "JudgeError",
    "PreferenceModel",
    "ScoringPreferenceModel",
    "WorldJudge",
    "checked_probabilities",
    "symmetrised",
]
