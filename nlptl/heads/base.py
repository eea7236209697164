"""What every task head provides, so the training loop is written once for all tasks.

A head is an ``nn.Module`` that is *built against an encoder* (it reads ``encoder.num_features``,
never a hard-coded width) and also knows its task's data: how a dataset row becomes encoder
input plus targets, how rows batch, and how predictions become metrics.

Flow inside ``nlptl.fit``::

    rows  = head.prepare(encoder, dataset, train=True)   # list of dicts, one per model input row
    batch = head.collate(encoder, rows[i:j])             # dict of tensors: encoder keys + targets
    out   = head(encoder(batch), batch)                  # dict: "losses" (B,) when targets given, logits,
                                                         #       "features" (B, D) when the head pools
    preds = head.gather_keys                             # which outputs evaluation collects
    metrics = head.compute_metrics(rows, outputs, dataset)

A head is also its *task*: ``task`` is the registry name ("text-classification", "extractive-qa")
spelled the same in the CLI, run configs and saved models, and the class methods below let
``runs.py`` build it for a run and write its predictions without knowing which task it is.
Adding a task is one new head file plus one line in ``nlptl/heads/__init__.py``'s ``TASKS``.

Losses are per example, so objectives can weight them (instance transfer) and reduce them as
they need; ``TransferModel`` adds their mean as "loss" for evaluation.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ..encoders.base import Encoder, EncoderOutput


class Head(nn.Module, ABC):
    task: ClassVar[str] = ""  # registry name (see nlptl.heads.TASKS)
    #: model outputs evaluation gathers across processes (each (N, ...) with N = rows in the batch)
    gather_keys: ClassVar[tuple[str, ...]] = ()
    #: what reports rank runs by, the metrics their tables show, and the factor that makes them percentages
    primary_metric: ClassVar[str] = "accuracy"
    report_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    metric_scale: ClassVar[float] = 100.0  # compute_metrics gives fractions; 1.0 when it gives percentages
    #: the rate for a pretrained transformer's weights under this head when fit is given no learning_rate
    #: (None: strategies.ENCODER_LEARNING_RATE, 5e-5)
    encoder_learning_rate: ClassVar[float | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.num_features: int | None = None

    @property
    def is_built(self) -> bool:
        return self.num_features is not None

    def build(self, encoder: Encoder) -> None:
        """Create the layers for this encoder's width; called once by ``TransferModel``."""
        self.num_features = encoder.num_features
        self._build(encoder.num_features)

    @abstractmethod
    def _build(self, num_features: int) -> None: ...

    @abstractmethod
    def forward(self, output: EncoderOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder output -> {"losses" (B,) per example if the batch has targets, logits..., "features"}."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments; ``type(self)(**config)`` rebuilds the head."""

    def cache_pooling(self) -> str | None:
        """The parameter-free pooling this head starts with (a name ``encoders.base.pool`` knows), or None.

        When a head reads its encoder output only through such a pooling, a feature cache stores
        one pooled vector per row instead of every position's features: the head then sees a
        one-position output whose pooling is that same vector. None (the default) keeps all positions.
        """
        return None

    # ----- task data ---------------------------------------------------------------------------

    @abstractmethod
    def prepare(self, encoder: Encoder, dataset: Any, train: bool, **columns: str) -> list[dict[str, Any]]:
        """Validate a ``datasets.Dataset`` and turn it into model input rows with targets.

        ``columns`` renames the dataset columns the head reads (``text_column="review"``...).
        Each row holds at least "input" (a ``ModelInput``) and "row_index" (its position).
        """

    @abstractmethod
    def collate(self, encoder: Encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Rows -> a batch: the encoder's tensors plus target tensors (and "row_index")."""

    @abstractmethod
    def compute_metrics(
        self, rows: Sequence[dict[str, Any]], outputs: dict[str, Any], dataset: Any
    ) -> dict[str, float]:
        """Gathered outputs -> metrics.

        ``outputs[key]`` for each key of ``gather_keys`` is a list with one numpy array per row,
        in row order; along the sequence axis it may carry padding past the row's own length.
        """

    def metric_names(self) -> tuple[str, ...] | None:
        """Every name ``compute_metrics`` can report for this head as configured ("eval_loss" is added by
        evaluation whenever the rows carry targets), so that ``fit`` refuses an unknown
        ``early_stopping_metric`` before training. None (the default, for heads that do not say)
        leaves the check to the first evaluation."""
        return None

    # ----- the task around the head: what runs.py and the CLI ask of it -------------------------

    @classmethod
    def for_run(cls, config: Any, train: Any) -> tuple["Head", list[str] | None]:
        """(head, label names) for a ``RunConfig`` and its training split."""
        return cls(), None

    @classmethod
    def run_columns(cls, dataset: Any) -> dict[str, str]:
        """The ``*_column`` options ``fit`` needs for data loaded by ``nlptl.data`` (its fixed column names)."""
        return {}

    def predictions_record(self, model: Any, dataset: Any, batch_size: int) -> dict[str, Any] | None:
        """What ``predictions.json`` of a run directory holds for this task (None: no file)."""
        return None

    @classmethod
    def prediction_breakdown(cls, predictions: dict[str, Any], where: Any) -> dict[str, Any] | None:
        """Per-class scores and a confusion matrix from a run's ``predictions.json`` (``where``), for reports.

        Returns ``{"unit", "labels", "precision", "recall", "f1" (0-100), "support", "confusion_labels",
        "confusion_matrix"}``, or None when the task has none.
        """
        return None

    def predict(self, model: Any, inputs: Any, batch_size: int = 32, **options: Any) -> Any:
        """Task-level predictions for raw inputs (labels, answers, entity spans)."""
        raise TypeError(f"the {self.task!r} head has no predict(); see its own methods")

    def describe_prediction(self, text: Any, prediction: Any) -> dict[str, Any]:
        """One JSON line of ``nlptl predict`` output."""
        return {"text": text, "prediction": prediction}
