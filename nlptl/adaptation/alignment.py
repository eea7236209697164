"""Moment-matching adaptation losses on pooled features: Deep CORAL and multi-kernel MMD (DAN).

Neither has parameters of its own; each adds a differentiable discrepancy between a source batch
and a target batch of features that the encoder then learns to shrink.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..objectives import TrainStep
from .paired import SourceTargetObjective


def coral_distance(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||C_s - C_t||_F^2 / (4 d^2) of the feature covariances (Sun & Saenko, 2016)."""
    d = source.shape[1]

    def covariance(x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(0, keepdim=True)  # (B, D)
        return centred.T @ centred / max(1, len(x) - 1)  # (D, D)

    return ((covariance(source) - covariance(target)) ** 2).sum() / (4 * d * d)


def mk_mmd(source: torch.Tensor, target: torch.Tensor, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)
           ) -> torch.Tensor:
    """Biased MMD^2 under a sum of Gaussian kernels whose bandwidths scale the mean pairwise distance (DAN)."""
    features = torch.cat([source, target])  # (Bs + Bt, D)
    distances = torch.cdist(features, features) ** 2  # (N, N)
    bandwidth = distances.detach().sum() / max(1, len(features) ** 2 - len(features))
    kernel = sum(torch.exp(-distances / (bandwidth * m + 1e-12)) for m in multipliers)  # (N, N)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class CORAL(SourceTargetObjective):
    """Source task loss + ``trade_off`` * CORAL distance between source and target features."""

    def alignment(self, source: torch.Tensor, target: torch.Tensor, step: TrainStep) -> tuple[torch.Tensor, dict]:
        return coral_distance(source, target), {}


class MMD(SourceTargetObjective):
    """Source task loss + ``trade_off`` * multi-kernel MMD^2 between source and target features."""

    def __init__(self, trade_off: float = 1.0, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
                 source: str = "source", target: str = "target") -> None:
        super().__init__(trade_off, source, target)
        if not multipliers or any(not m > 0 for m in multipliers):
            raise ValueError(f"MMD multipliers={multipliers!r}: give one or more bandwidth factors > 0")
        self.multipliers = tuple(float(m) for m in multipliers)

    def alignment(self, source: torch.Tensor, target: torch.Tensor, step: TrainStep) -> tuple[torch.Tensor, dict]:
        return mk_mmd(source, target, self.multipliers), {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "multipliers": list(self.multipliers)}
