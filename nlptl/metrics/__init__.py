"""Evaluation metrics that work offline: accuracy, macro-F1, MCC and SQuAD v1.1 EM/F1.

The metrics are ``evaluate.Metric`` classes shipped in the package (``nlptl.metrics.modules``),
listed in one explicit table, ``METRICS``; ``load_metric(name)`` is the offline stand-in for
``evaluate.load(name)``. Classification scores are fractions (0-1); SQuAD scores are percentages
(0-100) like the official script.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import evaluate

from .classification import as_list, confusion_matrix, per_class_scores
from .modules import Accuracy, MacroF1, Mcc, Squad
from .squad import exact_match_score, f1_score, gold_texts, normalize_answer, squad_scores

__all__ = [
    "METRICS", "load_metric", "list_metrics", "compute_classification_metrics", "compute_squad_metrics",
    "classification_report", "confusion_matrix", "per_class_scores", "normalize_answer", "exact_match_score",
    "f1_score", "squad_scores",
]

METRICS: dict[str, type[evaluate.Metric]] = {
    "accuracy": Accuracy,
    "macro_f1": MacroF1,
    "mcc": Mcc,
    "squad": Squad,
}


def list_metrics() -> dict[str, str]:
    """Metric names ``load_metric`` knows and what each one measures."""
    return {name: cls(keep_in_memory=True).description for name, cls in METRICS.items()}


def load_metric(name: str, **kwargs: Any) -> evaluate.Metric:
    """An offline ``evaluate`` metric by name; ``kwargs`` go to ``evaluate.Metric`` (e.g. num_process)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}")
    kwargs.setdefault("keep_in_memory", kwargs.get("num_process", 1) == 1)  # no cache files unless distributed
    return METRICS[name](**kwargs)


def compute_classification_metrics(
    predictions: Any, references: Any, labels: Sequence[Any] | None = None
) -> dict[str, float]:
    """{"accuracy", "macro_f1", "mcc"} through the evaluate modules; labels as ids or names."""
    combined = evaluate.combine([load_metric("accuracy"), load_metric("macro_f1"), load_metric("mcc")])
    extra = {} if labels is None else {"labels": as_list(labels)}
    return combined.compute(predictions=as_list(predictions), references=as_list(references), **extra)


def compute_squad_metrics(predictions: Mapping[str, str], references: Mapping[str, Any]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent (0-100), official SQuAD v1.1 scoring.

    ``predictions`` maps question id -> predicted text; ``references`` maps question id -> gold
    answers (a list of strings, or SQuAD's ``{"text": [...], "answer_start": [...]}``). A reference
    without a prediction scores 0; a prediction id that is not a reference is an error.
    """
    unknown = [qid for qid in predictions if qid not in references]
    if unknown:  # checked here too: the module would only see rows, not the mismatch
        raise ValueError(f"{len(unknown)} prediction id(s) are not among the references, e.g. {unknown[0]!r}")
    if not references:
        raise ValueError("no references to score")
    metric = load_metric("squad")
    # An unanswered question travels as prediction_text None, which the module scores 0 (officially so).
    metric.add_batch(
        predictions=[{"id": qid, "prediction_text": predictions.get(qid)} for qid in references],
        references=[{"id": qid, "answers": {"text": gold_texts(answers), "answer_start": []}}
                    for qid, answers in references.items()],
    )
    return metric.compute()


def classification_report(
    predictions: Any, references: Any, labels: Sequence[Any] | None = None
) -> dict[Any, dict[str, float]]:
    """Per label: precision, recall, f1 (0-1) and support (how many references have it)."""
    matrix, order = confusion_matrix(predictions, references, labels)
    scores = per_class_scores(matrix)
    return {label: {"precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
                    "f1": float(scores["f1"][i]), "support": int(scores["support"][i])}
            for i, label in enumerate(order)}
