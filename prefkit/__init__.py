"""prefkit: learning from pairwise and general preference feedback.

Subpackages (import what you need; nothing heavy is imported here):

- ``prefkit.losses``: pure preference-loss functions and the ``LOSSES`` registry;
- ``prefkit.games``: exact tabular preference games and Nash solvers;
- ``prefkit.preference``: preference models (Bradley-Terry, GPM, pairwise);
- ``prefkit.sim``: simulated worlds with a known ground-truth preference;
- ``prefkit.policy``: tiny and Hugging Face policies, log-probs, sampling;
- ``prefkit.engine``: the one training loop;
- ``prefkit.data``: feedback records, readers and validation;
- ``prefkit.config``: the typed, strict configuration.
"""

__version__ = "0.1.0"
