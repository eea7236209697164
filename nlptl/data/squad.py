"""SQuAD v1.1 JSON -> a flat ``datasets.Dataset``, and an article-level train/eval split.

The columns match the hub's ``rajpurkar/squad``: ``id``, ``title``, ``context``, ``question`` and
``answers`` = ``{"text": [...], "answer_start": [...]}``. Extra fields (``evidences``...) are dropped.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import datasets

__all__ = ["SQUAD_FEATURES", "is_squad_json", "read_squad_json", "squad_dataset", "split_by_article"]

SQUAD_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32"))},
})


def is_squad_json(path: str | Path) -> bool:
    """True when a .json file has SQuAD's ``{"data": [{"title", "paragraphs"}]}`` layout."""
    from .checks import read_text_file

    try:
        data = json.loads(read_text_file(path))
    except (json.JSONDecodeError, ValueError):
        return False
    articles = data.get("data") if isinstance(data, dict) else None
    return isinstance(articles, list) and bool(articles) and isinstance(articles[0], dict) \
        and "paragraphs" in articles[0]


def read_squad_json(path: str | Path) -> datasets.Dataset:
    """Read a SQuAD v1.1 file (``data[].paragraphs[].qas[]``) into one row per question."""
    from .checks import read_text_file

    path = Path(path)
    try:
        data = json.loads(read_text_file(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); expected SQuAD v1.1 JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: expected SQuAD v1.1 JSON, an object with a 'data' list of articles; "
                         f"found {type(data).__name__} with keys {list(data)[:5] if isinstance(data, dict) else '-'}")
    return squad_dataset(data["data"], source=str(path))


def squad_dataset(articles: list[dict[str, Any]], source: str = "data") -> datasets.Dataset:
    """SQuAD articles (the ``data`` list) -> a Dataset with SQuAD columns."""
    rows: dict[str, list[Any]] = {name: [] for name in SQUAD_FEATURES}
    for a, article in enumerate(articles):
        title = article.get("title", f"article_{a}")
        for p, paragraph in enumerate(_field(article, "paragraphs", f"{source}: data[{a}]")):
            where = f"{source}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", where)
            for q, qa in enumerate(_field(paragraph, "qas", where)):
                answers = _field(qa, "answers", f"{where}.qas[{q}]")
                rows["id"].append(str(_field(qa, "id", f"{where}.qas[{q}]")))
                rows["title"].append(title)
                rows["context"].append(context)
                rows["question"].append(_field(qa, "question", f"{where}.qas[{q}]"))
                rows["answers"].append({"text": [ans["text"] for ans in answers],
                                        "answer_start": [int(ans["answer_start"]) for ans in answers]})
    if len(set(rows["id"])) != len(rows["id"]):
        raise ValueError(f"{source}: question ids are not unique; SQuAD metrics match predictions by id")
    return datasets.Dataset.from_dict(rows, features=SQUAD_FEATURES)


def _field(obj: Any, name: str, where: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise ValueError(f"{where}: missing field {name!r} (SQuAD v1.1 layout: data[].paragraphs[].qas[] "
                         f"with id, question and answers[{{text, answer_start}}])")
    return obj[name]


def split_by_article(
    dataset: datasets.Dataset, eval_fraction: float = 0.2, seed: int = 0, column: str = "title"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split questions into (train, evaluation) by whole articles, so no context is in both.

    ``eval_fraction`` is the share of *articles* (at least one) held out; the same seed always
    picks the same articles, whatever the row order.
    """
    if isinstance(dataset, datasets.DatasetDict):
        raise TypeError(f"split_by_article takes one split, got a DatasetDict with {list(dataset)}; "
                        f"pass e.g. dataset['validation']")
    if column not in dataset.column_names:
        raise ValueError(f"column {column!r} not found; the columns present are {dataset.column_names}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    values = list(dataset[column])
    groups = sorted(set(values))
    if len(groups) < 2:
        raise ValueError(f"split_by_article needs at least 2 distinct {column!r} values, found {len(groups)}")
    random.Random(seed).shuffle(groups)
    n_eval = min(len(groups) - 1, max(1, round(eval_fraction * len(groups))))
    held_out = set(groups[:n_eval])
    eval_rows = [i for i, value in enumerate(values) if value in held_out]
    train_rows = [i for i, value in enumerate(values) if value not in held_out]
    return dataset.select(train_rows), dataset.select(eval_rows)
