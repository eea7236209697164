"""Prototypes: one- and few-shot classification without training, as a head that saves like any other.

Each class is the mean of its L2-normalised support features (Snell et al. 2017, with cosine
scoring); a text is scored by the cosine to each prototype divided by a temperature, so the
logits are ready for softmax probabilities and for further training with ``nlptl.fit``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..encoders.base import Encoder, EncoderOutput, pool
from ..heads.classification import ClassificationHead

PROTOTYPE_TASK = "prototype-classification"


class PrototypeHead(ClassificationHead):
    """Cosine to class prototypes (a buffer ``prototypes`` (C, D) in the state dict) over ``temperature``.

    It is a ClassificationHead in everything but scoring (same rows, batches, metrics and
    ``predict``), under its own task name so ``TransferModel.from_pretrained`` rebuilds this class.
    ``trainable=True`` makes the prototypes a parameter that ``fit`` can tune (a cosine classifier).
    """

    task: ClassVar[str] = PROTOTYPE_TASK

    def __init__(self, num_labels: int, pooling: str = "mean", temperature: float = 0.05,
                 trainable: bool = False) -> None:
        super().__init__(num_labels, pooling=pooling)
        if pooling == "attention":
            raise ValueError("PrototypeHead has no weights to pool with: "
                             "choose pooling 'mean', 'max', 'first' or 'pooled'")
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: must be a number > 0")
        self.temperature, self.trainable = float(temperature), bool(trainable)

    def _build(self, num_features: int) -> None:
        initial = torch.zeros(self.num_labels, num_features)  # (C, D); filled by set_prototypes or a reload
        if self.trainable:
            self.prototypes = nn.Parameter(initial)
        else:
            self.register_buffer("prototypes", initial)

    def config(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "pooling": self.pooling, "temperature": self.temperature,
                "trainable": self.trainable}

    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        """Replace the class prototypes (C, D); rows need not be normalised (scoring normalises)."""
        if tuple(prototypes.shape) != tuple(self.prototypes.shape):
            raise ValueError(f"prototypes have shape {tuple(prototypes.shape)}, the head needs "
                             f"{tuple(self.prototypes.shape)} (num_labels, num_features)")
        with torch.no_grad():
            self.prototypes.copy_(prototypes.to(self.prototypes))

    def forward(self, output: EncoderOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pooled = pool(output, self.pooling)  # (B, D)
        queries = nn.functional.normalize(pooled, dim=-1)  # (B, D)
        keys = nn.functional.normalize(self.prototypes.to(pooled.dtype), dim=-1)  # (C, D)
        logits = queries @ keys.T / self.temperature  # (B, C)
        result = {"logits": logits, "features": pooled}
        if "labels" in batch:
            result["losses"] = nn.functional.cross_entropy(logits, batch["labels"], reduction="none")  # (B,)
        return result

    @classmethod
    def for_run(cls, config: Any, train: Any) -> tuple["PrototypeHead", list[str]]:
        labels = train.features["label"].names
        return cls(len(labels), pooling=config.pooling), labels


def class_means(features: np.ndarray, label_ids: np.ndarray, num_labels: int) -> np.ndarray:
    """(C, D) mean of the L2-normalised rows of ``features`` (N, D) per class id."""
    unit = features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), 1e-12, None)  # (N, D)
    missing = sorted(set(range(num_labels)) - set(label_ids.tolist()))
    if missing:
        raise ValueError(f"class id(s) {missing} have no support example; every class needs at least one")
    return np.stack([unit[label_ids == c].mean(0) for c in range(num_labels)])  # (C, D)


def prototypes(encoder: Encoder, support_texts: Sequence[str], support_labels: Sequence[Any],
               labels: Sequence[str] | None = None, temperature: float = 0.05, pooling: str = "mean",
               batch_size: int = 64, trainable: bool = False) -> PrototypeHead:
    """A built PrototypeHead whose prototypes are the class means of the support set's features.

    ``labels`` fixes the class order (default: sorted distinct ``support_labels``); the head's
    ``labels`` holds the names, so ``TransferModel(encoder, head, labels=head.labels)`` predicts them.
    ``trainable=True``: the prototypes start a cosine classifier that ``fit`` tunes (few-shot fine-tuning
    from the nearest-class-mean solution rather than from a random head).
    """
    support_labels = list(support_labels)
    if len(support_texts) != len(support_labels) or not support_labels:
        raise ValueError(f"got {len(support_texts)} support texts and {len(support_labels)} labels; "
                         "pass one label per text, at least one text")
    names = [str(x) for x in (labels if labels is not None else sorted(set(support_labels), key=str))]
    unknown = sorted({str(x) for x in support_labels} - set(names), key=str)
    if unknown:
        raise ValueError(f"support label(s) {unknown} are not in labels={names}")
    if len(names) < 2:
        raise ValueError(f"prototypes need at least 2 classes, got {names}")
    ids = np.array([names.index(str(x)) for x in support_labels])
    features = encoder.encode(list(support_texts), batch_size=batch_size, pooling=pooling)  # (N, D)
    head = PrototypeHead(len(names), pooling=pooling, temperature=temperature, trainable=trainable)
    head.build(encoder)  # built here, so TransferModel keeps these prototypes (fit re-initialises unbuilt heads)
    head.set_prototypes(torch.from_numpy(class_means(features, ids, len(names))))
    head.labels = names
    return head.to(encoder.device)
