"""Checks that stop data which cannot train a model from training one quietly.

Why each exists: a training set with one class or only empty texts "trains" to a constant and
reports a perfect loss; a float or boolean label read as a class id turns ``1.0`` into a class
named "1.0"; labels that differ only by surrounding spaces split one class in two; a text file
saved as UTF-16, or with a UTF-8 byte-order mark, breaks the first column's name. The file
readers call these, and the training engine calls ``check_training_labels`` /
``check_training_texts`` for in-memory data.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["read_text_file", "check_training_labels", "check_training_texts", "check_label_value",
           "warn_stripped_labels"]


def read_text_file(path: str | Path) -> str:
    """A text file as str: UTF-8 (a byte-order mark is dropped) or UTF-16 with its byte-order mark."""
    path = Path(path)
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: starts as UTF-16 text but byte {err.start} is not UTF-16; re-save the file "
                             "as UTF-8") from None
    if b"\0" in raw[:4096]:  # valid UTF-8, but no text file holds NUL bytes: UTF-16 without its mark
        raise ValueError(f"{path}: looks like UTF-16 text without a byte-order mark (or a binary file): it holds NUL "
                         "bytes; re-save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); re-save the file as UTF-8") from None


def check_label_value(value: Any, where: str, column: str) -> None:
    """A label must be a name (str) or an integer id: a float, bool, list or object is refused, naming the row."""
    if isinstance(value, bool) or isinstance(value, float) or isinstance(value, (list, dict)):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            fix = f"write it as the integer {int(value)}"
        else:
            fix = "write integer class ids 0..K-1 or label names as strings"
        raise ValueError(f"{where}: label {value!r} in column {column!r} is a {type(value).__name__}, which cannot "
                         f"be a class id; {fix}")


def check_float_names(names: Sequence[str], column: str, source: str) -> None:
    """Labels inferred from a file that read as floats ('0.0', '1.0') are class ids written wrongly, not names."""
    def as_float(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    floats = [as_float(n) for n in names]
    if names and all(f is not None for f in floats) and any("." in n or "e" in n.lower() for n in names):
        shown = ", ".join(map(repr, names[:4]))
        raise ValueError(f"{source}: the labels in column {column!r} read as floats ({shown}); "
                         "class ids must be integers (write 0, 1, ... instead of 0.0, 1.0); if they really are "
                         "names, pass label_names=[...] (CLI: --label-names) listing them")


def warn_stripped_labels(values: Sequence[Any], column: str, source: str) -> None:
    """Say so when label values carry surrounding spaces: they are stripped, so 'pos ' and 'pos' are one class."""
    padded = [v for v in values if isinstance(v, str) and v != v.strip()]
    if padded:
        example = padded[0]
        warnings.warn(f"{source}: {len(padded)} label value(s) in column {column!r} have surrounding spaces (e.g. "
                      f"{example!r}); they were stripped, so {example!r} counts as {example.strip()!r}",
                      UserWarning, stacklevel=3)


def check_training_labels(labels: Sequence[Any], name: str = "train_data") -> None:
    """A training set needs at least two classes; one class trains a constant predictor.

    ``labels`` are class ids or names, or lists of them for multi-label data (then at least two
    distinct labels must occur across the rows).
    """
    labels = list(labels)
    if not labels:
        raise ValueError(f"{name} has no rows with labels: pass at least two examples of two classes")
    rows = [row if isinstance(row, (list, tuple, set)) else [row] for row in labels]
    distinct = {str(label) for row in rows for label in row}
    if len(distinct) < 2:
        only = next(iter(distinct), None)
        what = f"only the class {only!r}" if only is not None else "no label at all"
        raise ValueError(f"{name} has {what} in its {len(labels)} row(s); a classifier needs examples of at least "
                         "two classes: add rows of the other classes, or check the label column")


def check_training_texts(texts: Sequence[Any], name: str = "train_data") -> None:
    """A training set whose texts are all empty (or whitespace) gives the model nothing to learn from."""
    texts = list(texts)
    if texts and all(isinstance(t, str) and not t.strip() for t in texts):
        raise ValueError(f"every text in {name} is empty ({len(texts)} row(s)); check text_column= "
                         "(CLI: --text-column) names the column that holds the texts")
