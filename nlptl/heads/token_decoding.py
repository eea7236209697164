"""Word-level tag decoding for token classification: words, IOB2 constraints, spans and seqeval metrics.

Kept apart from the head so the pieces a user may want on their own (split a text into words
with offsets, a constrained Viterbi over IOB2 tags, entity metrics) read in one sitting.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

IGNORE = -100  # label id the loss skips (continuation pieces, special tokens, padding)
# Words as CoNLL-2003 writes them: runs of word characters joined by - ' . (U.S., 1996-08-22), or one symbol.
WORD = re.compile(r"\w+(?:[-'’.&]\w+)*|[^\w\s]")


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """A raw text's words and their (start, end) character offsets."""
    spans = [m.span() for m in WORD.finditer(text)]
    return [text[s:e] for s, e in spans], spans


def join_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text the encoder reads for pre-split words: the words joined by single spaces, with each word's span."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def piece_words(piece_offsets: Sequence[tuple[int, int]], word_spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each sub-word piece, the index of the word its first character falls in (-1: none)."""
    owners, w = [], 0
    for start, end in piece_offsets:
        while w < len(word_spans) and word_spans[w][1] <= start:
            w += 1
        inside = w < len(word_spans) and word_spans[w][0] <= start < word_spans[w][1]
        owners.append(w if inside else -1)
    return owners


def is_iob2(labels: Sequence[str]) -> bool:
    """Whether every tag is O, B-X or I-X: then entity metrics and constrained decoding apply."""
    return bool(labels) and all(t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2) for t in labels)


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed (C, C) previous -> next, allowed_start (C,)): I-X only after B-X or I-X of the same type."""
    def follows(prev: str | None, tag: str) -> bool:
        if not tag.startswith("I-"):
            return True
        return prev is not None and prev[:2] in ("B-", "I-") and prev[2:] == tag[2:]

    allowed = np.array([[follows(p, t) for t in labels] for p in labels], dtype=bool)  # (C, C)
    start = np.array([follows(None, t) for t in labels], dtype=bool)  # (C,)
    return allowed, start


def viterbi(log_probs: np.ndarray, allowed: np.ndarray, allowed_start: np.ndarray) -> np.ndarray:
    """Best tag path (W,) under the allowed transitions, maximising the sum of per-word log-probabilities."""
    n_words = log_probs.shape[0]
    if n_words == 0:
        return np.zeros(0, dtype=np.int64)
    transition = np.where(allowed, 0.0, -np.inf)  # (C, C)
    score = log_probs[0] + np.where(allowed_start, 0.0, -np.inf)  # (C,)
    back = np.zeros(log_probs.shape, dtype=np.int64)  # (W, C)
    for t in range(1, n_words):
        candidates = score[:, None] + transition  # (C_prev, C)
        back[t] = candidates.argmax(0)
        score = candidates.max(0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n_words - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.array(path[::-1], dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def decode(log_probs: np.ndarray, labels: Sequence[str] | None, constrained: bool) -> np.ndarray:
    """Tag ids (W,): Viterbi over IOB2 transitions when ``constrained`` and the labels are IOB2, else argmax."""
    if constrained and labels is not None and is_iob2(labels):
        return viterbi(log_probs, *allowed_transitions(labels))
    return log_probs.argmax(-1) if len(log_probs) else np.zeros(0, dtype=np.int64)


def entity_spans(tags: Sequence[str], probabilities: np.ndarray, word_spans: Sequence[tuple[int, int]],
                 text: str) -> list[dict[str, Any]]:
    """IOB2 word tags -> [{"entity", "text", "start", "end", "score"}] with character offsets into ``text``.

    ``score`` is the mean probability of the chosen tag over the entity's words.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    spans = []
    for kind, first, last in get_entities(list(tags)):
        start, end = word_spans[first][0], word_spans[last][1]
        score = float(np.mean(probabilities[first : last + 1]))
        spans.append({"entity": kind, "text": text[start:end], "start": int(start), "end": int(end),
                      "score": round(score, 4)})
    return spans


def tagging_metrics(gold: list[list[str]], predicted: list[list[str]], entity_level: bool) -> dict[str, float]:
    """Token accuracy, and with IOB2 tags entity-level (strict spans) precision, recall, micro/macro F1 per type."""
    flat_gold = [t for sentence in gold for t in sentence]
    flat_predicted = [t for sentence in predicted for t in sentence]
    correct = sum(g == p for g, p in zip(flat_gold, flat_predicted))
    metrics = {"token_accuracy": correct / max(len(flat_gold), 1)}
    if not entity_level:
        return metrics
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    report = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro, macro = report.pop("micro avg"), report.pop("macro avg")
    report.pop("weighted avg", None)
    metrics.update(precision=float(micro["precision"]), recall=float(micro["recall"]), f1=float(micro["f1-score"]),
                   macro_f1=float(macro["f1-score"]))
    for kind, scores in sorted(report.items()):
        metrics[f"f1_{kind}"] = float(scores["f1-score"])
        metrics[f"precision_{kind}"] = float(scores["precision"])
        metrics[f"recall_{kind}"] = float(scores["recall"])
        metrics[f"support_{kind}"] = float(scores["support"])
    return metrics


def entity_confusion(gold: list[list[str]], predicted: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Entity types, and counts of gold span type (rows) against the type predicted at the same span (columns).

    The last row and column are "O": a gold entity with no predicted span at its exact boundaries
    (missed), or a predicted span with no gold one there (spurious). Spans as seqeval reads them.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    gold_spans = [{(start, end): kind for kind, start, end in get_entities(list(tags))} for tags in gold]
    predicted_spans = [{(start, end): kind for kind, start, end in get_entities(list(tags))} for tags in predicted]
    types = sorted({kind for spans in gold_spans + predicted_spans for kind in spans.values()})
    index = {kind: i for i, kind in enumerate(types)}
    none = len(types)
    matrix = np.zeros((none + 1, none + 1), dtype=np.int64)
    for golds, guesses in zip(gold_spans, predicted_spans):
        for span, kind in golds.items():
            matrix[index[kind], index[guesses[span]] if span in guesses else none] += 1
        for span, kind in guesses.items():
            if span not in golds:
                matrix[none, index[kind]] += 1
    return types, matrix
