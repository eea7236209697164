"""Small input checks shared by the heads: any table becomes a ``datasets.Dataset``."""
from __future__ import annotations

from typing import Any


def as_dataset(data: Any, name: str):
    """Accept a ``datasets.Dataset`` or anything ``Dataset.from_*`` takes (dict of lists, list of dicts, pandas)."""
    import datasets

    if isinstance(data, datasets.Dataset):
        dataset = data
    elif isinstance(data, dict):
        dataset = datasets.Dataset.from_dict(data)
    elif isinstance(data, list):
        dataset = datasets.Dataset.from_list(data)
    elif type(data).__name__ == "DataFrame":
        dataset = datasets.Dataset.from_pandas(data, preserve_index=False)
    else:
        raise TypeError(
            f"{name} is a {type(data).__name__}; pass a datasets.Dataset, a dict of lists, a list of dicts "
            "or a pandas DataFrame"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty: it needs at least one row")
    return dataset


def require_columns(dataset, columns: dict[str, str]) -> None:
    """``columns`` maps each needed column to the option that names it, for the error message."""
    missing = [f"{column!r} (set {option}=)" for column, option in columns.items()
               if column not in dataset.column_names]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}; the data has columns {dataset.column_names}")
