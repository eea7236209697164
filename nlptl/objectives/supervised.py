"""``Supervised``: the default objective, per-example head losses averaged with optional weights."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import Objective, TrainStep, weighted_mean


class Supervised(Objective):
    """Sum over the labelled sources in the step of each source's weighted mean loss.

    Each source is routed to its head by ``model.head_for(source)`` (a source named like a head
    uses that head, any other source the model's only head). A source without targets is an error
    here: unlabelled data needs an objective that uses it (domain adaptation, self-training).
    """

    def loss(self, model: nn.Module, batches: Mapping[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        total, logged = None, {}
        for source, batch in batches.items():
            out = model(batch, head=model.head_for(source))
            if "losses" not in out:
                raise ValueError(f"source {source!r} has no labels, so the Supervised objective has nothing to "
                                 "learn from it; give it a label column, or pass an objective that uses "
                                 "unlabelled data (e.g. nlptl.adaptation.DANN)")
            value = weighted_mean(out["losses"], batch)
            if len(batches) > 1:  # one source's loss is the step's loss: no second sync to log it
                logged[f"{source}/loss"] = float(value.detach())
            total = value if total is None else total + value
        return total, logged
