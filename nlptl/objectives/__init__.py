"""Training objectives: what ``nlptl.fit`` minimises. See ``base.py`` for the contract."""
from .base import Objective, TrainStep, weighted_mean
from .l2sp import L2SP
from .supervised import Supervised

__all__ = ["Objective", "TrainStep", "Supervised", "L2SP", "weighted_mean"]
