"""Zero-shot classification from label names, and self-training a head on its confident guesses.

``zero_shot`` embeds each label through a template ("This news article is about {}.") with the
same encoder as the texts and picks the label whose embedding is nearest in cosine: no labelled
example at all. ``self_train`` then keeps the most confident guesses per class on unlabelled
texts as pseudo-labels and trains a head on them with ``nlptl.fit``: the head learns from the
texts' own feature geometry, which a single template embedding per class cannot capture.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..encoders.base import Encoder

DEFAULT_TEMPLATE = "This news article is about {}."


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def label_embeddings(encoder: Encoder, labels: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE,
                     descriptions: Mapping[str, str | Sequence[str]] | None = None,
                     pooling: str = "mean") -> np.ndarray:
    """(C, D) unit vectors: each label's template sentence(s), averaged over its descriptions.

    ``descriptions`` maps a label to the word(s) put into the template instead of its name,
    e.g. {"Sci/Tech": ["science", "technology"]}; several are averaged (a prompt ensemble), and so
    are several templates when ``template`` is a list.
    """
    sentences = label_sentences(labels, template, descriptions)
    vectors = _unit(encoder.encode(sentences["text"], pooling=pooling))  # (sum of descriptions, D)
    owner = np.asarray([list(labels).index(label) for label in sentences["label"]])
    return _unit(np.stack([vectors[owner == c].mean(0) for c in range(len(labels))]))  # (C, D)


def label_sentences(labels: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE,
                    descriptions: Mapping[str, str | Sequence[str]] | None = None) -> dict[str, list[str]]:
    """{"text": the template(s) filled with each label's description(s), "label": whose it is}.

    The sentences ``label_embeddings`` averages; as rows they are labelled examples too, e.g.
    "This movie review is great." -> positive, which a few-shot fit can train on beside the shots.
    ``template`` may be a list ("This movie review is {}.", "The movie is {}."): every template is
    filled with every description, so each label gets templates x descriptions sentences.
    """
    templates = [template] if isinstance(template, str) else list(template)
    if not templates:
        raise ValueError("template is an empty list: give at least one template with '{}' where the label goes")
    for one in templates:
        if not isinstance(one, str) or "{}" not in one:
            raise ValueError(f"template {one!r} has no '{{}}' where the label goes")
    descriptions = dict(descriptions or {})
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ValueError(f"descriptions name label(s) {unknown} that are not in labels={list(labels)}")
    rows: dict[str, list[str]] = {"text": [], "label": []}
    for label in labels:
        words = descriptions.get(label, label)
        words = [words] if isinstance(words, str) else list(words)
        if not words:
            raise ValueError(f"descriptions[{label!r}] is empty: give at least one word, or leave the label out "
                             "to use its name")
        for one in templates:
            for word in words:
                rows["text"].append(one.replace("{}", word))  # not format(): other braces stay as written
                rows["label"].append(label)
    return rows


def add_label_sentences(dataset: Any, template: str | Sequence[str] = DEFAULT_TEMPLATE,
                        descriptions: Mapping[str, str | Sequence[str]] | None = None) -> Any:
    """A ``datasets.Dataset`` (``text`` + ``ClassLabel`` ``label``) with ``label_sentences`` appended as rows.

    Every label's template sentence(s) becomes one labelled example: with eight shots a class,
    "This movie review is great." -> positive is worth several more (``--label-examples`` in
    ``recipes/few_shot.py``; ``label_template=`` in a run).
    """
    import datasets

    names = getattr(dataset.features.get("label"), "names", None)
    if names is None:
        raise ValueError("label sentences need a classification dataset whose 'label' column is a ClassLabel "
                         "with names (what nlptl.data loaders return)")
    if set(dataset.column_names) != {"text", "label"}:
        raise ValueError(f"label sentences are single texts; this dataset has columns {dataset.column_names} "
                         "(only 'text' and 'label' can take them)")
    rows = label_sentences(names, template, descriptions)
    extra = {"text": rows["text"], "label": [names.index(label) for label in rows["label"]]}
    return datasets.concatenate_datasets([dataset, datasets.Dataset.from_dict(extra, features=dataset.features)])


def centring_vector(encoder: Encoder, center_on: Sequence[str] | np.ndarray, dim: int,
                    batch_size: int = 64) -> np.ndarray:
    """(D,) mean unit feature of unlabelled texts (a list of strings, or their features (M, D))."""
    if isinstance(center_on, np.ndarray):
        feats = center_on
        if feats.ndim != 2 or feats.shape[1] != dim:
            raise ValueError(f"center_on has shape {feats.shape}; pass features (M, {dim}) from the same "
                             "encoder, or the unlabelled texts themselves")
    else:
        texts = list(center_on)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("center_on must be a non-empty list of unlabelled texts or their features (M, D)")
        feats = encoder.encode(texts, batch_size=batch_size)
    if len(feats) == 0:
        raise ValueError("center_on is empty: pass some unlabelled texts from the domain being classified")
    return _unit(feats).mean(0)


def zero_shot(encoder: Encoder, texts: Sequence[str], labels: Sequence[str],
              template: str | Sequence[str] = DEFAULT_TEMPLATE,
              descriptions: Mapping[str, str | Sequence[str]] | None = None, return_scores: bool = False,
              batch_size: int = 64, text_features: np.ndarray | None = None,
              center_on: Sequence[str] | np.ndarray | None = None) -> Any:
    """Predicted label names for ``texts``; with ``return_scores=True`` also the cosines (N, C).

    ``text_features`` (N, D) reuses features already computed with ``encoder.encode(texts)``.
    ``center_on``: unlabelled texts from the same domain (or their features, (M, D)). Their mean
    feature is subtracted from each text's before the cosine, which removes the component every
    sentence embedding shares; for the prediction this is the same as subtracting each label's
    mean cosine over those texts, so a label whose template sits nearer the whole cloud no longer
    takes most predictions. Chosen on held-out training rows (+1.9 points averaged over SST-2,
    AG News and Amazon books: ``benchmarks/few_shot/tune_zero_shot_calibration.py``).
    """
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels={labels}: need at least 2 distinct label names")
    keys = label_embeddings(encoder, labels, template, descriptions)  # (C, D)
    if text_features is None:
        text_features = encoder.encode(list(texts), batch_size=batch_size)  # (N, D)
    text_features = _unit(text_features)
    if center_on is not None:
        text_features = _unit(text_features - centring_vector(encoder, center_on, keys.shape[1], batch_size))
    scores = text_features @ keys.T  # (N, C) cosine similarities
    predicted = [labels[j] for j in scores.argmax(1)]
    return (predicted, scores) if return_scores else predicted


def check_selection(top_fraction: float | None, min_confidence: float | None) -> None:
    """Refuse a pseudo-label selection that cannot mean anything (a share above 1, a negative confidence)."""
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction={top_fraction!r}: expected a share in (0, 1] of each class's rows, or None")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence={min_confidence!r}: expected a probability in [0, 1], or None")


def select_pseudo_labels(scores: np.ndarray, top_fraction: float | None = 0.3,
                         min_confidence: float | None = None,
                         temperature: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, class ids) of the pseudo-labelled rows chosen from zero-shot cosines (N, C).

    Confidence is the softmax of cosine / temperature. ``top_fraction``: per predicted class, its
    most confident ``top_fraction`` of rows, then every class cut to the smallest class's count, so
    the pseudo-labelled set is balanced (a class the template favours cannot swamp the head).
    ``min_confidence`` (instead, or as well): keep only rows at or above it.
    """
    check_selection(top_fraction, min_confidence)
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected a number > 0")
    logits = scores / temperature
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)  # (N, C)
    predicted, confidence = probs.argmax(1), probs.max(1)
    keep = np.ones(len(scores), dtype=bool) if min_confidence is None else confidence >= min_confidence
    per_class = []
    for c in range(scores.shape[1]):
        rows = np.flatnonzero(keep & (predicted == c))
        rows = rows[np.argsort(-confidence[rows], kind="stable")]
        if top_fraction is not None:
            rows = rows[: int(np.ceil(top_fraction * len(rows)))]
        per_class.append(rows)
    if top_fraction is not None:
        smallest = min(len(r) for r in per_class)
        per_class = [r[:smallest] for r in per_class]
    chosen = np.sort(np.concatenate(per_class)).astype(int)
    if len(chosen) == 0 or len({int(predicted[i]) for i in chosen}) < 2:
        raise ValueError("self-training found pseudo-labels for fewer than 2 classes: lower min_confidence, "
                         "raise top_fraction, or give more unlabelled texts")
    return chosen, predicted[chosen]


