"""Named datasets from the Hugging Face hub, mapped to nlptl's columns, failing fast when offline.

``datasets.load_dataset`` retries for half a minute when the hub cannot be reached; here an
offline flag or a 5-second reachability probe turns that into an immediate, explained error.
"""
from __future__ import annotations

from typing import Callable

import datasets

from ..hub import hub_failure, hub_switched_off

__all__ = ["DatasetUnavailableError", "datasets_switched_off", "load_from_hub", "HUB_MAPPERS"]

DATASET_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class DatasetUnavailableError(ConnectionError):
    """A named dataset has no local copy and the hub is offline or unreachable."""


def datasets_switched_off() -> bool:
    """True when the user switched the hub off (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``)."""
    return hub_switched_off(DATASET_FLAGS) or bool(datasets.config.HF_HUB_OFFLINE)


def load_from_hub(name: str, hub_id: str, hub_config: str | None, how_to_fix: str) -> datasets.DatasetDict:
    """``datasets.load_dataset(hub_id)``, or a DatasetUnavailableError that says how to go offline."""
    if datasets_switched_off():
        # Only datasets' own offline switch makes it read the cache without network calls; a flag
        # set after ``import datasets`` is not seen by it, so then there is nothing safe to try.
        reason = "the Hugging Face hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)"
        if not datasets.config.HF_HUB_OFFLINE:
            raise DatasetUnavailableError(f"cannot load {name!r}: {reason}. {how_to_fix}")
    else:
        from huggingface_hub import constants

        failure = hub_failure(constants.ENDPOINT)
        if failure is not None:
            raise DatasetUnavailableError(f"cannot load {name!r}: the Hugging Face hub ({constants.ENDPOINT}) could "
                                          f"not be reached ({failure}); this machine looks offline. {how_to_fix}")
        reason = "the Hugging Face hub could not be reached"
    try:
        return datasets.load_dataset(hub_id, hub_config)
    except ConnectionError as err:
        raise DatasetUnavailableError(f"cannot load {name!r} ({hub_id}): {reason} and no cached copy was found "
                                      f"({err}). {how_to_fix}") from None


# Hub schema -> nlptl columns. Each takes what ``datasets.load_dataset(hub_id)`` returned.

def sst2_from_hub(ds: datasets.DatasetDict) -> datasets.DatasetDict:
    """stanfordnlp/sst2: rename sentence -> text; drop "test", whose labels are hidden (-1)."""
    ds = datasets.DatasetDict({split: ds[split] for split in ("train", "validation")})
    return ds.remove_columns([c for c in ("idx",) if c in ds["train"].column_names]).rename_column("sentence", "text")


def ag_news_from_hub(ds: datasets.DatasetDict) -> datasets.DatasetDict:
    """fancyzhx/ag_news already has text and a named label."""
    return ds


def imdb_from_hub(ds: datasets.DatasetDict) -> datasets.DatasetDict:
    """stanfordnlp/imdb: keep "train" and "test"; "unsupervised" has no labels."""
    return datasets.DatasetDict({split: ds[split] for split in ("train", "test")})


def trec_from_hub(ds: datasets.DatasetDict, label: str = "coarse") -> datasets.DatasetDict:
    """CogComp/trec: the coarse (6) or fine (50) label column becomes "label"."""
    if label not in ("coarse", "fine"):
        raise ValueError(f"trec: label must be 'coarse' or 'fine', got {label!r}")
    drop = "fine_label" if label == "coarse" else "coarse_label"
    return ds.remove_columns(drop).rename_column(f"{label}_label", "label")


def squad_from_hub(ds: datasets.DatasetDict) -> datasets.DatasetDict:
    """rajpurkar/squad: keep the SQuAD columns only."""
    keep = ["id", "title", "context", "question", "answers"]
    return ds.select_columns(keep)


HUB_MAPPERS: dict[str, Callable[..., datasets.DatasetDict]] = {
    "sst2": sst2_from_hub, "ag_news": ag_news_from_hub, "imdb": imdb_from_hub, "trec": trec_from_hub,
    "squad": squad_from_hub,
}
