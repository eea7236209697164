"""Extractive question answering (SQuAD v1 / v2): predict the answer's start and end token.

Works on any text encoder through its generic pipeline only (``tokenize`` -> ``build_inputs``
-> ``collate``): a context longer than the encoder's window is split into overlapping windows,
each row being ``build_inputs(question, window)``, and ``ModelInput.sequence_ids``/``offsets``
map predicted positions back to characters of the context.

Choices:

* Every row keeps one *null slot*: its first special token (BERT's [CLS]), or its first question
  token for encoders without special tokens (static vectors); see ``qa_postprocess.null_position``.
  Logits are masked to a large negative everywhere except the context and the null slot.
* A training window that does not contain the answer (and every window of an unanswerable
  example) targets the null slot, as in SQuAD v2 and Hugging Face's QA examples; windows are never
  dropped. For SQuAD v1 (``allow_no_answer=False``) the null score is simply never predicted.
"""
from __future__ import annotations

import warnings
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import require_int
from ..encoders.base import Encoder, EncoderOutput, TextEncoder, TokenizedText, check_texts
from .base import Head
from .data import as_dataset, require_columns
from .qa_postprocess import best_answers, context_positions, null_position

MASKED = -1e4  # masked-out logit: far below any real one, yet finite so no sum or softmax turns NaN


