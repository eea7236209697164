"""Standard datasets by name, your own files, and helpers for reproducible reports.

One explicit table, ``DATASETS``, says what each name is, where its hub copy lives and which local
layout it reads. ``load_dataset(name)`` reads a local copy when a data folder is given
(``data_dir=`` or ``NLPTL_DATA_DIR``) and the hub otherwise; either way the columns are the same:
``text`` (``text_pair``) + ``label`` (a ``ClassLabel`` keeping the names) for classification, and
SQuAD's ``id``/``title``/``context``/``question``/``answers`` for extractive QA.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import datasets

from . import conll, local
from .checks import check_training_labels, check_training_texts, read_text_file
from .files import SUPPORTED_EXTENSIONS, classification_dataset, load_files, read_columns
from .hub import HUB_MAPPERS, DatasetUnavailableError, load_from_hub
from .local import LAYOUTS, LocalCopyMissing, read_blitzer_reviews
from .squad import SQUAD_FEATURES, read_squad_json, split_by_article

__all__ = [
    "DATASETS", "DatasetSpec", "DatasetUnavailableError", "LocalCopyMissing", "load_dataset", "list_datasets",
    "load_files", "read_columns", "classification_dataset", "read_squad_json", "read_blitzer_reviews",
    "split_by_article", "dataset_fingerprint", "SQUAD_FEATURES", "SUPPORTED_EXTENSIONS", "DATA_DIR_ENV",
    "check_training_labels", "check_training_texts", "read_text_file",
]

DATA_DIR_ENV = "NLPTL_DATA_DIR"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str  # "text-classification" or "extractive-qa"
    description: str
    load_local: Callable[..., datasets.DatasetDict]  # (data_dir, **options)
    hub_id: str | None  # None: local copies only
    options: dict[str, str] = field(default_factory=dict)  # option name -> what it does


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("sst2", "text-classification", "GLUE SST-2 binary sentiment (Socher et al. 2013); "
                    "splits train/validation; labels negative, positive", local.load_sst2, "stanfordnlp/sst2"),
        DatasetSpec("ag_news", "text-classification", "AG News 4-class topic (Zhang et al. 2015); splits "
                    "train/test; labels World, Sports, Business, Sci/Tech", local.load_ag_news, "fancyzhx/ag_news"),
        DatasetSpec("imdb", "text-classification", "IMDB movie-review sentiment (Maas et al. 2011); splits "
                    "train/test; labels neg, pos", local.load_imdb, "stanfordnlp/imdb"),
        DatasetSpec("trec", "text-classification", "TREC question classification (Li & Roth 2002); splits "
                    "train/test; 6 coarse or 50 fine labels", local.load_trec, "CogComp/trec",
                    {"label": "'coarse' (default, 6 classes) or 'fine' (50 classes)"}),
        DatasetSpec("amazon_reviews", "text-classification", "Amazon multi-domain sentiment (Blitzer et al. "
                    "2007), one domain as split train; labels negative, positive; local copies only",
                    local.load_amazon_reviews, None, {"domain": "one of " + ", ".join(local.AMAZON_DOMAINS)}),
        DatasetSpec("conll2003", "token-classification", "CoNLL-2003 English named entities (Tjong Kim Sang & "
                    "De Meulder 2003); splits train/validation; IOB2 tags over PER, ORG, LOC, MISC; local copies only",
                    conll.load_conll2003, None),
        DatasetSpec("squad", "extractive-qa", "SQuAD v1.1 extractive QA (Rajpurkar et al. 2016); splits "
                    "train/validation (split a dev-only copy with split_by_article)", local.load_squad,
                    "rajpurkar/squad"),
    ]
}


def list_datasets() -> dict[str, str]:
    """The dataset names ``load_dataset`` knows and what each one is."""
    return {name: spec.description for name, spec in DATASETS.items()}


def _how_to_fix(name: str) -> str:
    return (f"Point at local files: pass data_dir= (CLI: --data-dir) or set {DATA_DIR_ENV} to a folder holding "
            f"{LAYOUTS[name]}; or load your own files with load_files() (CLI: --train-file / --eval-file).")


def load_dataset(
    name: str, split: str | None = None, data_dir: str | Path | None = None, **options: Any
) -> datasets.Dataset | datasets.DatasetDict:
    """Load a named dataset, locally from ``data_dir`` (or ``$NLPTL_DATA_DIR``) or else from the hub.

    A ``data_dir`` passed here must hold the dataset; one from the environment that lacks it falls
    back to the hub. ``split=None`` returns every split as a ``DatasetDict``.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)} "
                         f"(for your own files use load_files)")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        takes = ", ".join(f"{k}= ({v})" for k, v in spec.options.items()) or "no options"
        raise TypeError(f"{name!r} does not take option {unknown[0]}=; it takes {takes}")
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    loaded: datasets.DatasetDict | None = None
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            origin = "data_dir" if data_dir is not None else DATA_DIR_ENV
            raise FileNotFoundError(f"{origin}={str(root)!r} is not a folder. {_how_to_fix(name)}")
        try:
            loaded = spec.load_local(root, **options)
        except LocalCopyMissing as err:
            if data_dir is not None or spec.hub_id is None:
                raise LocalCopyMissing(f"{err}. {_how_to_fix(name)}") from None
    if loaded is None:
        if spec.hub_id is None:
            raise LocalCopyMissing(f"{name!r} has no hub copy and no data folder was given. {_how_to_fix(name)}")
        raw = load_from_hub(name, spec.hub_id, None, _how_to_fix(name))
        loaded = HUB_MAPPERS[name](raw, **options)
    if split is None:
        return loaded
    if split not in loaded:
        raise ValueError(f"{name!r} has no split {split!r}; its splits are {list(loaded)}")
    return loaded[split]


def dataset_fingerprint(dataset: datasets.Dataset | datasets.DatasetDict) -> str:
    """A sha256 of the features and every row in order, so a report pins exactly the data it used."""
    digest = hashlib.sha256()
    if isinstance(dataset, datasets.DatasetDict):
        for split in sorted(dataset):
            digest.update(f"{split}={dataset_fingerprint(dataset[split])}\n".encode())
        return digest.hexdigest()
    digest.update(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    for batch in dataset.with_format(None).iter(batch_size=1000):
        digest.update(json.dumps(batch, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()
