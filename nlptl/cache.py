"""Frozen-encoder feature cache: what is below the freeze line is computed once, not every epoch.

With ``feature_extraction`` the encoder never changes, yet a plain loop recomputes it for every
batch of every epoch. ``FeatureCache`` runs the encoder once per row (eval mode, inference mode,
length-sorted batches), keeps each row's features trimmed to its real length, and the training
loop then feeds the head from the cache. The cache lives for one ``fit`` call, so it can never be
stale: a new call (new weights, new preprocessing or new data) computes a new one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .encoders.base import EncoderOutput, ModelInput

CACHED_FEATURES = "cached_features"  # batch keys the cached path adds
CACHED_MASK = "cached_mask"
CACHED_POOLED = "cached_pooled"


class FeatureCache:
    """Per-row encoder outputs, computed once; ``collate`` pads them back into batches."""

    def __init__(self, features: list[torch.Tensor], masks: list[torch.Tensor], pooled: list[torch.Tensor] | None):
        self.features, self.masks, self.pooled = features, masks, pooled

    @classmethod
    @torch.inference_mode()
    def build(cls, model, rows: Sequence[dict[str, Any]], batch_size: int, device: torch.device,
              dtype: torch.dtype = torch.float32, progress: bool = False) -> "FeatureCache":
        encoder, head = model.encoder, model.head
        was_training = encoder.training
        encoder.eval()
        lengths = [len(r["input"]) if isinstance(r["input"], ModelInput) else 0 for r in rows]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: little padding per batch
        features: list[Any] = [None] * len(rows)
        masks: list[Any] = [None] * len(rows)
        pooled: list[Any] = [None] * len(rows)
        starts = range(0, len(rows), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="caching frozen features", unit="batch", leave=False)
        try:
            for start in starts:
                idx = order[start : start + batch_size]
                batch = head.collate(encoder, [rows[i] for i in idx])
                out: EncoderOutput = encoder({k: v.to(device) for k, v in batch.items()})
                for j, i in enumerate(idx):
                    real = out.mask[j].nonzero()
                    end = int(real[-1]) + 1 if len(real) else 1  # keep up to the last real position
                    features[i] = out.features[j, :end].to("cpu", dtype).clone()  # (L_i, D)
                    masks[i] = out.mask[j, :end].cpu().clone()  # (L_i,)
                    if out.pooled is not None:
                        pooled[i] = out.pooled[j].to("cpu", dtype).clone()  # (D,)
        finally:
            encoder.train(was_training)
        return cls(features, masks, pooled if pooled[0] is not None else None)

    @property
    def nbytes(self) -> int:
        total = sum(f.numel() * f.element_size() for f in self.features)
        return total + (sum(p.numel() * p.element_size() for p in self.pooled) if self.pooled else 0)

    def collate(self, head, encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The head's batch (targets) plus the cached features, padded to the longest row."""
        batch = head.collate(encoder, rows)
        index = [r["row_index"] for r in rows]
        length = max(self.features[i].shape[0] for i in index)
        width = self.features[index[0]].shape[1]
        features = torch.zeros((len(rows), length, width), dtype=torch.float32)  # (B, L, D)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)  # (B, L)
        for b, i in enumerate(index):
            n = self.features[i].shape[0]
            features[b, :n] = self.features[i]
            mask[b, :n] = self.masks[i]
        batch[CACHED_FEATURES], batch[CACHED_MASK] = features, mask
        if self.pooled is not None:
            batch[CACHED_POOLED] = torch.stack([self.pooled[i] for i in index]).float()  # (B, D)
        return batch


def cached_output(batch: dict[str, torch.Tensor]) -> EncoderOutput | None:
    """The encoder output carried by a cached batch, or None for a normal batch."""
    if CACHED_FEATURES not in batch:
        return None
    return EncoderOutput(batch[CACHED_FEATURES], batch[CACHED_MASK], batch.get(CACHED_POOLED))
