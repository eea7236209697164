"""Benchmark splits for the few- and zero-shot recipes, by the protocol of ``shared/data/README.md``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .shots import sample_shots

# name -> (nlptl.data name, options, zero-shot template, label descriptions fixed before any run)
BENCHMARKS: dict[str, tuple[str, dict[str, Any], str, dict[str, list[str]]]] = {
    "sst2": ("sst2", {}, "This movie review is {}.",
             {"negative": ["negative", "bad", "terrible"], "positive": ["positive", "good", "great"]}),
    "ag_news": ("ag_news", {}, "This news article is about {}.",
                {"World": ["world news", "politics"], "Sports": ["sports"],
                 "Business": ["business", "the economy"], "Sci/Tech": ["science", "technology"]}),
    "amazon_books": ("amazon_reviews", {"domain": "books"}, "This book review is {}.",
                     {"negative": ["negative", "bad", "terrible"], "positive": ["positive", "good", "great"]}),
}


@dataclass
class Benchmark:
    name: str
    pool: Any  # the labelled rows shots are drawn from (datasets.Dataset, columns text/label)
    evaluation: Any  # the scored rows
    labels: list[str]
    template: str
    descriptions: dict[str, list[str]]
    note: str  # which rows are scored, for reports


def load_benchmark(name: str, data_dir: str, eval_rows: int | None = None, seed: int = 0) -> Benchmark:
    """Training pool and evaluation split; ``eval_rows`` scores a fixed seeded subset instead of all.

    Amazon books has one split (2,000 reviews): shots come from it and the rows never drawn as a
    shot by any of seeds 0-9 at up to 64 per class are scored, so every seed scores the same rows.
    """
    from ..data import load_dataset

    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    dataset, options, template, descriptions = BENCHMARKS[name]
    splits = load_dataset(dataset, data_dir=data_dir, **options)
    if "train" in splits and len(splits) > 1:
        pool = splits["train"]
        evaluation = splits["validation" if "validation" in splits else "test"]
        note = f"the full {'validation' if 'validation' in splits else 'test'} split"
    else:
        pool = splits["train"]
        drawn = set()
        for s in range(10):
            drawn.update(
                np.asarray(sample_shots(pool.add_column("_row", list(range(len(pool)))), 64, s)["_row"]).tolist())
        held = [i for i in range(len(pool)) if i not in drawn]
        evaluation = pool.select(held)
        note = f"the {len(held)} reviews never drawn as shots (seeds 0-9, k <= 64)"
    if eval_rows is not None and eval_rows < len(evaluation):
        evaluation = evaluation.shuffle(seed=seed).select(range(eval_rows))
        note = f"a fixed seeded (seed {seed}) {eval_rows}-row subset of {note}"
    labels = list(pool.features["label"].names)
    return Benchmark(name, pool, evaluation, labels, template, descriptions, f"{len(evaluation)} rows: {note}")
