"""Local copies of the named datasets: each loader reads one folder under ``data_dir``.

The layouts (paths relative to ``data_dir``) are listed in ``LAYOUTS`` and quoted in every
"not found" error, so a user sees exactly which files to put where.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

import datasets

from .files import classification_dataset, infer_label_names, read_columns
from .squad import read_squad_json

__all__ = ["LocalCopyMissing", "LAYOUTS", "read_blitzer_reviews", "load_sst2", "load_ag_news", "load_imdb",
           "load_trec", "load_amazon_reviews", "load_squad", "SST2_LABELS", "AG_NEWS_LABELS", "IMDB_LABELS",
           "TREC_COARSE_LABELS", "AMAZON_LABELS", "AMAZON_DOMAINS"]

# Label names in the hub datasets' ClassLabel order, so local and hub copies give the same ids.
SST2_LABELS = ["negative", "positive"]
AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
IMDB_LABELS = ["neg", "pos"]
TREC_COARSE_LABELS = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
AMAZON_LABELS = ["negative", "positive"]
AMAZON_DOMAINS = ["books", "dvd", "electronics", "kitchen"]

LAYOUTS = {
    "sst2": "sst2/train.tsv, sst2/validation.tsv (header 'sentence<TAB>label', label 0/1 or negative/positive)",
    "ag_news": "ag_news/train_10k.tsv or ag_news/train.tsv, ag_news/test.tsv (no header: "
               "'text<TAB>label name', names World/Sports/Business/Sci/Tech)",
    "imdb": "imdb/train.tsv, imdb/test.tsv (header 'text<TAB>label', label neg/pos or 0/1)",
    "trec": "trec/train.tsv, trec/test.tsv (header 'text<TAB>label', label fine 'LOC:city' or coarse 'LOC')",
    "amazon_reviews": "amazon_multidomain/<domain>/positive.review and negative.review (Blitzer et al. "
                      "pseudo-XML), domain one of " + "/".join(AMAZON_DOMAINS),
    "squad": "squad/train-v1.1.json and/or squad/dev-v1.1.json, or squad_v1_subset/dev_subset.json (SQuAD v1.1 JSON)",
    "conll2003": "conll2003/train.txt and conll2003/dev.txt (and/or test.txt): 'token TAG' lines, IOB1 or IOB2",
}


class LocalCopyMissing(FileNotFoundError):
    """``data_dir`` has none of the files of a dataset's local layout."""


def _existing(root: Path, name: str, candidates: dict[str, Sequence[str]]) -> dict[str, Path]:
    """For each split, the first candidate file that exists; error when no split has one."""
    found = {}
    for split, paths in candidates.items():
        hit = next((root / p for p in paths if (root / p).is_file()), None)
        if hit is not None:
            found[split] = hit
    if not found:
        raise LocalCopyMissing(f"no local copy of {name!r} under {root}: expected {LAYOUTS[name]}")
    return found


def _tsv_classification(files: dict[str, Path], header: bool, text_column: str, label_column: str,
                        label_names: Sequence[str] | None, relabel: Any = None) -> datasets.DatasetDict:
    tables = {split: read_columns(path, header=header) for split, path in files.items()}
    if relabel is not None:
        for split, table in tables.items():
            if label_column in table:
                table[label_column] = [relabel(v, files[split]) for v in table[label_column]]
    if label_names is None:  # names from the training split (or the first split there is)
        first = tables.get("train", next(iter(tables.values())))
        label_names = infer_label_names(first.get(label_column, []))
    return datasets.DatasetDict({
        split: classification_dataset(table, text_column=text_column, label_column=label_column,
                                      label_names=label_names, source=str(files[split]))
        for split, table in tables.items()
    })


def load_sst2(root: Path) -> datasets.DatasetDict:
    """GLUE SST-2: "train" and "validation" (the GLUE dev set papers report)."""
    files = _existing(root, "sst2", {"train": ["sst2/train.tsv"],
                                     "validation": ["sst2/validation.tsv", "sst2/dev.tsv"]})
    return _tsv_classification(files, True, "sentence", "label", SST2_LABELS)


