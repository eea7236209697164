"""The metrics as ``evaluate.Metric`` subclasses that ship with nlptl and never touch the hub.

``evaluate.load("accuracy")`` downloads a script from the hub; these classes are instantiated
directly instead, so they work offline, import like any module, and still offer evaluate's API
(``add_batch``, ``compute``, ``evaluate.combine``, multi-process gathering).
"""
from __future__ import annotations

from typing import Any, Sequence

import datasets
import evaluate

from . import classification as clf
from .squad import squad_scores

__all__ = ["Accuracy", "MacroF1", "Mcc", "Squad"]

# Labels arrive as ids or as names; evaluate picks the first feature set that fits the inputs.
_LABEL_FEATURES = [
    datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
]
_LABELS_DOC = """
Args:
    predictions: predicted labels, all ids or all names.
    references: reference labels, same type as predictions.
    labels: optional label order and set (default: every label seen, sorted).
"""


class _ClassificationMetric(evaluate.Metric):
    key = ""  # the name of the score in the result dict
    description = ""
    score = staticmethod(clf.accuracy)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(description=self.description, citation="", inputs_description=_LABELS_DOC,
                                   features=_LABEL_FEATURES)

    def _compute(self, predictions: Sequence[Any], references: Sequence[Any],
                 labels: Sequence[Any] | None = None) -> dict[str, float]:
        matrix, _ = clf.confusion_matrix(predictions, references, labels)
        return {self.key: type(self).score(matrix)}


class Accuracy(_ClassificationMetric):
    key = "accuracy"
    description = "Share of predictions equal to their reference (0-1)."
    score = staticmethod(clf.accuracy)


class MacroF1(_ClassificationMetric):
    key = "macro_f1"
    description = "Unweighted mean of per-class F1 (0-1); a class never predicted scores F1 0."
    score = staticmethod(clf.macro_f1)


class Mcc(_ClassificationMetric):
    key = "mcc"
    description = "Matthews correlation coefficient (-1..1), multiclass R_K; 0 when undefined."
    score = staticmethod(clf.matthews_corrcoef)


class Squad(evaluate.Metric):
    """SQuAD v1.1 EM/F1 in percent; the same input format as the hub's "squad" metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and F1 (percent, 0-100) with the official answer normalisation.",
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description="predictions: [{'id', 'prediction_text'}] (None: unanswered, scores 0); "
                               "references: [{'id', 'answers': {'text': [...], 'answer_start': [...]}}]",
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"),
                               "answers": {"text": datasets.List(datasets.Value("string")),
                                           "answer_start": datasets.List(datasets.Value("int32"))}},
            }),
        )

    def _compute(self, predictions: Sequence[dict], references: Sequence[dict]) -> dict[str, float]:
        return squad_scores({p["id"]: p["prediction_text"] for p in predictions if p["prediction_text"] is not None},
                            {r["id"]: r["answers"]["text"] for r in references})
