"""``sample_shots``: k labelled examples per class, drawn with a seed, identical for every system compared."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..heads.data import as_dataset


def sample_shots(dataset: Any, k: int, seed: int, label_column: str = "label"):
    """A ``datasets.Dataset`` of exactly ``k`` rows per class, in the original row order.

    The draw depends only on (the label column, k, seed): for each class, in sorted order of its
    label value, ``k`` row positions are chosen without replacement by ``numpy.random.default_rng(seed)``.
    Every system in a comparison that calls this with the same arguments trains on the same rows.
    A class with fewer than ``k`` rows (including a ``ClassLabel`` name with no rows) is an error.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r}: the number of examples per class must be an int >= 1")
    dataset = as_dataset(dataset, "dataset")
    if label_column not in dataset.column_names:
        raise ValueError(f"label_column={label_column!r} is not a column; the data has {dataset.column_names}")
    labels = np.asarray(dataset[label_column])
    if labels.ndim != 1:
        raise ValueError(f"column {label_column!r} holds multi-label values; sample_shots needs one label a row")
    feature = dataset.features.get(label_column)
    classes = list(range(len(feature.names))) if hasattr(feature, "names") else sorted(set(labels.tolist()))
    rng = np.random.default_rng(seed)
    chosen = []
    for value in classes:
        rows = np.flatnonzero(labels == value)
        if len(rows) < k:
            name = feature.names[value] if hasattr(feature, "names") else value
            raise ValueError(f"class {name!r} has {len(rows)} row(s) in column {label_column!r}, fewer than "
                             f"k={k}; lower k or add examples of that class")
        chosen.append(rng.choice(rows, size=k, replace=False))
    return dataset.select(np.sort(np.concatenate(chosen)).tolist())
