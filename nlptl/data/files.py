"""Read labelled text from CSV, TSV, JSON and JSON-lines files into ``datasets.Dataset`` objects.

Classification data always comes back with the columns ``text`` (plus ``text_pair`` for sentence
pairs) and ``label``, a ``datasets.ClassLabel`` that keeps the label *names*, so a model trained on
"World/Sports/..." reports those names and not bare integers.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import datasets

from .checks import (check_float_names, check_label_value, check_training_labels, check_training_texts,
                     read_text_file, warn_stripped_labels)
from .squad import is_squad_json, read_squad_json

__all__ = ["SUPPORTED_EXTENSIONS", "read_columns", "classification_dataset", "infer_label_names", "load_files"]

SUPPORTED_EXTENSIONS = {".csv": "comma-separated, header row", ".tsv": "tab-separated",
                        ".json": "a list of objects, or an object of equal-length column lists",
                        ".jsonl": "one JSON object per line"}


def read_columns(path: str | Path, header: bool = True) -> dict[str, list[Any]]:
    """Read a table-like file into ``{column: values}``; the format comes from the extension.

    ``header=False`` (CSV/TSV only) names the columns "0", "1", ... in file order.
    """
    return _read_table(Path(path), header)[0]


def _read_table(path: Path, header: bool) -> tuple[dict[str, list[Any]], list[str]]:
    """Columns plus where each row sits in the file ("line 7", "record 3"), for errors that point at it."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        known = ", ".join(f"{ext} ({what})" for ext, what in SUPPORTED_EXTENSIONS.items())
        raise ValueError(f"{path}: unsupported extension {path.suffix or '(none)'!r}; use one of {known}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = read_text_file(path)
    if suffix == ".json":
        columns = _columns_from_records(_parse_json(path, text), path)
        return columns, [f"record {i + 1}" for i in range(_num_rows(columns))]
    if suffix == ".jsonl":
        records, lines = _parse_jsonl(path, text)
        return _columns_from_records(records, path), [f"line {n} (data row {i + 1})" for i, n in enumerate(lines)]
    return _parse_table(path, text, delimiter="\t" if suffix == ".tsv" else ",", header=header)


def _num_rows(columns: dict[str, list[Any]]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = ("it holds several JSON values; one object per line belongs in a .jsonl file"
                if err.msg == "Extra data" else
                "if it is tab- or comma-separated text, give it a .tsv or .csv extension")
        raise ValueError(f"{path}: the .json extension says JSON, but line {err.lineno} column {err.colno} "
                         f"is not ({err.msg}); {hint}") from None


def _parse_jsonl(path: Path, text: str) -> tuple[list[Any], list[int]]:
    records, lines = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {lineno} is not a JSON object ({err.msg}); a .jsonl file holds "
                             f"one JSON object per line (a single JSON document belongs in a .json file)") from None
        lines.append(lineno)
    return records, lines


def _columns_from_records(data: Any, path: Path) -> dict[str, list[Any]]:
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {name: len(values) for name, values in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{path}: column lists differ in length: {lengths}")
        return dict(data)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a list of objects such as [{{\"text\": ..., \"label\": ...}}] "
                         f"or an object of column lists, got {type(data).__name__}")
    names: dict[str, None] = {}
    for record in data:
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in data] for name in names}


def _parse_table(path: Path, text: str, delimiter: str, header: bool) -> tuple[dict[str, list[str]], list[str]]:
    if _looks_like_json(text):
        raise ValueError(f"{path}: the {path.suffix} extension says delimited text, but the first line is a "
                         f"JSON value; give it a .json or .jsonl extension")
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one long document may exceed 128 KiB
    if delimiter == ",":
        numbered, names, bad = _split_rows(path, text, delimiter, csv.QUOTE_MINIMAL, header)
        if bad:
            raise ValueError(f"{path}: {bad}; check the delimiter or quoting of that line")
    else:
        # TSVs come two ways: GLUE and most research data carry literal quote characters (read unquoted),
        # while Python's csv module and pandas quote fields holding tabs, quotes or newlines. Unquoted
        # first, so GLUE files keep their quotes; quoted when only that reading gives every row its fields.
        numbered, names, bad = _split_rows(path, text, delimiter, csv.QUOTE_NONE, header)
        if bad:
            try:
                quoted = _split_rows(path, text, delimiter, csv.QUOTE_MINIMAL, header)
            except (csv.Error, ValueError) as error:
                quoted = (None, None, str(error))
            if quoted[2]:
                raise ValueError(f"{path}: read unquoted (as GLUE-style TSVs are), {bad}; read with quoted fields "
                                 f"(as Python's csv module and pandas write them), {quoted[2]}; check the delimiter "
                                 "or quoting of those lines")
            numbered, names, _ = quoted
    other, sample = ("," if delimiter == "\t" else "\t"), (names[0] if header else numbered[0][1][0])
    if len(names) == 1 and other in sample:
        raise ValueError(f"{path}: only one column was found but the first row contains {other!r}; "
                         f"the extension must match the delimiter (.tsv = tab-separated, .csv = comma-separated)")
    rows = [row for _, row in numbered]
    places = [f"line {n} (data row {i + 1})" for i, (n, _) in enumerate(numbered)]
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}, places


def _split_rows(path: Path, text: str, delimiter: str, quoting: int, header: bool):
    """(numbered rows, column names, None) or, when a row's field count is off, a message naming its line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    numbered = [(reader.line_num, row) for row in reader if row]  # blank lines are skipped
    if not numbered:
        raise ValueError(f"{path}: the file holds no rows")
    names = numbered[0][1] if header else [str(i) for i in range(len(numbered[0][1]))]
    if header:
        numbered = numbered[1:]
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise ValueError(f"{path}: the header names column {name!r} twice (columns {seen[name] + 1} and "
                                 f"{i + 1}); rename one so every column name is unique")
            seen[name] = i
    for lineno, row in numbered:
        if len(row) != len(names):
            return numbered, names, f"line {lineno} has {len(row)} fields, expected {len(names)} (columns {names})"
    return numbered, names, None


def _looks_like_json(text: str) -> bool:
    first_line = text.lstrip().split("\n", 1)[0]
    if first_line[:1] not in ("[", "{"):
        return False
    try:
        return isinstance(json.loads(first_line), (dict, list))
    except json.JSONDecodeError:
        return first_line in ("[", "{")  # a pretty-printed JSON document


def infer_label_names(values: Sequence[Any]) -> list[str]:
    """Sorted distinct label values as names (numeric order when every label is an integer)."""
    distinct = {str(v).strip() for v in values if v is not None and str(v).strip()}
    if all(_as_int(v) is not None for v in distinct):
        return sorted(distinct, key=lambda v: int(v))
    return sorted(distinct)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _label_ids(values: Sequence[Any], names: Sequence[str], source: str, column: str,
               rows: Sequence[str] | None = None) -> list[int]:
    """Map label values to ids: an exact name wins, else an integer is taken as the id itself."""
    index = {str(name).strip(): i for i, name in enumerate(names)}
    ids = []
    for row, value in enumerate(values):
        where = f"{source}: {rows[row] if rows else f'data row {row + 1}'}"
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"{where} has no label in column {column!r}; fill it in or drop the row")
        check_label_value(value, where, column)
        label_id = index.get(str(value).strip())
        if label_id is None and not all(_as_int(n) is not None for n in names):
            as_int = _as_int(value)  # names are words and the file holds ids (SST-2: 0/1)
            label_id = as_int if as_int is not None and 0 <= as_int < len(names) else None
        if label_id is None:
            raise ValueError(f"{where} has label {value!r}, which is not one of the known "
                             f"labels {list(names)} (those of the training data); fix the file, or pass "
                             f"label_names listing every label")
        ids.append(label_id)
    return ids


def _require_columns(columns: dict[str, list[Any]], wanted: Sequence[str | None], source: str) -> None:
    missing = [c for c in wanted if c is not None and c not in columns]
    if missing:
        present = list(columns)
        hint = (" (a single column: is the delimiter right for the extension?)" if len(present) == 1 else "")
        raise ValueError(f"{source}: column {missing[0]!r} not found; the columns present are {present}{hint}. "
                         "Pick them with text_column=/text_pair_column=/label_column= "
                         "(CLI: --text-column/--text-pair-column/--label-column)")


def classification_dataset(
    columns: dict[str, list[Any]],
    *,
    text_column: str,
    label_column: str | None,
    label_names: Sequence[str] | None,
    text_pair_column: str | None = None,
    source: str = "data",
    rows: Sequence[str] | None = None,
) -> datasets.Dataset:
    """Columns -> a Dataset with ``text`` (``text_pair``) and a ``ClassLabel`` ``label`` named by ``label_names``.

    ``rows`` says where each row sits in its file ("line 7"), so errors can point at it.
    """
    _require_columns(columns, [text_column, text_pair_column, label_column], source)
    data: dict[str, list[Any]] = {"text": _texts(columns[text_column], text_column, source, rows)}
    features = {"text": datasets.Value("string")}
    if text_pair_column is not None:
        data["text_pair"] = _texts(columns[text_pair_column], text_pair_column, source, rows)
        features["text_pair"] = datasets.Value("string")
    if label_column is not None:
        values = columns[label_column]
        if label_names is None:
            label_names = infer_label_names(values)
            check_float_names(label_names, label_column, source)
        names = [str(n).strip() for n in label_names]
        data["label"] = _label_ids(values, names, source, label_column, rows)
        warn_stripped_labels(values, label_column, source)
        features["label"] = datasets.ClassLabel(names=names)
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def _texts(values: list[Any], column: str, source: str, rows: Sequence[str] | None = None) -> list[str]:
    for row, value in enumerate(values):
        where = rows[row] if rows else f"data row {row + 1}"
        if value is None:
            raise ValueError(f"{source}: {where} has no value in column {column!r}")
        if not isinstance(value, str):
            raise ValueError(f"{source}: {where} has a {type(value).__name__} ({value!r:.40}) in text column "
                             f"{column!r}; texts must be strings: quote it in the file, or pick the text column "
                             "with text_column= (CLI: --text-column)")
    return list(values)


def load_files(
    train_file: str | Path | None = None,
    eval_file: str | Path | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
    label_names: Sequence[str] | None = None,
    header: bool = True,
) -> datasets.DatasetDict:
    """Load your own files as splits "train" and "validation".

    Label names come from ``label_names`` or else from the training file (sorted); an evaluation
    label the training data never had is an error. ``label_column=None`` loads unlabelled text.
    ``header=False`` reads CSV/TSV files without a header row, naming their columns "0", "1", ...
    A .json file in SQuAD v1.1 layout loads as extractive QA (the column arguments are then unused).
    """
    files = {split: Path(f) for split, f in (("train", train_file), ("validation", eval_file)) if f is not None}
    if not files:
        raise ValueError("load_files needs train_file and/or eval_file (CLI: --train-file / --eval-file)")
    from .conll import CONLL_EXTENSIONS, is_tagged_jsonl, load_tagged_files

    if all(p.suffix.lower() in CONLL_EXTENSIONS or is_tagged_jsonl(p) for p in files.values()):
        return load_tagged_files(files)  # token classification: words and their tags
    splits: dict[str, datasets.Dataset] = {}
    for split, path in files.items():
        if path.suffix.lower() == ".json" and path.is_file() and is_squad_json(path):
            splits[split] = read_squad_json(path)
            continue
        columns, rows = _read_table(path, header)
        for row, value in enumerate(columns.get(label_column) or []):  # before names are inferred from them
            check_label_value(value, f"{path}: {rows[row]}", label_column)
        if label_names is None and label_column is not None and label_column in columns:
            label_names = infer_label_names(columns[label_column])  # the first file given fixes the names
            check_float_names(label_names, label_column, str(path))
        splits[split] = classification_dataset(columns, text_column=text_column, text_pair_column=text_pair_column,
                                               label_column=label_column, label_names=label_names, source=str(path),
                                               rows=rows)
        if split == "train":
            check_training_texts(splits[split]["text"], str(path))
            if label_column is not None:
                check_training_labels(splits[split].features["label"].int2str(splits[split]["label"]), str(path))
    return datasets.DatasetDict(splits)
