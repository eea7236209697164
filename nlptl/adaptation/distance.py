"""``domain_distance``: the proxy A-distance (Ben-David et al. 2007), how far apart two text sets are.

Train a linear classifier to tell set A from set B on frozen features, measure its held-out
error eps, and report 2 (1 - 2 eps): 0 when the sets are indistinguishable, 2 when a line
separates them perfectly. A large distance warns that a source-trained model may not transfer.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .features import as_features


def domain_distance(encoder: Any, a_texts: Sequence[str] | np.ndarray, b_texts: Sequence[str] | np.ndarray, *,
                    folds: int = 5, seed: int = 0, C: float = 1.0) -> float:
    """Proxy A-distance 2(1 - 2 eps) from a linear domain classifier's cross-validated error eps."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = as_features(encoder, a_texts, "a_texts"), as_features(encoder, b_texts, "b_texts")
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    error = 1.0 - float(np.mean(cross_val_score(classifier, x, y, cv=splits, scoring="accuracy")))
    return 2.0 * (1.0 - 2.0 * min(error, 0.5))