@dataclass
class SelfTrainResult:
    model: Any  # the TransferModel with the trained head
    pseudo_rows: int  # how many unlabelled texts were pseudo-labelled
    pseudo_accuracy: float | None  # their agreement with true labels, when given (diagnostic only)
    fit: Any = None  # the FitResult
    per_class: dict[str, int] = field(default_factory=dict)


def self_train(encoder: Encoder, unlabelled_texts: Sequence[str], labels: Sequence[str],
               template: str | Sequence[str] = DEFAULT_TEMPLATE,
               descriptions: Mapping[str, str | Sequence[str]] | None = None, top_fraction: float | None = 0.3,
               min_confidence: float | None = None, head: Any = None,
               true_labels: Sequence[str] | None = None, center: bool = True,
               text_features: np.ndarray | None = None, **fit_options: Any) -> SelfTrainResult:
    """Zero-shot pseudo-labels on ``unlabelled_texts``, then a head trained on them with ``nlptl.fit``.

    ``center=True`` scores them centred on their own mean feature (``zero_shot``'s ``center_on``).
    ``text_features`` (N, D) reuses features already computed with ``encoder.encode(unlabelled_texts)``.

    Default: a ClassificationHead on the frozen encoder (``strategy="feature_extraction"``, whose
    features ``fit`` caches), 20 epochs; any ``fit`` option overrides. ``true_labels`` (never used
    for training) only reports how accurate the pseudo-labels were.
    """
    from .. import TransferModel, fit
    from ..heads import ClassificationHead

    check_selection(top_fraction, min_confidence)  # before the encoder runs over every text
    labels = list(labels)
    texts = list(unlabelled_texts)
    features = encoder.encode(texts) if text_features is None else text_features  # (N, D)
    _, scores = zero_shot(encoder, texts, labels, template, descriptions, return_scores=True,
                          text_features=features, center_on=features if center else None)
    rows, ids = select_pseudo_labels(scores, top_fraction, min_confidence)
    data = {"text": [texts[i] for i in rows], "label": [labels[j] for j in ids]}
    model = TransferModel(encoder, head if head is not None else ClassificationHead(len(labels)), labels=labels)
    options = {"strategy": "feature_extraction", "epochs": 20, "batch_size": 32, "head_learning_rate": 3e-3,
               "progress": False, **fit_options}
    result = fit(model, data, **options)
    model.eval()
    agreement = None
    if true_labels is not None:
        agreement = float(np.mean([str(true_labels[i]) == labels[j] for i, j in zip(rows, ids)]))
    counts = {labels[c]: int((ids == c).sum()) for c in range(len(labels))}
    return SelfTrainResult(model, len(rows), agreement, result, counts)
