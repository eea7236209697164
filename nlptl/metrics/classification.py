"""Classification scores from a confusion matrix, in plain numpy.

Labels may be ints or strings (``ClassLabel`` names). Conventions follow scikit-learn's
``zero_division=0``: a class never predicted has precision 0, a class with no references has
recall 0, and F1 is 0 whenever precision + recall is 0. MCC is 0 when it is undefined (a
constant prediction or a single reference class).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["as_list", "confusion_matrix", "per_class_scores", "accuracy", "macro_f1", "matthews_corrcoef"]


def as_list(values: Any) -> list[Any]:
    """Lists, tuples, numpy arrays and CPU tensors -> a list of Python scalars."""
    if hasattr(values, "tolist"):
        return values.tolist()
    return [v.item() if hasattr(v, "item") else v for v in values]


def _label_order(predictions: list[Any], references: list[Any], labels: Sequence[Any] | None) -> list[Any]:
    if labels is not None:
        labels = as_list(labels)
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels has duplicates: {labels}")
        return labels
    seen = set(references) | set(predictions)
    try:
        return sorted(seen)
    except TypeError:
        raise ValueError(f"predictions and references mix label types ({sorted({type(v).__name__ for v in seen})}); "
                         f"use all ids or all names") from None


def confusion_matrix(
    predictions: Any, references: Any, labels: Sequence[Any] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """Counts with rows = reference label and columns = predicted label, plus that label order.

    ``labels=None`` uses every label seen in either list, sorted.
    """
    predictions, references = as_list(predictions), as_list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not references:
        raise ValueError("no predictions to score (empty lists)")
    order = _label_order(predictions, references, labels)
    index = {label: i for i, label in enumerate(order)}
    for name, values in (("references", references), ("predictions", predictions)):
        unknown = [v for v in values if v not in index]
        if unknown:
            raise ValueError(f"{name} hold label {unknown[0]!r}, which is not in labels {order}")
    matrix = np.zeros((len(order), len(order)), dtype=np.int64)  # (K, K)
    np.add.at(matrix, ([index[r] for r in references], [index[p] for p in predictions]), 1)
    return matrix, order


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (each (K,)) from a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)  # (K,)
    predicted = matrix.sum(axis=0)  # (K,) how often each class was predicted
    support = matrix.sum(axis=1)  # (K,) how often each class is the reference
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def accuracy(matrix: np.ndarray) -> float:
    """Share of predictions equal to their reference."""
    return float(np.trace(matrix) / matrix.sum())


def macro_f1(matrix: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over every class of the matrix."""
    return float(per_class_scores(matrix)["f1"].mean())


def matthews_corrcoef(matrix: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin's R_K, as scikit-learn computes it); 0 when undefined."""
    t = matrix.sum(axis=1).astype(np.float64)  # (K,) reference counts
    p = matrix.sum(axis=0).astype(np.float64)  # (K,) prediction counts
    c, s = float(np.trace(matrix)), float(matrix.sum())
    cov_tp = c * s - t @ p
    cov_pp = s * s - p @ p
    cov_tt = s * s - t @ t
    denominator = np.sqrt(cov_tt * cov_pp)
    return float(cov_tp / denominator) if denominator > 0 else 0.0
