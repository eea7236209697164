"""What, when and how to transfer, answered before training: score frozen features, rank, advise.

``logme``, ``h_score``, ``knn_accuracy`` and ``leep`` score features (or a source classifier's
predictions) against labels in seconds; ``rank_candidates`` ranks (source, depth) candidates of
any kind together; ``advise_freeze_depth`` reads the freeze line off one source's layer curve.
"""
from .features import (FeatureSource, StaticSource, TfidfSource, TransformerSource, load_source,
                       source_candidates)
from .ranking import SCORES, Candidate, FreezeAdvice, advise_freeze_depth, rank_candidates
from .scores import h_score, knn_accuracy, leep, logme

__all__ = ["logme", "h_score", "knn_accuracy", "leep", "rank_candidates", "advise_freeze_depth", "Candidate",
           "FreezeAdvice", "SCORES", "FeatureSource", "TransformerSource", "StaticSource", "TfidfSource",
           "load_source", "source_candidates"]
