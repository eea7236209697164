"""Sequence classification head: pool the encoder's features, then a (small) classifier.

Works on any encoder (static vectors, transformers, image backbones): it reads
``encoder.num_features`` when built and pools over the encoder's mask.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..config import require_int
from ..data.checks import check_label_value, check_training_labels, check_training_texts
from ..encoders.base import Encoder, EncoderOutput, pool
from .base import Head
from .data import as_dataset, require_columns

POOLINGS = ("mean", "max", "first", "attention", "pooled")


class ClassificationHead(Head):
    """Pool -> dropout -> [Linear -> GELU -> dropout] -> Linear to ``num_labels`` logits.

    ``pooling``: mean / max over real positions, the first token, a learned attention pooling
    (one query vector scoring every position), or the backbone's own pooled output.
    ``multi_label=True`` trains with a sigmoid and binary cross-entropy (labels are lists).
    ``hidden_size`` adds one hidden layer, useful over frozen features.
    """

    task: ClassVar[str] = "text-classification"
    gather_keys: ClassVar[tuple[str, ...]] = ("logits",)
    report_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "mcc")

    def __init__(
        self,
        num_labels: int,
        pooling: str = "mean",
        multi_label: bool = False,
        dropout: float = 0.1,
        hidden_size: int | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        require_int("num_labels", num_labels, 1 if multi_label else 2,
                    "" if multi_label else " (single-label classification needs at least 2 labels)")
        self.num_labels, self.pooling, self.multi_label = num_labels, pooling, multi_label
        self.dropout_p, self.hidden_size = dropout, hidden_size
        self.labels: list[str] | None = None  # names, set by TransferModel

    def _build(self, num_features: int) -> None:
        self.dropout = nn.Dropout(self.dropout_p)
        if self.pooling == "attention":
            self.attention = nn.Linear(num_features, 1)
        width = num_features
        if self.hidden_size:
            self.hidden = nn.Sequential(nn.Linear(num_features, self.hidden_size), nn.GELU(),
                                        nn.Dropout(self.dropout_p))
            width = self.hidden_size
        self.classifier = nn.Linear(width, self.num_labels)

    def config(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "pooling": self.pooling, "multi_label": self.multi_label,
                "dropout": self.dropout_p, "hidden_size": self.hidden_size}

    def cache_pooling(self) -> str | None:
        return None if self.pooling == "attention" else self.pooling  # attention pooling has weights

    def forward(self, output: EncoderOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.pooling == "attention":
            scores = self.attention(output.features).squeeze(-1)  # (B, L)
            scores = scores.masked_fill(~output.mask, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=-1) * output.mask  # (B, L); all-masked rows -> 0
            pooled = torch.einsum("bl,bld->bd", weights, output.features)  # (B, D)
        else:
            pooled = pool(output, self.pooling)  # (B, D)
        x = self.dropout(pooled)
        if self.hidden_size:
            x = self.hidden(x)
        logits = self.classifier(x)  # (B, num_labels)
        result = {"logits": logits, "features": pooled}
        if "labels" in batch:
            if self.multi_label:
                result["losses"] = nn.functional.binary_cross_entropy_with_logits(
                    logits, batch["labels"].float(), reduction="none").mean(-1)  # (B,)
            else:
                result["losses"] = nn.functional.cross_entropy(logits, batch["labels"], reduction="none")  # (B,)
        return result

    # ----- task data ---------------------------------------------------------------------------

    def prepare(
        self,
        encoder: Encoder,
        dataset: Any,
        train: bool,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        image_column: str = "image",
    ) -> list[dict[str, Any]]:
        """Rows with "input", "label" (absent for unlabelled training data: no label column) and "row_index"."""
        dataset = as_dataset(dataset, "train_data" if train else "eval_data")
        needed = {text_column: "text_column"} if encoder.modality == "text" else {image_column: "image_column"}
        if text_pair_column:
            needed[text_pair_column] = "text_pair_column"
        labelled = not train or label_column in dataset.column_names  # unlabelled text may train (adaptation)
        require_columns(dataset, {**needed, **({label_column: "label_column"} if labelled else {})})
        if encoder.modality == "text":
            inputs = self._text_inputs(encoder, dataset, text_column, text_pair_column)
        else:
            inputs = list(dataset[image_column])
        rows = [{"input": x, "row_index": i} for i, x in enumerate(inputs)]
        if labelled:
            names = label_names(dataset, label_column)  # once: reading dataset.features per row cost 0.1 ms each
            for row, value in zip(rows, dataset[label_column]):
                row["label"] = self._label_id(value, row["row_index"], label_column, names)
        if train and encoder.modality == "text":
            check_training_texts(dataset[text_column], f"train_data column {text_column!r}")
        if train and labelled and not self.multi_label:  # one class trains a constant predictor
            check_training_labels([self.labels[r["label"]] if self.labels else r["label"] for r in rows], "train_data")
        return rows

    @staticmethod
    def _text_inputs(encoder, dataset, text_column: str, text_pair_column: str | None) -> list:
        """Rows cut to the encoder's ``max_length``; a long text is tokenized only as far as that reaches."""
        from ..encoders.base import check_texts

        firsts = check_texts(dataset[text_column], f"column {text_column!r}")
        seconds = check_texts(dataset[text_pair_column], f"column {text_pair_column!r}") if text_pair_column else None
        return encoder.build_rows(firsts, seconds)

    def _label_id(self, value: Any, row: int, column: str, names: list[str] | None) -> int | list[float]:
        """The training target of one row; ``names`` are the column's ClassLabel names, if it has them."""
        if self.multi_label:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"column {column!r} row {row}: multi-label needs a list of labels, got {value!r}")
            hot = [0.0] * self.num_labels
            for v in value:
                hot[self._single_label_id(v, row, column, names)] = 1.0
            return hot
        return self._single_label_id(value, row, column, names)

    def _single_label_id(self, value: Any, row: int, column: str, names: list[str] | None) -> int:
        check_label_value(value, f"row {row}", column)  # 1.0 or True is not a class id
        if names is not None and self.labels is not None and isinstance(value, (int, np.integer)):
            value = names[int(value)]  # a ClassLabel id -> its name, matched against the model's names
        if self.labels is not None and isinstance(value, str):
            if value not in self.labels:
                raise ValueError(
                    f"column {column!r} row {row}: label {value!r} is not one of the model's labels {self.labels}"
                )
            return self.labels.index(value)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < self.num_labels:
            return int(value)
        raise ValueError(
            f"column {column!r} row {row}: label {value!r} is outside 0..{self.num_labels - 1}"
            + (f" and not one of {self.labels}" if self.labels else "; pass labels=[...] names to TransferModel")
        )

    def collate(self, encoder: Encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if encoder.modality == "text":
            batch = encoder.collate([r["input"] for r in rows])
        else:
            batch = encoder.preprocess([r["input"] for r in rows])
        if "label" in rows[0]:
            dtype = torch.float32 if self.multi_label else torch.long
            batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=dtype)
        batch["row_index"] = torch.tensor([r["row_index"] for r in rows], dtype=torch.long)
        return batch

    def metric_names(self) -> tuple[str, ...]:
        return ("subset_accuracy", "micro_f1") if self.multi_label else self.report_metrics

    def compute_metrics(self, rows, outputs, dataset) -> dict[str, float]:
        logits = np.stack(outputs["logits"])  # (N, num_labels)
        if self.multi_label:
            from sklearn.metrics import accuracy_score, f1_score

            predicted = (logits > 0).astype(int)  # a label is on where its sigmoid passes 0.5
            gold = np.array([r["label"] for r in rows], dtype=int)
            # on indicator arrays accuracy_score is subset accuracy: every label of a row right
            return {"subset_accuracy": float(accuracy_score(gold, predicted)),
                    "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0.0))}
        from ..metrics import compute_classification_metrics

        return compute_classification_metrics(
            predictions=logits.argmax(-1).tolist(), references=[r["label"] for r in rows]
        )


    # ----- the task around the head ----------------------------------------------------------------

    @classmethod
    def for_run(cls, config: Any, train: Any) -> tuple["ClassificationHead", list[str]]:
        labels = train.features["label"].names  # nlptl.data names the label column "label" (a ClassLabel)
        return cls(len(labels), pooling=config.pooling, hidden_size=config.hidden_size), labels

    @classmethod
    def run_columns(cls, dataset: Any) -> dict[str, str]:
        pair = {"text_pair_column": "text_pair"} if "text_pair" in dataset.column_names else {}
        return {"text_column": "text", "label_column": "label", **pair}

    def predictions_record(self, model: Any, dataset: Any, batch_size: int) -> dict[str, Any]:
        pairs = dataset["text_pair"] if "text_pair" in dataset.column_names else None
        predicted = self.predict(model, list(dataset["text"]), text_pairs=pairs, batch_size=batch_size)
        names = self.labels or list(range(self.num_labels))
        return {"labels": names, "references": list(dataset["label"]),
                "predictions": [names.index(p) for p in predicted]}

    @classmethod
    def prediction_breakdown(cls, predictions: dict[str, Any], where: Any) -> dict[str, Any]:
        from ..metrics import confusion_matrix, per_class_scores

        missing = [key for key in ("labels", "references", "predictions") if key not in predictions]
        if missing:
            raise ValueError(f"{where} has no {missing}; it needs labels (names), references and predictions (ids)")
        labels = [str(label) for label in predictions["labels"]]
        try:
            matrix, _ = confusion_matrix(predictions["predictions"], predictions["references"],
                                         labels=list(range(len(labels))))
        except ValueError as error:
            raise ValueError(f"{where}: {error} (ids must index the {len(labels)} label names)") from None
        scores = per_class_scores(matrix)
        return {"unit": "class", "labels": labels, "support": [int(n) for n in scores["support"]],
                **{key: [100.0 * float(v) for v in scores[key]] for key in ("precision", "recall", "f1")},
                "confusion_labels": labels, "confusion_matrix": matrix.tolist()}

    @torch.inference_mode()
    def predict(self, model: Any, inputs: Sequence[Any], batch_size: int = 32, text_pairs: Sequence[str] | None = None,
                return_probabilities: bool = False, head: str | None = None) -> Any:
        """Label names (ids when the model has none), optionally with the class probabilities (N, C)."""
        encoder = model.encoder
        probabilities = []
        for start in range(0, len(inputs), batch_size):
            pairs = None if text_pairs is None else list(text_pairs[start : start + batch_size])
            args = (list(inputs[start : start + batch_size]),) + ((pairs,) if pairs is not None else ())
            batch = {k: v.to(encoder.device) for k, v in encoder.preprocess(*args).items()}
            logits = model(batch, head=head)["logits"].float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            probabilities.append(probs.cpu().numpy())
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, self.num_labels))
        names = self.labels or list(range(self.num_labels))
        if self.multi_label:
            predictions = [[names[j] for j in np.flatnonzero(row > 0.5)] for row in probs]
        else:
            predictions = [names[j] for j in probs.argmax(-1)]
        return (predictions, probs) if return_probabilities else predictions

    def describe_prediction(self, text: Any, prediction: Any) -> dict[str, Any]:
        label, probs = prediction
        names = self.labels or list(range(self.num_labels))
        return {"text": text, "label": label, "probabilities": dict(zip(names, np.round(probs, 4).tolist()))}


def label_names(dataset, column: str) -> list[str] | None:
    """Names of a ``ClassLabel`` column (ids stored, names kept), else None."""
    feature = getattr(dataset, "features", {}).get(column)
    return list(feature.names) if hasattr(feature, "names") else None
