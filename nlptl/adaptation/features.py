"""Frozen features of text sets: one place that turns (encoder, texts) or a ready array into (N, D)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def as_features(encoder: Any, texts_or_features: Sequence[str] | np.ndarray, name: str, batch_size: int = 64,
                pooling: str = "mean") -> np.ndarray:
    """(N, D) float64: ``encoder.encode(texts)``, or the array itself when features are given (encoder may be None)."""
    if isinstance(texts_or_features, np.ndarray):
        features = texts_or_features
    else:
        if encoder is None:
            raise ValueError(f"{name}: pass an encoder to embed texts, or an (N, D) array of features")
        features = encoder.encode(list(texts_or_features), batch_size=batch_size, pooling=pooling)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"{name}: expected at least 2 rows of features (N, D), got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: features hold NaN or inf")
    return features
