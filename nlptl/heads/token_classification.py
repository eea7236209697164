"""Token classification (named entities, any word-level tags) on every text encoder.

Data are words with one tag each (``tokens``/``tags`` columns, IOB2 for entities). The words are
joined by spaces and tokenized by the encoder's own ``tokenize``; each sub-word piece belongs to
the word its first character falls in (``token_decoding.piece_words``). Choices:

* A word's tag sits on its first piece; the other pieces are ignored in the loss, or with
  ``label_all_pieces=True`` trained on the word's tag (B-X continues as I-X).
* A sentence longer than the window (``max_length``, default the encoder's) is split into windows
  of pieces overlapping by ``stride``, never cut; every window trains, and at prediction each word
  is read from the window where its first piece has the most context on both sides.
* ``lstm_hidden=H`` puts a BiLSTM (H per direction) between the encoder and the tag classifier:
  the Lample et al. (2016) tagger over static vectors, usable over any encoder.
* ``constrained=True`` decodes with a Viterbi over IOB2 transitions (no I-X after O or another
  type) on the per-word softmax; metrics report both decodings (``viterbi_f1``, ``argmax_f1``).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import require_int
from ..encoders.base import Encoder, EncoderOutput, TextEncoder, TokenizedText
from . import token_decoding as td
from .base import Head
from .data import as_dataset, require_columns
from .qa import _windows


class TokenClassificationHead(Head):
    """[BiLSTM] -> dropout -> Linear(D, num_labels) per position; loss = mean CE over an example's scored pieces."""

    task: ClassVar[str] = "token-classification"
    gather_keys: ClassVar[tuple[str, ...]] = ("logits",)
    primary_metric: ClassVar[str] = "f1"  # entity-level micro F1, strict IOB2 spans (seqeval)
    report_metrics: ClassVar[tuple[str, ...]] = ("f1", "precision", "recall", "macro_f1", "token_accuracy")
    # Per-word tags ask more of a sentence-embedding encoder than a pooled label does: 1e-4 was chosen on
    # a 1,000-sentence CoNLL-2003 training sample (benchmarks/ner/report.md) and beats 5e-5 on the full data.
    encoder_learning_rate: ClassVar[float | None] = 1e-4

    def __init__(self, labels: Sequence[str] | None = None, num_labels: int | None = None,
                 label_all_pieces: bool = False, stride: int = 32, max_length: int | None = None,
                 lstm_hidden: int | None = None, dropout: float = 0.1, constrained: bool = True) -> None:
        super().__init__()
        if labels is None and num_labels is None:
            raise ValueError("give labels=[tag names] (e.g. ['O', 'B-PER', 'I-PER']) or num_labels=")
        if num_labels is not None:
            require_int("num_labels", num_labels, 2, " (the tag set, 'O' included)")
        if labels is not None and (isinstance(labels, str) or len(labels) < 2):
            raise ValueError(f"labels={labels!r}: expected a list of at least 2 tag names, "
                             "e.g. ['O', 'B-PER', 'I-PER']")
        if labels is not None and num_labels is not None and len(labels) != num_labels:
            raise ValueError(f"labels has {len(labels)} names but num_labels={num_labels}")
        require_int("stride", stride, 0)
        if max_length is not None and (not isinstance(max_length, int) or max_length < 3):
            raise ValueError(f"max_length={max_length!r}: expected None (the encoder's maximum) or an integer >= 3")
        if lstm_hidden is not None and (not isinstance(lstm_hidden, int) or lstm_hidden < 1):
            raise ValueError(f"lstm_hidden={lstm_hidden!r}: expected None (no BiLSTM) or an integer >= 1")
        self._tags = [str(t) for t in labels] if labels is not None else None
        self._num_labels = len(labels) if labels is not None else int(num_labels)
        self.label_all_pieces, self.stride, self.max_length = label_all_pieces, stride, max_length
        self.lstm_hidden, self.dropout_p, self.constrained = lstm_hidden, dropout, constrained

    # TransferModel assigns head.labels (None when it was given none): keep the names the head was built with.
    @property
    def labels(self) -> list[str] | None:
        return self._tags

    @labels.setter
    def labels(self, value: Sequence[str] | None) -> None:
        if value is not None:
            self._tags = [str(t) for t in value]

    @property
    def num_labels(self) -> int:
        return self._num_labels

    def _build(self, num_features: int) -> None:
        self.dropout = nn.Dropout(self.dropout_p)
        width = num_features
        if self.lstm_hidden:
            self.lstm = nn.LSTM(num_features, self.lstm_hidden, batch_first=True, bidirectional=True)
            width = 2 * self.lstm_hidden
        self.classifier = nn.Linear(width, self.num_labels)

    def config(self) -> dict[str, Any]:
        return {"labels": self._tags, "num_labels": self.num_labels, "label_all_pieces": self.label_all_pieces,
                "stride": self.stride, "max_length": self.max_length, "lstm_hidden": self.lstm_hidden,
                "dropout": self.dropout_p, "constrained": self.constrained}

    def forward(self, output: EncoderOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = output.features  # (B, L, D)
        if self.lstm_hidden:
            lengths = output.mask.sum(1).clamp(min=1).cpu()  # (B,) right padding: real positions come first
            packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lengths, batch_first=True, enforce_sorted=False)
            x, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        logits = self.classifier(self.dropout(x)).float()  # (B, L, C)
        result = {"logits": logits}
        if "labels" in batch:
            labels = batch["labels"]  # (B, L)
            if labels.shape != logits.shape[:2]:
                raise ValueError(f"the encoder returned {tuple(logits.shape[:2])} positions for labels of shape "
                                 f"{tuple(labels.shape)}: it must return one feature per collated input position")
            token_losses = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=td.IGNORE,
                                           reduction="none")  # (B, L)
            scored = (labels != td.IGNORE).sum(1).clamp(min=1)  # (B,)
            result["losses"] = token_losses.sum(1) / scored  # (B,)
        return result

    # ----- task data ---------------------------------------------------------------------------

    def prepare(self, encoder: Encoder, dataset: Any, train: bool, tokens_column: str = "tokens",
                tags_column: str = "tags") -> list[dict[str, Any]]:
        """Rows, one per window: "input" (with ``extras`` word map), "row_index", "example_index",
        and when tagged "labels" (per position) and "word_tags" (the example's tag ids)."""
        if not isinstance(encoder, TextEncoder):
            raise TypeError(f"token classification needs a text encoder; got {type(encoder).__name__}")
        dataset = as_dataset(dataset, "train_data" if train else "eval_data")
        tagged = not train or tags_column in dataset.column_names
        require_columns(dataset, {tokens_column: "tokens_column", **({tags_column: "tags_column"} if tagged else {})})
        words = [_checked_words(w, i, tokens_column) for i, w in enumerate(dataset[tokens_column])]
        tags = None
        if tagged:
            tags = [self._tag_ids(t, len(w), i, tags_column)
                    for i, (w, t) in enumerate(zip(words, dataset[tags_column]))]
        joined = [td.join_words(w) for w in words]
        return self.rows_for(encoder, [text for text, _ in joined], [spans for _, spans in joined], tags)

    def rows_for(self, encoder: TextEncoder, texts: list[str], word_spans: list[list[tuple[int, int]]],
                 tags: list[list[int]] | None) -> list[dict[str, Any]]:
        """Window rows for texts whose words sit at ``word_spans``; ``tags`` (word tag ids) adds targets."""
        window = self._window_length(encoder)
        budget = window - encoder.num_special_tokens()
        if budget <= self.stride:
            raise ValueError(f"windows of {window} tokens hold {budget} pieces after special tokens, not more "
                             f"than stride={self.stride}; lower stride or raise max_length")
        continuation = self._continuation_ids()
        rows: list[dict[str, Any]] = []
        for j, (text, pieces) in enumerate(zip(texts, encoder.tokenize(texts) if texts else [])):
            owners = td.piece_words(pieces.offsets, word_spans[j])
            first = [k for k, w in enumerate(owners) if w >= 0 and (k == 0 or owners[k - 1] != w)]
            is_first = np.zeros(len(owners), dtype=bool)
            is_first[first] = True
            for a, b in _windows(len(pieces.ids), budget, self.stride):
                model_input = encoder.build_inputs(TokenizedText(pieces.ids[a:b], pieces.offsets[a:b]))
                positions = [p for p, s in enumerate(model_input.sequence_ids) if s == 0]  # piece a + i sits here
                word_at = np.full(len(model_input), -1, dtype=np.int64)  # (L,) word whose first piece is here
                room = np.full(len(model_input), -1, dtype=np.int64)  # (L,) context on the shorter side
                for i, p in enumerate(positions):
                    if is_first[a + i]:
                        word_at[p], room[p] = owners[a + i], min(i, b - a - 1 - i)
                model_input.extras.update(word_at=word_at, room=room)
                row = {"input": model_input, "row_index": len(rows), "example_index": j}
                if tags is not None:
                    labels = np.full(len(model_input), td.IGNORE, dtype=np.int64)
                    for i, p in enumerate(positions):
                        w = owners[a + i]
                        if w >= 0 and (is_first[a + i] or self.label_all_pieces):
                            labels[p] = tags[j][w] if is_first[a + i] else continuation[tags[j][w]]
                    row["labels"], row["word_tags"] = labels, tags[j]
                rows.append(row)
        return rows

    def _window_length(self, encoder: TextEncoder) -> int:
        if self.max_length is not None and self.max_length > encoder.max_length:
            raise ValueError(f"max_length={self.max_length} is longer than the encoder's maximum of "
                             f"{encoder.max_length} tokens; use max_length <= {encoder.max_length} or None")
        return self.max_length or encoder.max_length

    def _continuation_ids(self) -> list[int]:
        """For each tag id, the tag a word's later pieces train on: B-X -> I-X when I-X exists."""
        names = self._tags or []
        return [names.index("I-" + t[2:]) if t.startswith("B-") and "I-" + t[2:] in names else i
                for i, t in enumerate(names)] or list(range(self.num_labels))

    def _tag_ids(self, tags: Any, n_words: int, row: int, column: str) -> list[int]:
        if not isinstance(tags, (list, tuple)) or len(tags) != n_words:
            raise ValueError(f"column {column!r} row {row}: expected a list of {n_words} tags (one per word), "
                             f"got {tags!r:.80}")
        ids = []
        for tag in tags:
            if self._tags is not None and isinstance(tag, str):
                if tag not in self._tags:
                    raise ValueError(f"column {column!r} row {row}: tag {tag!r} is not one of the model's "
                                     f"labels {self._tags}")
                ids.append(self._tags.index(tag))
            elif isinstance(tag, (int, np.integer)) and not isinstance(tag, bool) and 0 <= tag < self.num_labels:
                ids.append(int(tag))
            else:
                raise ValueError(f"column {column!r} row {row}: tag {tag!r} is neither a label name nor an id "
                                 f"in 0..{self.num_labels - 1}")
        return ids

    def collate(self, encoder: Encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = encoder.collate([r["input"] for r in rows])
        if "labels" in rows[0]:
            length = batch["input_ids"].shape[1]  # the padded length (pad_to_multiple_of may round it up)
            labels = torch.full((len(rows), length), td.IGNORE, dtype=torch.long)  # (B, L)
            for i, r in enumerate(rows):
                labels[i, : len(r["labels"])] = torch.from_numpy(r["labels"])
            batch["labels"] = labels
        batch["row_index"] = torch.tensor([r["row_index"] for r in rows], dtype=torch.long)
        return batch

    # ----- from window logits to word tags -----------------------------------------------------

    def word_log_probs(self, rows: Sequence[dict[str, Any]], logits: Sequence[np.ndarray],
                       n_words: Sequence[int]) -> list[np.ndarray]:
        """Per example (W, C) log-probabilities, each word from its best-context window; pieceless words are O."""
        o = self._tags.index("O") if self._tags and "O" in self._tags else 0
        filler = np.full(self.num_labels, np.log(1e-6))
        filler[o] = 0.0
        out = [np.tile(filler, (n, 1)) for n in n_words]
        best = [np.full(n, -1) for n in n_words]
        for row, row_logits in zip(rows, logits):
            j, extras = row["example_index"], row["input"].extras
            positions = np.flatnonzero(extras["word_at"] >= 0)
            words, room = extras["word_at"][positions], extras["room"][positions]
            better = room > best[j][words]
            best[j][words[better]] = room[better]
            out[j][words[better]] = td.log_softmax(row_logits[positions[better]].astype(np.float64))
        return out

    def decode_words(self, log_probs: list[np.ndarray], constrained: bool | None = None) -> list[np.ndarray]:
        constrained = self.constrained if constrained is None else constrained
        return [td.decode(lp, self._tags, constrained) for lp in log_probs]

    def _names(self, ids: np.ndarray) -> list[str]:
        return [self._tags[i] if self._tags else str(i) for i in ids]

    def metric_names(self) -> tuple[str, ...]:
        if self._tags is None or not td.is_iob2(self._tags):
            return ("token_accuracy",)
        kinds = sorted({tag[2:] for tag in self._tags if tag != "O"})
        per_kind = tuple(f"{score}_{kind}" for kind in kinds for score in ("f1", "precision", "recall", "support"))
        return self.report_metrics + ("viterbi_f1", "argmax_f1") + per_kind

    def compute_metrics(self, rows, outputs, dataset) -> dict[str, float]:
        if "word_tags" not in rows[0]:
            raise ValueError("the evaluation data has no tags column, so there is nothing to score against; "
                             "pass tags_column= naming the column with the word tags")
        gold_ids = {r["example_index"]: r["word_tags"] for r in rows}
        gold = [self._names(gold_ids[j]) for j in range(len(gold_ids))]
        log_probs = self.word_log_probs(rows, outputs["logits"], [len(g) for g in gold])
        entity_level = self._tags is not None and td.is_iob2(self._tags)
        decoded = {c: [self._names(p) for p in self.decode_words(log_probs, c)] for c in (True, False)}
        metrics = td.tagging_metrics(gold, decoded[bool(self.constrained)], entity_level)
        if entity_level:
            for constrained, name in ((True, "viterbi"), (False, "argmax")):
                metrics[f"{name}_f1"] = td.tagging_metrics(gold, decoded[constrained], True)["f1"]
        return metrics

    # ----- the task around the head ----------------------------------------------------------------

    @classmethod
    def for_run(cls, config: Any, train: Any) -> tuple["TokenClassificationHead", list[str]]:
        labels = tag_names(train["tags"])
        return cls(labels=labels, lstm_hidden=getattr(config, "lstm_hidden", None)), labels

    @classmethod
    def run_columns(cls, dataset: Any) -> dict[str, str]:
        return {"tokens_column": "tokens", "tags_column": "tags"}

    def predictions_record(self, model: Any, dataset: Any, batch_size: int) -> dict[str, Any]:
        rows = self.prepare(model.encoder, dataset, train=False)
        log_probs = self.word_log_probs(rows, _row_logits(model, self, rows, batch_size),
                                        [len(t) for t in dataset["tags"]])
        return {"labels": self._tags, "references": [list(t) for t in dataset["tags"]],
                "predictions": [self._names(p) for p in self.decode_words(log_probs)]}

    @classmethod
    def prediction_breakdown(cls, predictions: dict[str, Any], where: Any) -> dict[str, Any]:
        """Per entity type: strict-span precision, recall, F1 (seqeval), and the entity-type confusion."""
        references, predicted = predictions.get("references"), predictions.get("predictions")
        if not isinstance(references, list) or not isinstance(predicted, list) or len(references) != len(predicted):
            raise ValueError(f"{where} needs 'references' and 'predictions': equally long lists of tag lists")
        scores = td.tagging_metrics(references, predicted, entity_level=True)
        types, matrix = td.entity_confusion(references, predicted)
        return {"unit": "entity type", "labels": types,
                **{key: [100.0 * scores.get(f"{key}_{kind}", 0.0) for kind in types]
                   for key in ("precision", "recall", "f1")},
                "support": [int(scores.get(f"support_{kind}", 0)) for kind in types],
                "confusion_labels": [*types, "O"], "confusion_matrix": matrix.tolist()}

    def predict(self, model: Any, inputs: Sequence[str], batch_size: int = 32, head: str | None = None
                ) -> list[list[dict[str, Any]]]:
        """Entity spans per raw text: [{"entity", "text", "start", "end", "score"}] with character offsets."""
        from ..encoders.base import check_texts

        texts = check_texts(inputs, "texts")
        split = [td.split_words(t) for t in texts]
        joined = [td.join_words(words) for words, _ in split]
        rows = self.rows_for(model.encoder, [t for t, _ in joined], [s for _, s in joined], None)
        log_probs = self.word_log_probs(rows, _row_logits(model, self, rows, batch_size, head),
                                        [len(words) for words, _ in split])
        results = []
        for text, (_, spans), lp, ids in zip(texts, split, log_probs, self.decode_words(log_probs)):
            chosen = np.exp(lp[np.arange(len(ids)), ids]) if len(ids) else np.zeros(0)
            results.append(td.entity_spans(self._names(ids), chosen, spans, text))
        return results

    def describe_prediction(self, text: Any, prediction: Any) -> dict[str, Any]:
        return {"text": text, "entities": prediction}


@torch.inference_mode()
def _row_logits(model: Any, head: TokenClassificationHead, rows: list[dict], batch_size: int,
                name: str | None = None) -> list[np.ndarray]:
    """Each row's (L_i, C) logits, in row order, with the model in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    device = model.encoder.device
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = {k: v.to(device) for k, v in head.collate(model.encoder, chunk).items() if k != "labels"}
            logits = model(batch, head=name)["logits"].float().cpu().numpy()  # (B, L, C)
            out.extend(logits[i, : len(r["input"])] for i, r in enumerate(chunk))
    finally:
        model.train(was_training)
    return out


def _checked_words(words: Any, row: int, column: str) -> list[str]:
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"column {column!r} row {row}: expected a list of words (strings), got {words!r:.80}")
    return list(words)


def tag_names(tag_lists: Sequence[Sequence[str]]) -> list[str]:
    """The tag set of a training split in a stable order: O first, then by entity type, B- before I-."""
    found = {str(t) for tags in tag_lists for t in tags}
    return sorted(found, key=lambda t: (t != "O", t[2:] if t[:2] in ("B-", "I-") else t, t))
