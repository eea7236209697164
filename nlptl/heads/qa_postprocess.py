"""Start/end logits over a context's windows -> one character span per example (SQuAD-style).

Each window is scored on its own: the ``n_best`` highest start and end positions inside the
context give candidate spans (start <= end, at most ``max_answer_length`` tokens), scored by
start logit + end logit. The best span over all windows of an example wins and is mapped back to
characters through the row's offsets, so ``context[start:end] == answer`` always holds.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..encoders.base import ModelInput


def null_position(model_input: ModelInput) -> int:
    """Where a row scores "no answer": its first special token (BERT's [CLS]), else its first question token."""
    sequence_ids = model_input.sequence_ids
    for position, sequence_id in enumerate(sequence_ids):
        if sequence_id is None:
            return position
    for position, sequence_id in enumerate(sequence_ids):
        if sequence_id != 1:
            return position
    raise ValueError("a QA row has no special token and no question token to hold the no-answer score")


def context_positions(model_input: ModelInput) -> np.ndarray:
    """Row positions that hold context tokens (the second text of the pair), in order."""
    return np.array([p for p, s in enumerate(model_input.sequence_ids) if s == 1], dtype=np.int64)


def best_window_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    model_input: ModelInput,
    n_best: int,
    max_answer_length: int,
) -> tuple[float, int, int] | None:
    """Best (score, start_char, end_char) inside one window's context, or None when it has no valid span."""
    positions = context_positions(model_input)
    if len(positions) == 0:
        return None
    k = min(n_best, len(positions))
    starts = positions[np.argsort(-start_logits[positions], kind="stable")[:k]]  # (k,)
    ends = positions[np.argsort(-end_logits[positions], kind="stable")[:k]]  # (k,)
    lengths = ends[None, :] - starts[:, None] + 1  # (k, k) in tokens
    valid = (lengths >= 1) & (lengths <= max_answer_length)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[starts][:, None] + end_logits[ends][None, :], -np.inf)  # (k, k)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    start_char = model_input.offsets[starts[i]][0]
    end_char = model_input.offsets[ends[j]][1]
    return float(scores[i, j]), int(start_char), int(end_char)


def best_answers(
    rows: Sequence[dict[str, Any]],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best: int = 20,
    max_answer_length: int = 30,
    allow_no_answer: bool = False,
    no_answer_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """One ``{"answer", "score", "start", "end"}`` per example, in example order.

    ``rows`` are a QA head's rows (``input``, ``example_index``, ``context``); the logits are one
    array per row, possibly padded past the row's length. With ``allow_no_answer``, an example
    answers "" (start = end = 0) when its null score (the lowest over its windows: the window most
    sure an answer is there) beats the best span's score by more than ``no_answer_threshold``.
    Without a valid span at all (e.g. an empty context) the answer is "" with score -inf.
    """
    if not (len(rows) == len(start_logits) == len(end_logits)):
        raise ValueError(
            f"got {len(rows)} rows but {len(start_logits)} start and {len(end_logits)} end logit arrays; "
            "pass one array per row, in row order"
        )
    n_examples = max(r["example_index"] for r in rows) + 1
    best: list[tuple[float, int, int] | None] = [None] * n_examples
    null_scores = [np.inf] * n_examples
    contexts: list[str] = [""] * n_examples
    for row, start, end in zip(rows, start_logits, end_logits):
        length = len(row["input"])
        start = np.asarray(start, dtype=np.float64)[:length]  # (L,)
        end = np.asarray(end, dtype=np.float64)[:length]  # (L,)
        j = row["example_index"]
        contexts[j] = row["context"]
        null = null_position(row["input"])
        null_scores[j] = min(null_scores[j], float(start[null] + end[null]))
        span = best_window_span(start, end, row["input"], n_best, max_answer_length)
        if span is not None and (best[j] is None or span[0] > best[j][0]):
            best[j] = span

    answers = []
    for j in range(n_examples):
        span = best[j]
        no_answer = span is None or (allow_no_answer and null_scores[j] - span[0] > no_answer_threshold)
        if no_answer:
            score = null_scores[j] if allow_no_answer else float("-inf")
            answers.append({"answer": "", "score": score, "start": 0, "end": 0})
        else:
            score, start_char, end_char = span
            answers.append({"answer": contexts[j][start_char:end_char], "score": score,
                            "start": start_char, "end": end_char})
    return answers
