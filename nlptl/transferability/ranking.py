"""Rank candidate (source, depth) features for a task, and read the freeze line off a layer curve.

A *candidate* is one way to get frozen features for the task: a transformer's hidden states after
its bottom ``depth`` layer groups, a static-vector encoder, TF-IDF. Its features come from
:mod:`nlptl.transferability.features`; here every candidate is just a named (N, D) array, so
candidates of different kinds are scored and ranked together.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .scores import h_score, knn_accuracy, logme

__all__ = ["Candidate", "SCORES", "STANDARDIZED_SCORES", "standardized", "rank_candidates", "FreezeAdvice",
           "advise_freeze_depth"]

#: Score name -> function(features, labels). All are "higher is better".
SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "logme": logme,
    "h_score": h_score,
    "knn_accuracy": knn_accuracy,
}
#: The scores ``standardize`` applies to: LogME, whose prior is isotropic. H-score needs no scaling
#: (unregularised it is invariant to any invertible linear map of the features; on already isotropic
#: features Ledoit-Wolf shrinks fully and its (1 - a) factor zeroes the score), and kNN keeps cosine
#: similarity on the raw features, the geometry sentence encoders are trained for.
STANDARDIZED_SCORES = ("logme",)


def standardized(features: np.ndarray) -> np.ndarray:
    """Each dimension to zero mean and unit variance (constant dimensions stay zero).

    LogME's prior is isotropic, so on raw features a few high-variance dimensions (transformers'
    "rogue" outlier dimensions, Timkey & van Schijndel 2021) dominate the evidence; a linear head
    behind a feature scaler sees every dimension on one scale, and so does the score.
    """
    x = np.asarray(features, dtype=np.float64)
    scale = x.std(0)
    return (x - x.mean(0)) / np.where(scale > 1e-12, scale, 1.0)


@dataclass
class Candidate:
    """Frozen features of one (source, depth) pair on the ranking sample."""

    name: str  # e.g. "minilm@layer.5", "glove-6b-50d", "tfidf"
    features: np.ndarray = field(repr=False)  # (N, D) pooled
    source: str = ""  # the encoder name it came from
    kind: str = ""  # "transformer", "static", "tfidf"
    group: str | None = None  # layer group whose output these are (transformers)
    depth: int | None = None  # number of bottom groups computed to get them (transformers)
    num_groups: int | None = None  # the source's layer-group count, for the freeze line
    feature_seconds: float = 0.0  # this candidate's share of computing the features


def rank_candidates(
    candidates: Sequence[Candidate] | dict[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[str] = ("logme", "h_score", "knn_accuracy"),
    primary: str = "logme",
    standardize: bool = True,
) -> list[dict[str, Any]]:
    """Score every candidate and sort by ``primary`` (best first).

    ``standardize`` scales each feature dimension to unit variance before LogME
    (:data:`STANDARDIZED_SCORES`), see :func:`standardized`. LogME's linear model has an intercept
    either way, as the probe it stands in for does (see :func:`~nlptl.transferability.logme`).

    Returns one row per candidate: name, source, kind, group, depth, dims, each score, ``rank``
    (1 = best by ``primary``), ``rank_by`` (the rank under each score), and the seconds spent
    (features plus scores).
    """
    if isinstance(candidates, dict):
        candidates = [Candidate(name, np.asarray(f)) for name, f in candidates.items()]
    if not candidates:
        raise ValueError("no candidates to rank: pass at least one")
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise ValueError(f"unknown score {unknown[0]!r}; choose from {sorted(SCORES)}")
    if primary not in scores:
        raise ValueError(f"primary={primary!r} is not among the scores computed {list(scores)}")
    y = np.asarray(labels)
    rows = []
    for candidate in candidates:
        if len(candidate.features) != len(y):
            raise ValueError(f"candidate {candidate.name!r} has {len(candidate.features)} rows of features "
                             f"but there are {len(y)} labels")
        row = {"name": candidate.name, "source": candidate.source, "kind": candidate.kind,
               "group": candidate.group, "depth": candidate.depth, "dims": int(candidate.features.shape[1])}
        seconds = {}
        scaled = standardized(candidate.features) if standardize else candidate.features
        for score in scores:
            started = time.perf_counter()
            row[score] = SCORES[score](scaled if score in STANDARDIZED_SCORES else candidate.features, y)
            seconds[score] = time.perf_counter() - started
        row["score_seconds"] = seconds
        row["feature_seconds"] = candidate.feature_seconds
        row["seconds"] = candidate.feature_seconds + sum(seconds.values())
        rows.append(row)
    for score in scores:  # rank 1 = highest; ties share the better rank
        values = np.array([row[score] for row in rows])
        for row, value in zip(rows, values):
            row.setdefault("rank_by", {})[score] = int((values > value).sum() + 1)
    rows.sort(key=lambda row: (row["rank_by"][primary], row["name"]))
    for row in rows:
        row["rank"] = row["rank_by"][primary]
    return rows


@dataclass
class FreezeAdvice:
    """Where to draw the freeze line, and the curve it was read from."""

    top_k: int  # layer groups to train above the freeze line (0: feature extraction)
    strategy: str  # "feature_extraction" or "top_k"
    depth: int  # groups kept frozen: the first depth whose score is within tolerance of the best
    groups: list[str]  # layer-group names, bottom -> top
    curve: list[float]  # score after each depth 1 .. len(groups)
    best_depth: int  # argmax of the curve
    tolerance: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def advise_freeze_depth(
    curve: Sequence[float] | dict[str, float],
    groups: Sequence[str] | None = None,
    tolerance: float = 0.05,
) -> FreezeAdvice:
    """Recommend ``top_k`` from per-depth scores (bottom -> top) of one source's frozen features.

    "Stops improving" is defined relative to the curve's own range, so it means the same for any
    score: the freeze depth is the lowest depth ``d`` with ``score[d] >= max - tolerance * (max -
    min)``. Groups up to ``d`` already give (almost) the best frozen features; the groups above
    add little for this task, so they are the ones worth retraining: ``top_k = G - d``. A curve
    that still improves at the top gives ``top_k = 0``: the source's own top layer is already the
    best feature for the task, and feature extraction is the cheap choice.
    """
    if isinstance(curve, dict):
        groups = list(curve) if groups is None else list(groups)
        curve = [curve[g] for g in groups]
    values = np.asarray(curve, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("curve must be a non-empty 1-D sequence of scores, one per depth (bottom -> top)")
    if not np.isfinite(values).all():
        raise ValueError(f"curve has non-finite scores: {values.tolist()}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance={tolerance} must be in [0, 1): a fraction of the curve's range")
    groups = [f"depth.{i + 1}" for i in range(len(values))] if groups is None else list(groups)
    if len(groups) != len(values):
        raise ValueError(f"{len(groups)} group names for {len(values)} scores")
    best, worst = values.max(), values.min()
    threshold = best - tolerance * (best - worst)
    depth = int(np.flatnonzero(values >= threshold)[0]) + 1
    best_depth = int(values.argmax()) + 1
    top_k = len(values) - depth
    if top_k == 0:
        reason = (f"the score still improves up to the top group ({groups[-1]}), so the source's top layer is "
                  "already the best frozen feature: train only a head (feature extraction)")
    else:
        where = (f"the score peaks at {groups[depth - 1]}" if depth == best_depth else
                 f"the score comes within {tolerance:.0%} of its range of the best ({groups[best_depth - 1]}) "
                 f"already at {groups[depth - 1]}")
        reason = (f"{where}; the {top_k} group(s) above it add little for this task as they are, so they are "
                  f"retrained and the rest stays frozen: top_k={top_k}")
    return FreezeAdvice(top_k=top_k, strategy="top_k" if top_k else "feature_extraction", depth=depth,
                        groups=groups, curve=values.tolist(), best_depth=best_depth, tolerance=tolerance,
                        reason=reason)