class ExtractiveQAHead(Head):
    """Linear(D, 2) start/end logits over context tokens, trained with the mean of two cross-entropies."""

    task: ClassVar[str] = "extractive-qa"
    gather_keys: ClassVar[tuple[str, ...]] = ("start_logits", "end_logits")
    primary_metric: ClassVar[str] = "f1"
    report_metrics: ClassVar[tuple[str, ...]] = ("f1", "exact_match")
    metric_scale: ClassVar[float] = 1.0  # SQuAD's official scores are percentages already

    def __init__(
        self,
        max_answer_length: int = 30,
        n_best: int = 20,
        stride: int = 32,
        max_length: int | None = None,
        allow_no_answer: bool = False,
        no_answer_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        checks = [("max_answer_length", max_answer_length, 1), ("n_best", n_best, 1), ("stride", stride, 0)]
        for name, value, low in checks:
            require_int(name, value, low)
        if max_length is not None and (not isinstance(max_length, int) or max_length < 3):
            raise ValueError(f"max_length={max_length!r}: expected None (the encoder's maximum) or an integer >= 3")
        self.max_answer_length, self.n_best, self.stride = max_answer_length, n_best, stride
        self.max_length, self.allow_no_answer = max_length, allow_no_answer
        self.no_answer_threshold = float(no_answer_threshold)

    def _build(self, num_features: int) -> None:
        self.qa_outputs = nn.Linear(num_features, 2)

    def config(self) -> dict[str, Any]:
        return {"max_answer_length": self.max_answer_length, "n_best": self.n_best, "stride": self.stride,
                "max_length": self.max_length, "allow_no_answer": self.allow_no_answer,
                "no_answer_threshold": self.no_answer_threshold}

    def forward(self, output: EncoderOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.qa_outputs(output.features).float()  # (B, L, 2)
        allowed = batch["context_mask"].clone()  # (B, L) bool
        if allowed.shape != logits.shape[:2]:
            raise ValueError(
                f"the encoder returned {tuple(logits.shape[:2])} positions but the batch's context_mask is "
                f"{tuple(allowed.shape)}: the encoder must return one feature per collated input position"
            )
        allowed[torch.arange(allowed.shape[0], device=allowed.device), batch["null_positions"]] = True
        logits = logits.masked_fill(~allowed.unsqueeze(-1), MASKED)  # (B, L, 2)
        start_logits, end_logits = logits.unbind(-1)  # (B, L) each
        result = {"start_logits": start_logits, "end_logits": end_logits}
        if "start_positions" in batch:
            start_loss = F.cross_entropy(start_logits, batch["start_positions"], reduction="none")  # (B,)
            end_loss = F.cross_entropy(end_logits, batch["end_positions"], reduction="none")  # (B,)
            result["losses"] = (start_loss + end_loss) / 2
        return result

    # ----- task data ---------------------------------------------------------------------------

    def prepare(
        self,
        encoder: Encoder,
        dataset: Any,
        train: bool,
        question_column: str = "question",
        context_column: str = "context",
        answers_column: str = "answers",
        id_column: str = "id",
    ) -> list[dict[str, Any]]:
        """SQuAD-format rows -> one row per (question, context window).

        Each row: "input", "row_index", "example_index", "example_id", "context" (the full text,
        shared by the example's windows), "answers" (when the column exists) and, for training,
        "start_position"/"end_position" (row positions; the null slot when the window lacks the
        answer). ``id_column`` is optional: without it examples are named by their index.
        """
        if not isinstance(encoder, TextEncoder):
            raise TypeError(f"extractive QA needs a text encoder; got {type(encoder).__name__} ({encoder.modality})")
        dataset = as_dataset(dataset, "train_data" if train else "eval_data")
        needed = {question_column: "question_column", context_column: "context_column"}
        if train:
            needed[answers_column] = "answers_column"
        require_columns(dataset, needed)
        questions = check_texts(dataset[question_column], f"column {question_column!r}")
        contexts = check_texts(dataset[context_column], f"column {context_column!r}")
        ids = [str(i) for i in (dataset[id_column] if id_column in dataset.column_names else range(len(contexts)))]
        answers = None
        if answers_column in dataset.column_names:
            answers = [self._checked_answers(a, c, i, answers_column, train) for a, c, i in
                       zip(dataset[answers_column], contexts, ids)]

        max_length = self._window_length(encoder)
        specials = encoder.num_special_tokens(pair=True)
        rows: list[dict[str, Any]] = []
        unlocated = 0
        for j, (question, context) in enumerate(zip(encoder.tokenize(questions), encoder.tokenize(contexts))):
            budget = max_length - specials - len(question.ids)  # context tokens per window
            self._check_budget(budget, len(context.ids), len(question.ids), ids[j], max_length, specials)
            target = None
            if train and answers[j]["text"]:
                target = _token_span(context, answers[j]["answer_start"][0], len(answers[j]["text"][0]))
                unlocated += target is None
            for first, last in _windows(len(context.ids), budget, self.stride):
                window = TokenizedText(context.ids[first:last], context.offsets[first:last])
                model_input = encoder.build_inputs(question, window)
                if all(sequence_id == 1 for sequence_id in model_input.sequence_ids):
                    raise ValueError(f"example id {ids[j]!r}: the question has no tokens and {type(encoder).__name__} "
                                     "adds no special tokens, so no position can score 'no answer'; give it a question")
                row = {"input": model_input, "row_index": len(rows), "example_index": j,
                       "example_id": ids[j], "context": contexts[j]}
                if answers is not None:
                    row["answers"] = answers[j]
                if train:
                    row["start_position"], row["end_position"] = _targets(model_input, target, first, last)
                rows.append(row)
        if unlocated:
            warnings.warn(f"{unlocated} answer(s) cover no token of their context; those examples train as "
                          "unanswerable", UserWarning, stacklevel=2)
        return rows

    def _window_length(self, encoder: TextEncoder) -> int:
        if self.max_length is None:
            return encoder.max_length
        if self.max_length > encoder.max_length:
            raise ValueError(f"max_length={self.max_length} is longer than the encoder's maximum of "
                             f"{encoder.max_length} tokens; use max_length <= {encoder.max_length} or None")
        return self.max_length

    def _check_budget(self, budget: int, n_context: int, n_question: int, example_id: str, max_length: int,
                      specials: int) -> None:
        if budget < 1:
            raise ValueError(
                f"example id {example_id!r}: the question has {n_question} tokens, which with the encoder's "
                f"{specials} special tokens leaves no room for context in max_length={max_length}; "
                "shorten the question or raise max_length"
            )
        if n_context > budget and self.stride >= budget:
            raise ValueError(
                f"example id {example_id!r}: windows hold {budget} context tokens after the "
                f"{n_question}-token question, not more than stride={self.stride}; lower stride or raise max_length"
            )

    def _checked_answers(self, answers: Any, context: str, example_id: str, column: str, train: bool) -> dict:
        if not (isinstance(answers, dict) and isinstance(answers.get("text"), list)
                and isinstance(answers.get("answer_start"), list)
                and len(answers["text"]) == len(answers["answer_start"])):
            raise ValueError(
                f"example id {example_id!r}: column {column!r} must hold SQuAD-format answers "
                f"{{'text': [...], 'answer_start': [...]}} of equal length, got {answers!r:.120}"
            )
        for text, start in zip(answers["text"], answers["answer_start"]):
            if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0:
                raise ValueError(f"example id {example_id!r}: answer_start={start!r} for answer {text!r} "
                                 "must be a character offset (an integer >= 0) into the context")
            found = context[start : start + len(text)]
            if found != text:
                elsewhere = context.find(text)
                hint = f"; the text occurs at character {elsewhere}" if elsewhere >= 0 else "; it is not in the context"
                raise ValueError(
                    f"example id {example_id!r}: answer {text!r} does not start at answer_start={start!r} "
                    f"(the context has {found!r} there){hint}. Fix answer_start to index the context's characters"
                )
        if train and not answers["text"] and not self.allow_no_answer:
            raise ValueError(
                f"example id {example_id!r} has no answer; pass allow_no_answer=True to train on unanswerable "
                "questions (SQuAD v2), or remove the example"
            )
        return answers

    def collate(self, encoder: Encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = encoder.collate([r["input"] for r in rows])
        length = batch["input_ids"].shape[1]  # the padded length (pad_to_multiple_of may round it up)
        context_mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, r in enumerate(rows):
            context_mask[i, torch.from_numpy(context_positions(r["input"]))] = True
        batch["context_mask"] = context_mask  # (B, L)
        batch["null_positions"] = torch.tensor([null_position(r["input"]) for r in rows], dtype=torch.long)
        if "start_position" in rows[0]:
            batch["start_positions"] = torch.tensor([r["start_position"] for r in rows], dtype=torch.long)
            batch["end_positions"] = torch.tensor([r["end_position"] for r in rows], dtype=torch.long)
        batch["row_index"] = torch.tensor([r["row_index"] for r in rows], dtype=torch.long)
        return batch

    def postprocess(self, rows: Sequence[dict[str, Any]], start_logits: Sequence[np.ndarray],
                    end_logits: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Per-row logits -> one answer per example with this head's n-best / no-answer settings."""
        return best_answers(rows, start_logits, end_logits, n_best=self.n_best,
                            max_answer_length=self.max_answer_length, allow_no_answer=self.allow_no_answer,
                            no_answer_threshold=self.no_answer_threshold)

    def predict(self, model: Any, inputs: Sequence[str], batch_size: int = 32, contexts: Sequence[str] | None = None,
                head: str | None = None) -> list[dict[str, Any]]:
        """Answers to questions ``inputs``, one context each: [{"answer", "score", "start", "end"}]."""
        if contexts is None:
            raise ValueError("extractive QA needs contexts=[...]: one context per question")
        return predict_answers(model.encoder, self, inputs, contexts, batch_size=batch_size)

    def metric_names(self) -> tuple[str, ...]:
        return self.report_metrics

    def compute_metrics(self, rows, outputs, dataset) -> dict[str, float]:
        if "answers" not in rows[0]:
            raise ValueError("the evaluation data has no answers column, so there is nothing to score against; "
                             "pass answers_column= naming the column with SQuAD-format answers")
        predicted = self.postprocess(rows, outputs["start_logits"], outputs["end_logits"])
        # keyed by example index, not the id column: ids may be missing or repeated
        references = {str(r["example_index"]): r["answers"]["text"] or [""] for r in rows}  # v2: "" is right
        from ..metrics import compute_squad_metrics

        return compute_squad_metrics(
            predictions={str(j): p["answer"] for j, p in enumerate(predicted)}, references=references
        )


@torch.inference_mode()
def predict_answers(
    encoder: TextEncoder,
    head: ExtractiveQAHead,
    questions: Sequence[str],
    contexts: Sequence[str],
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Answer each question from its context: ``[{"answer", "score", "start", "end"}]``, in input order."""
    questions = check_texts(questions, "questions")
    contexts = check_texts(contexts, "contexts")
    if len(questions) != len(contexts):
        raise ValueError(f"got {len(questions)} questions but {len(contexts)} contexts; pass one context per question")
    rows = head.prepare(encoder, {"question": questions, "context": contexts}, train=False)
    modes = encoder.training, head.training
    encoder.eval()
    head.eval()
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    try:
        for i in range(0, len(rows), batch_size):
            batch = {k: v.to(encoder.device) for k, v in head.collate(encoder, rows[i : i + batch_size]).items()}
            out = head(encoder(batch), batch)
            starts.extend(out["start_logits"].cpu().numpy())
            ends.extend(out["end_logits"].cpu().numpy())
    finally:
        encoder.train(modes[0])
        head.train(modes[1])
    return head.postprocess(rows, starts, ends)


def _windows(n_tokens: int, budget: int, stride: int) -> list[tuple[int, int]]:
    """[first, last) token ranges of at most ``budget`` tokens, consecutive ones sharing ``stride``."""
    spans, first = [], 0
    while True:
        spans.append((first, min(first + budget, n_tokens)))
        if first + budget >= n_tokens:
            return spans
        first += budget - stride


def _token_span(context: TokenizedText, answer_start: int, answer_length: int) -> tuple[int, int] | None:
    """First and last context token overlapping the answer's characters, or None when none does."""
    answer_end = answer_start + answer_length
    covering = [k for k, (start, end) in enumerate(context.offsets) if end > answer_start and start < answer_end]
    return (covering[0], covering[-1]) if covering else None


def _targets(model_input, target: tuple[int, int] | None, first: int, last: int) -> tuple[int, int]:
    """Row positions of the answer's first and last token, or the null slot when this window lacks them."""
    if target is None or not (first <= target[0] and target[1] < last):
        null = null_position(model_input)
        return null, null
    positions = context_positions(model_input)
    return int(positions[target[0] - first]), int(positions[target[1] - first])
