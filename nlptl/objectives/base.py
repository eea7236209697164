"""What a training objective is: the loss of one optimizer step, computed from named batches.

``nlptl.fit`` owns the loop (sources, accumulation, clipping, checkpoints, evaluation); an
objective owns the *loss*. A new transfer method is one ``Objective`` subclass in one file::

    class MyLoss(Objective):
        def loss(self, model, batches, step):
            out = model(batches["train"])            # head outputs: "losses" (B,), "logits", "features"
            return out["losses"].mean()              # or (tensor, {"name": float}) to log extra values

``batches`` maps source names to collated batches: one dataset gives ``{"train": batch}``; a dict
``{"source": labelled, "target": unlabelled}`` gives those names. Whether every source is in
every step (``sampling = "all"``, what domain adaptation needs) or one source per step (what
multi-task sampling does) is the objective's ``sampling`` unless ``TrainConfig.source_sampling``
says otherwise.

An objective is an ``nn.Module``: parameters it owns (a domain discriminator) are trained in their
own optimizer group, saved in checkpoints and restored on resume, exactly like the model's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class TrainStep:
    """Where training is when a loss is asked for (schedules such as DANN's warm-up read ``progress``)."""

    global_step: int  # optimizer steps done before this one
    total_steps: int  # optimizer steps in the whole run
    epoch: int  # 0-based

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.global_step / max(1, self.total_steps))


class Objective(nn.Module):
    """Base class: subclass it and implement ``loss``."""

    #: "all": every source contributes a batch to every step; "one": one source per step (sampled)
    sampling: ClassVar[str] = "one"
    #: True when sources without labels are welcome (domain adaptation, self-training, language modelling)
    uses_unlabelled: ClassVar[bool] = False
    #: True when the objective regularises weights itself (L2-SP): AdamW's decay is then off for them
    replaces_weight_decay: ClassVar[bool] = False
    #: learning rate of the objective's own parameters when not given (None: the head's)
    learning_rate: float | None = None

    def setup(self, model: nn.Module) -> None:
        """Called once by ``fit`` before the optimizer is built: create parameters, snapshot weights.

        Runs after ``fit`` seeds the run, so random initialisation here is reproducible.
        """

    def loss(self, model: nn.Module, batches: Mapping[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        """Scalar loss for this step, or ``(loss, {"name": float})`` with extra values to log."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batches, step)")

    def finish(self, model: nn.Module, sources: Mapping[str, tuple[str, list[dict[str, Any]]]]) -> bool:
        """Called once by ``fit`` after the last epoch (and after the best epoch's weights are back).

        ``sources`` maps each labelled source to ``(head name, prepared rows)``. Return True when
        this changed the model (SetFit-style head refitting does): ``fit`` then evaluates again and
        reports those metrics. The default does nothing.
        """
        return False

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings, recorded in the run's metrics and model training info."""
        return {}


def weighted_mean(losses: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean of per-example losses (B,), each times its "weight" when the batch has that column.

    ``mean(w * l)``: with importance weights normalised to mean 1 over the data this is the usual
    unbiased estimate of the reweighted risk; weight 0 removes an example from the gradient.
    """
    weights = batch.get("weight")
    if weights is None:
        return losses.mean()
    return (weights.to(losses.dtype) * losses).mean()  # weights: (B,)