def load_ag_news(root: Path) -> datasets.DatasetDict:
    """AG News: "train" (the 10k sample, or the full train.tsv) and "test"."""
    files = _existing(root, "ag_news", {"train": ["ag_news/train_10k.tsv", "ag_news/train.tsv"],
                                        "test": ["ag_news/test.tsv"]})
    return _tsv_classification(files, False, "0", "1", AG_NEWS_LABELS)


def load_imdb(root: Path) -> datasets.DatasetDict:
    """IMDB movie reviews: "train" and "test"."""
    files = _existing(root, "imdb", {"train": ["imdb/train.tsv"], "test": ["imdb/test.tsv"]})
    return _tsv_classification(files, True, "text", "label", IMDB_LABELS)


def load_trec(root: Path, label: str = "coarse") -> datasets.DatasetDict:
    """TREC question types: "train" and "test"; ``label`` is "coarse" (6 classes) or "fine" (50)."""
    if label not in ("coarse", "fine"):
        raise ValueError(f"trec: label must be 'coarse' or 'fine', got {label!r}")
    files = _existing(root, "trec", {"train": ["trec/train.tsv"], "test": ["trec/test.tsv"]})

    def relabel(value: str, path: Path) -> str:
        if label == "coarse":
            return value.split(":", 1)[0]
        if ":" not in value:
            raise ValueError(f"{path}: label {value!r} is coarse; label='fine' needs labels like 'LOC:city'")
        return value

    return _tsv_classification(files, True, "text", "label", TREC_COARSE_LABELS if label == "coarse" else None,
                               relabel)


_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)


def read_blitzer_reviews(path: str | Path, field: str = "review_text") -> list[str]:
    """Texts of a Blitzer et al. ``.review`` file, parsed block by block (the files are not valid XML)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # some redistributions of the 2007 files are Latin-1
    pattern = re.compile(rf"<{field}>(.*?)</{field}>", re.S)
    texts = []
    for i, block in enumerate(_REVIEW.findall(text)):
        match = pattern.search(block)
        if match is None:
            raise ValueError(f"{path}: review block {i + 1} has no <{field}> field")
        texts.append(html.unescape(match.group(1).strip()))  # &quot; -> ", a bare & stays as it is
    if not texts:
        raise ValueError(f"{path}: no <review>...</review> blocks found; expected Blitzer et al. .review files")
    return texts


def load_amazon_reviews(root: Path, domain: str | None = None) -> datasets.DatasetDict:
    """One domain of the Blitzer multi-domain reviews as a single "train" split (negative rows first)."""
    if domain not in AMAZON_DOMAINS:
        raise ValueError(f"amazon_reviews needs domain= one of {AMAZON_DOMAINS}, got {domain!r}")
    folder = root / "amazon_multidomain" / domain
    files = {name: folder / f"{name}.review" for name in AMAZON_LABELS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise LocalCopyMissing(f"no local copy of 'amazon_reviews' ({domain}): missing {missing}; "
                               f"expected {LAYOUTS['amazon_reviews']}")
    texts, labels = [], []
    for label_id, name in enumerate(AMAZON_LABELS):
        reviews = read_blitzer_reviews(files[name])
        texts += reviews
        labels += [label_id] * len(reviews)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=AMAZON_LABELS)})
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts, "label": labels},
                                                                     features=features)})


def load_squad(root: Path) -> datasets.DatasetDict:
    """SQuAD v1.1: the official files under squad/, else the dev subset as "validation"."""
    files = _existing(root, "squad", {"train": ["squad/train-v1.1.json"],
                                      "validation": ["squad/dev-v1.1.json", "squad_v1_subset/dev_subset.json"]})
    return datasets.DatasetDict({split: read_squad_json(path) for split, path in files.items()})
