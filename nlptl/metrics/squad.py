"""SQuAD v1.1 exact match and F1, exactly as the official ``evaluate-v1.1.py`` scores them.

An answer is normalised (lowercase, punctuation removed, the articles a/an/the removed,
whitespace collapsed); F1 compares the bags of normalised tokens; each question takes its best
score over its gold answers; the totals are percentages (0-100) over all reference questions.
Two cases v1.1 never meets follow the SQuAD v2.0 script: a question with no gold answer (unanswerable)
counts "" as its answer, and F1 is 1 when prediction and gold both normalise to nothing.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping

__all__ = ["normalize_answer", "exact_match_score", "f1_score", "squad_scores", "gold_texts"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official normalisation: lower, strip punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between the normalised prediction and gold answer (0..1)."""
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not truth:
        return float(predicted == truth)  # the v2.0 rule: "no answer" matches only "no answer"
    common = sum((Counter(predicted) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Any) -> list[str]:
    """Gold answers as a list of strings: from ["..."], SQuAD's {"text": [...]}, or [{"text": ...}]."""
    if isinstance(answers, Mapping):
        answers = answers["text"]
    elif isinstance(answers, str):
        answers = [answers]
    texts = [a["text"] if isinstance(a, Mapping) else a for a in answers]
    return texts or [""]  # unanswerable (SQuAD v2.0): only an empty prediction is right


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Iterable[Any]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent; a reference id without a prediction scores 0, as officially."""
    unknown = [qid for qid in predictions if qid not in references]
    if unknown:
        raise ValueError(f"{len(unknown)} prediction id(s) are not among the references, e.g. {unknown[0]!r}; "
                         f"predictions and references must be keyed by the same question ids")
    if not references:
        raise ValueError("no references to score")
    exact = f1 = 0.0
    for qid, answers in references.items():
        if qid not in predictions:
            continue
        golds = gold_texts(answers)
        exact += max(exact_match_score(predictions[qid], g) for g in golds)
        f1 += max(f1_score(predictions[qid], g) for g in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}
