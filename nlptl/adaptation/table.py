"""``FeatureTableEncoder``: precomputed sentence vectors (frozen) under a small trainable adapter.

Adaptation in the style of DANN on mSDA features (Ganin et al. 2016): the big pretrained encoder
runs once per text, and the adaptation objectives train only a feature layer above it. This
encoder looks each text up in a table of such vectors (exact string match), so ``nlptl.fit``,
its objectives, sources and evaluation run unchanged at a few milliseconds a batch.
Layer groups: ``table`` (the frozen vectors) and ``adapter`` (Linear -> GELU -> dropout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..encoders.base import EncoderOutput, ModelInput, TextEncoder, TokenizedText


class FeatureTableEncoder(TextEncoder):
    kind = "feature_table"
    encode_batch_size = 1024

    def __init__(self, texts: Sequence[str], vectors: np.ndarray, adapter_size: int | None = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"vectors must be (len(texts), D); got {vectors.shape} for {len(texts)} texts")
        self.index = {text: i for i, text in enumerate(texts)}  # duplicates share one vector: the last
        self.table = nn.Embedding.from_pretrained(torch.from_numpy(vectors), freeze=True)  # (N, D)
        width = vectors.shape[1]
        self.adapter_size = adapter_size
        self.adapter = (nn.Sequential(nn.Linear(width, adapter_size), nn.GELU(), nn.Dropout(dropout))
                        if adapter_size else nn.Identity())
        self.max_length = 1
        self._width = adapter_size or width

    @property
    def num_features(self) -> int:
        return self._width

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        missing = next((t for t in texts if t not in self.index), None)
        if missing is not None:
            raise KeyError(f"text {missing[:60]!r} is not in this feature table; build the table from every text "
                           "you train or evaluate on")
        return [TokenizedText([self.index[t]], [(0, len(t))]) for t in texts]

    def build_inputs(self, first: TokenizedText, second: TokenizedText | None = None) -> ModelInput:
        if second is not None:
            raise ValueError("FeatureTableEncoder holds one vector per text; text pairs are not supported")
        return ModelInput(ids=list(first.ids), type_ids=[0], sequence_ids=[0], offsets=list(first.offsets))

    def collate(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([row.ids[0] for row in rows], dtype=torch.long)[:, None]  # (B, 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        features = self.adapter(self.table(batch["input_ids"]))  # (B, 1, D)
        return EncoderOutput(features=features, mask=batch["attention_mask"].bool())

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [("table", [self.table]), ("adapter", [self.adapter])]

    def config(self) -> dict[str, Any]:
        return {"adapter_size": self.adapter_size, "rows": len(self.index)}

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "FeatureTableEncoder":
        raise NotImplementedError("a FeatureTableEncoder is built from its texts and vectors, not loaded from disk")
