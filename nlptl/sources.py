"""Named training sources and the order their batches come in, reproducible down to the batch.

``fit`` trains on one dataset or on several named ones: a labelled source beside unlabelled
target text (domain adaptation), or several tasks (multi-task). Each source is a ``SourceStream``
whose batch ``j`` of pass ``p`` is a pure function of ``(seed, source, p, j)``, so a resumed run
needs only each stream's position to continue exactly where an unbroken one would be (no
iterator to fast-forward, no global RNG drawn). A ``StepPlan`` says which sources give a batch to
each optimizer step:

=============  =====================================================================
all            every source, every step (domain adaptation: source and target batches together)
proportional   one source per step, drawn with probability ~ its size
temperature    one source per step, probability ~ size ** (1 / T) (T > 1 favours small tasks)
round_robin    one source per step, in turn
=============  =====================================================================

Under several processes each gets its own ``batch_size`` rows of every global batch of
``batch_size * num_processes`` rows (as Accelerate's sharded loaders do); the last global batch of
a pass wraps around to the pass's start so every process has rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .encoders.base import ModelInput

if TYPE_CHECKING:
    from .cache import FeatureCache
    from .config import TrainConfig
    from .model import TransferModel
    from .objectives import Objective


@dataclass
class Source:
    """One named training dataset, prepared: its rows, the head it trains and how its rows batch."""

    name: str
    rows: list[dict[str, Any]]
    head: str
    labelled: bool
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
    lengths: list[int] | None = None  # input lengths, for length-grouped batches


@dataclass
class SourceStream:
    """Seeded batches of one source; ``position`` = (pass, next batch in that pass)."""

    size: int
    batch_size: int
    seed: int
    index: int  # the source's position among the sources: its own random stream
    lengths: Sequence[int] | None = None
    num_processes: int = 1
    process_index: int = 0
    position: list[int] = field(default_factory=lambda: [0, 0])
    _order: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(self.size / (self.batch_size * self.num_processes))

    def order(self, pass_index: int) -> np.ndarray:
        """The row order of one pass: a seeded shuffle, or transformers' length-grouped one."""
        if self._order is None or self._order[0] != pass_index:
            seed = int(np.random.SeedSequence([self.seed, self.index, pass_index]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
            if self.lengths is None:
                order = torch.randperm(self.size, generator=generator).numpy()
            else:
                from transformers.trainer_pt_utils import LengthGroupedSampler

                sampler = LengthGroupedSampler(self.batch_size * self.num_processes, lengths=list(self.lengths),
                                               generator=generator)
                order = np.fromiter(iter(sampler), dtype=np.int64, count=self.size)
            self._order = (pass_index, order)
        return self._order[1]

    def next_indices(self) -> list[int]:
        """This process's rows of the next batch; moves the position on (to the next pass at the end)."""
        pass_index, batch = self.position
        order = self.order(pass_index)
        global_size = self.batch_size * self.num_processes
        start = batch * global_size
        window = order[start : start + global_size]
        if self.num_processes > 1 and len(window) < global_size:  # every process needs rows
            window = np.concatenate([window, np.resize(order, global_size - len(window))])
        mine = window[self.process_index * self.batch_size : (self.process_index + 1) * self.batch_size]
        batch += 1
        self.position = [pass_index + 1, 0] if batch >= self.batches_per_pass else [pass_index, batch]
        return [int(i) for i in mine]


class StepPlan:
    """Which sources give a batch to each step of an epoch, and how many steps an epoch has."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], batches_per_pass: Sequence[int], mode: str,
                 seed: int, temperature: float = 2.0, epoch_source: str | None = None) -> None:
        self.names, self.mode, self.seed = list(names), mode, seed
        if epoch_source is not None and epoch_source != "total" and epoch_source not in self.names:
            raise ValueError(f"epoch_source={epoch_source!r} is not one of the sources {self.names} (or 'total')")
        if mode == "all":
            by = self.names[0] if epoch_source in (None, "total") else epoch_source
            self.steps_per_epoch = batches_per_pass[self.names.index(by)]
        elif epoch_source not in (None, "total"):
            self.steps_per_epoch = batches_per_pass[self.names.index(epoch_source)]
        else:
            self.steps_per_epoch = int(sum(batches_per_pass))
        sizes = np.asarray(sizes, dtype=np.float64)
        if mode == "temperature":
            sizes = sizes ** (1.0 / temperature)
        self.probabilities = sizes / sizes.sum()
        self._cached: tuple[int, np.ndarray] | None = None  # (epoch, that epoch's source choices)

    def sources_at(self, epoch: int, step: int) -> list[str]:
        """The sources of batch ``step`` (0-based within ``epoch``)."""
        if self.mode == "all" or len(self.names) == 1:
            return self.names
        if self.mode == "round_robin":
            return [self.names[(epoch * self.steps_per_epoch + step) % len(self.names)]]
        return [self.names[self._choices(epoch)[step]]]

    def _choices(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, 7, epoch])
            self._cached = (epoch, rng.choice(len(self.names), size=self.steps_per_epoch, p=self.probabilities))
        return self._cached[1]


# ----- preparing sources for fit -------------------------------------------------------------------


def named_sources(data: Any, argument: str, single: str | None) -> dict[Any, Any]:
    """``{name: dataset}``: a dict of datasets as given, one dataset under ``single``; None -> {}."""
    from .heads.data import as_dataset

    if data is None:
        return {}
    if isinstance(data, Mapping) and data and all(_is_table(v) for v in data.values()):
        for name in data:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{argument} keys name the data sources: got {name!r}; use non-empty strings")
        return {name: as_dataset(value, f"{argument}[{name!r}]") for name, value in data.items()}
    return {single: as_dataset(data, argument)}




def _is_table(value: Any) -> bool:
    """A dataset, a DataFrame, a dict of columns or a non-empty list of row dicts (not a column of values)."""
    if type(value).__name__ in ("Dataset", "DataFrame") or isinstance(value, Mapping):
        return True
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)




def prepare_source(model: "TransferModel", name: str, dataset: Any, head: str, cfg: "TrainConfig",
                   objective: "Objective") -> Source:
    """Rows of one named source for its head, with weights attached; unlabelled only where the objective wants it."""
    one = model.get_head(head)
    rows = one.prepare(model.encoder, dataset, train=True, **cfg.columns)
    labelled = _has_targets(rows)
    if not labelled and not objective.uses_unlabelled:
        # Most likely a misnamed label column: preparing it as evaluation data names the column and the option.
        one.prepare(model.encoder, dataset, train=False, **cfg.columns)
        raise ValueError(f"source {name!r} has no labels, and {type(objective).__name__} learns from labels only; "
                         "pass an objective that uses unlabelled data (e.g. nlptl.adaptation.DANN)")
    if cfg.weight_column is not None and labelled:
        _attach_weights(rows, dataset, cfg.weight_column, name)
    lengths = [len(r["input"]) if isinstance(r["input"], ModelInput) else 0 for r in rows]
    return Source(name, rows, head, labelled, collate_for(model, head), lengths)


def _has_targets(rows: list[dict]) -> bool:
    """Whether prepared rows carry training targets (an unlabelled source's rows hold only inputs)."""
    return any(key not in ("input", "row_index", "example_index", "example_id", "context", "weight")
               for key in rows[0])




def _attach_weights(rows: list[dict], dataset: Any, column: str, source: str) -> None:
    """Each row gets its example's weight from ``column``: finite, >= 0, not all zero."""
    if column not in dataset.column_names:
        raise ValueError(f"weight_column={column!r} is not a column of source {source!r}; "
                         f"it has {dataset.column_names}")
    values = dataset[column]
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"weight_column={column!r} of source {source!r} must hold numbers")
    weights = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise ValueError(f"weight_column={column!r} of source {source!r}: row {bad[0]} has weight "
                         f"{weights[bad[0]]!r}; weights must be finite and >= 0")
    if not weights.any():
        raise ValueError(f"weight_column={column!r} of source {source!r} is all zeros: nothing would train")
    for row in rows:
        row["weight"] = float(weights[row.get("example_index", row["row_index"])])




def collate_for(model: "TransferModel", head: str, cache: "FeatureCache | None" = None):
    """Rows -> a batch for ``head`` (from the feature cache when given), with "weight" when rows carry one."""
    one = model.get_head(head)

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = cache.collate(one, model.encoder, rows) if cache is not None else one.collate(model.encoder, rows)
        if "weight" in rows[0]:
            batch["weight"] = torch.tensor([r["weight"] for r in rows], dtype=torch.float32)
        return batch

    return collate


def next_batch(source: Source, stream: SourceStream, device) -> dict[str, torch.Tensor]:
    """The next batch of ``source`` on ``device``, moving its stream on."""
    rows = [source.rows[i] for i in stream.next_indices()]
    return {k: v.to(device) for k, v in source.collate(rows).items()}
