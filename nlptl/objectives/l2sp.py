"""``L2SP``: soft parameter sharing, a pull toward the pretrained weights (Li et al., ICML 2018).

    loss = task loss + alpha/2 * ||w_encoder - w_pretrained||^2 + beta/2 * ||w_head||^2

Plain weight decay pulls fine-tuned weights toward zero, which forgets what pretraining put
there; L2-SP pulls the encoder toward its *starting point* instead, and only the new head toward
zero. AdamW's own decay is turned off for the pulled weights (``replaces_weight_decay``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import TrainStep
from .supervised import Supervised


class L2SP(Supervised):
    replaces_weight_decay = True

    def __init__(self, alpha: float = 0.01, beta: float = 0.01) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"L2SP {name}={value!r}: must be a finite number >= 0")
        self.alpha, self.beta = float(alpha), float(beta)
        self._names: list[str] = []

    def setup(self, model: nn.Module) -> None:
        """Snapshot the encoder's trainable weights: the point L2-SP pulls back toward.

        Kept as buffers of this module, so a resumed run pulls toward the same pretrained values
        (by then the model's own weights have moved).
        """
        self._names = []
        for name, param in model.encoder.named_parameters():
            if param.requires_grad:
                buffer = "start__" + name.replace(".", "__")
                self.register_buffer(buffer, param.detach().clone())
                self._names.append(name)

    def loss(self, model: nn.Module, batches: Mapping[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        task, logged = super().loss(model, batches, step)
        params = dict(model.encoder.named_parameters())
        pull = sum(((params[n] - getattr(self, "start__" + n.replace(".", "__"))) ** 2).sum() for n in self._names)
        decay = sum((p ** 2).sum() for p in model.heads.parameters() if p.requires_grad)
        regulariser = 0.5 * self.alpha * pull + 0.5 * self.beta * decay
        return task + regulariser, {**logged, "l2sp": float(regulariser.detach())}

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}
