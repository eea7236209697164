"""``SourceTargetObjective``: the shape every feature-level adaptation loss shares.

One labelled source batch and one unlabelled target batch per step (``sampling = "all"``); the
task loss is the source's (weighted) head loss, and a subclass adds a term that pulls the two
batches' pooled features together (``alignment``). The target batch's labels, if it has any, are
never read: what the model may learn from the target domain is its text only.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from ..objectives import Objective, TrainStep, weighted_mean


class SourceTargetObjective(Objective):
    """Source task loss + ``trade_off`` * ``alignment(source features, target features)``."""

    sampling: ClassVar[str] = "all"
    uses_unlabelled: ClassVar[bool] = True

    def __init__(self, trade_off: float = 1.0, source: str = "source", target: str = "target") -> None:
        super().__init__()
        if not isinstance(trade_off, (int, float)) or not trade_off >= 0 or trade_off == float("inf"):
            raise ValueError(f"{type(self).__name__} trade_off={trade_off!r}: must be a finite number >= 0")
        self.trade_off, self.source, self.target = float(trade_off), source, target

    def alignment(self, source: torch.Tensor, target: torch.Tensor, step: TrainStep) -> tuple[torch.Tensor, dict]:
        """Discrepancy between pooled source (Bs, D) and target (Bt, D) features, plus values to log."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batches: Mapping[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        for name in (self.source, self.target):
            if name not in batches:
                raise ValueError(f"{type(self).__name__} needs training sources named {self.source!r} (labelled) and "
                                 f"{self.target!r} (unlabelled target text); this step has {sorted(batches)}. "
                                 f"Pass train_data={{{self.source!r}: labelled, {self.target!r}: target_texts}}")
        head = model.head_for(self.source)
        out_s = model(batches[self.source], head=head)
        if "losses" not in out_s:
            raise ValueError(f"source {self.source!r} has no labels: the task loss needs a label column")
        out_t = model(_without_labels(batches[self.target]), head=head)
        task = weighted_mean(out_s["losses"], batches[self.source])
        term, logged = self.alignment(out_s["features"], out_t["features"], step)  # (Bs, D), (Bt, D)
        total = task + self.trade_off * term
        return total, {"task": float(task.detach()), type(self).__name__.lower(): float(term.detach()), **logged}

    def config(self) -> dict[str, Any]:
        return {"trade_off": self.trade_off, "source": self.source, "target": self.target}


def _without_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("labels", "weight")}
