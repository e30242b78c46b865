"""The one training engine: offline (pairs, lists, SFT) and online (sample -> judge -> update) steps.

``train(cfg)`` is the entry point; ``METHODS`` lists what ``--method`` accepts.
"""

from prefkit.engine import online_methods as _online_methods  # noqa: F401  (registers the online methods)
from prefkit.engine.loop import TrainData, TrainResult, train
from prefkit.engine.methods import METHODS, Method, get_method, register_method

__all__ = ["METHODS", "Method", "TrainData", "TrainResult", "get_method", "register_method", "train"]
