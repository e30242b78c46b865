"""The one training engine: a single run driver (``run.py``) and the step shapes it drives.

``train(cfg)`` is the entry point for policies (``offline/``: pairs, lists, SFT; ``online/``:
sample -> judge -> update); ``prefkit.engine.preference.train.train_preference_model`` for
preference models (``preference/``). ``METHODS`` lists what ``--method`` accepts.
"""

from prefkit.engine.data import TrainData
from prefkit.engine.methods import METHODS, Method, Recipe, get_method, register_method
from prefkit.engine.online import methods as _online_methods  # noqa: F401  (registers the online methods)
from prefkit.engine.run import RunSession, TrainResult
from prefkit.engine.train import train

__all__ = ["METHODS", "Method", "Recipe", "RunSession", "TrainData", "TrainResult", "get_method",
           "register_method", "train"]
