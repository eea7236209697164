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
from typing import Any, Callable, Sequence

import numpy as np
import torch


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

    def sources_at(self, epoch: int, step: int) -> list[str]:
        """The sources of batch ``step`` (0-based within ``epoch``)."""
        if self.mode == "all" or len(self.names) == 1:
            return self.names
        if self.mode == "round_robin":
            return [self.names[(epoch * self.steps_per_epoch + step) % len(self.names)]]
        return [self.names[self._choices(epoch)[step]]]

    def _choices(self, epoch: int) -> np.ndarray:
        if getattr(self, "_cached", (None,))[0] != epoch:
            rng = np.random.default_rng([self.seed, 7, epoch])
            self._cached = (epoch, rng.choice(len(self.names), size=self.steps_per_epoch, p=self.probabilities))
        return self._cached[1]
