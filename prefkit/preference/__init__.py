"""Preference models: one interface (P(a beats b | x)) for rewards, embeddings, judges and worlds.

- :class:`PreferenceModel` / :class:`ScoringPreferenceModel`: the interface (``base``).
- :class:`RewardModel` (``bt``), :class:`GeneralPreferenceModel` (``gpm``),
  :class:`PairwisePreferenceModel` (``pairpm``) on a Hugging Face causal LM or encoder, the tiny
  preset, or an MLP on feature vectors (``models``, ``backbone``, ``heads``).
- :func:`load_preference_model` / :func:`save_preference_model`: the saved directory (``io``).
- :func:`train_preference_model`, :func:`fit`: training through the engine's loop (``training``).
- :func:`evaluate_pairs`: accuracy with ties reported apart (``evaluation``).
- :func:`preference_matrix`, :func:`rank`: K responses per prompt (``ranking``).
- :class:`OrdinalRewardModel` (``ordinal``): a reward with ordered thresholds for graded labels.
- LLM, rubric and principle judges (``llm_judge``, ``rubrics``, ``icai``); DRAGON's exemplar and
  distribution rewards (``dragon``).
- ensembles, preference strength, BALD and loss-history noise detectors (``noise``).

docs/preference.md has the guide and the measured numbers.
"""

from prefkit.preference.backbone import FeatureBackbone, TextBackbone, load_backbone, tiny_backbone
from prefkit.preference.base import (
    JudgeError,
    PreferenceModel,
    ScoringPreferenceModel,
    WorldJudge,
    checked_probabilities,
    symmetrised,
)
from prefkit.preference.evaluation import evaluate_pairs
from prefkit.preference.heads import GPMHead, PairHead, RewardHead, build_head
from prefkit.preference.io import load_preference_model, save_preference_model
from prefkit.preference.models import (
    EmbeddingPreferenceModel,
    GeneralPreferenceModel,
    PairwisePreferenceModel,
    RewardModel,
    build_model,
)
from prefkit.preference.ordinal import OrdinalHead, OrdinalRewardModel
from prefkit.preference.ranking import preference_matrix, rank

__all__ = [
    "EmbeddingPreferenceModel",
    "FeatureBackbone",
    "GPMHead",
    "GeneralPreferenceModel",
    "JudgeError",
    "OrdinalHead",
    "OrdinalRewardModel",
    "PairHead",
    "PairwisePreferenceModel",
    "PreferenceModel",
    "RewardHead",
    "RewardModel",
    "ScoringPreferenceModel",
    "TextBackbone",
    "WorldJudge",
    "build_head",
    "build_model",
    "checked_probabilities",
    "evaluate_pairs",
    "load_backbone",
    "load_preference_model",
    "preference_matrix",
    "rank",
    "save_preference_model",
    "symmetrised",
    "tiny_backbone",
]
