"""Self-training for domain adaptation: the source model labels the target, then trains on its surest guesses.

A classic strong baseline under domain shift (Ruder & Plank 2018 evaluate it on these Amazon
reviews). Round 0 fits on the labelled source alone. Each later round predicts the unlabelled
target, keeps the most confident ``fraction`` of the rows predicted for each class (class-balanced,
as in CBST, Zou et al. 2018: a class the source favours cannot swamp the rest) and fits a fresh
model on source + those pseudo-labelled rows. The fraction grows round by round, so the model
first learns from the target rows it is surest of. With ``make_objective`` (e.g. ``MMD``) every fit
also aligns the source and target features, as the objective does on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..fewshot.zero_shot import select_pseudo_labels

DEFAULT_FRACTIONS = (0.2, 0.4, 0.6)


@dataclass
class SelfTrainingResult:
    model: Any  # the TransferModel of the last round
    rounds: list[dict] = field(default_factory=list)  # per round: fraction, pseudo_rows, pseudo_accuracy
    fit: Any = None  # the last round's FitResult


def self_training(new_model: Callable[[], Any], labelled: Mapping[str, Sequence[Any]], target_texts: Sequence[str],
                  fractions: Sequence[float] = DEFAULT_FRACTIONS, true_labels: Sequence[Any] | None = None,
                  predict_batch_size: int = 256, make_objective: Callable[[], Any] | None = None,
                  final_fit_options: Mapping[str, Any] | None = None, **fit_options: Any) -> SelfTrainingResult:
    """Fit ``new_model()`` on ``labelled``, then once per fraction on labelled + pseudo-labelled target rows.

    ``new_model``: returns a fresh, untrained ``TransferModel`` with a classification head (called
    once per round, so no round inherits the last one's weights). ``labelled``: a dict of columns
    or a ``datasets.Dataset`` with ``text`` and ``label``. ``true_labels`` (the target's, in the same
    form as the source labels; never used for training) only reports how accurate each round's
    pseudo-labels were. ``make_objective``: returns a fresh source/target
    objective (``DANN``, ``CORAL``, ``MMD``) for each fit, which then trains on ``{"source": labelled
    + pseudo-labelled rows, "target": target_texts}``. ``fit_options`` go to every ``nlptl.fit`` call;
    ``final_fit_options`` override them for the last one (the CLI gives only it the run directory).
    """
    from .. import fit

    columns = list(getattr(labelled, "column_names", None) or labelled)
    for column in ("text", "label"):
        if column not in columns:
            raise ValueError(f"labelled has no {column!r} column (it has {columns}); give text and label")
    source_texts, source_labels = list(labelled["text"]), list(labelled["label"])
    texts = list(target_texts)
    if not texts:
        raise ValueError("target_texts is empty: self-training needs unlabelled target texts to label")
    fractions = [float(p) for p in fractions]
    bad = [p for p in fractions if not 0.0 < p <= 1.0]
    if bad or not fractions:
        raise ValueError(f"fractions={list(fractions)}: give one or more shares of the target in (0, 1]")
    if true_labels is not None and len(true_labels) != len(texts):
        raise ValueError(f"true_labels has {len(true_labels)} rows but target_texts {len(texts)}; give one per text")

    def train(rows: dict, last: bool) -> tuple[Any, Any]:
        model = new_model()
        options = {**fit_options, **(final_fit_options or {})} if last else fit_options
        if make_objective is None:
            return model, fit(model, rows, **options)
        return model, fit(model, {"source": rows, "target": {"text": texts}}, objective=make_objective(), **options)

    model, result = train({"text": source_texts, "label": source_labels}, last=False)
    names = model.labels or list(range(model.head.num_labels))
    as_names = bool(source_labels) and isinstance(source_labels[0], str)  # pseudo-labels in the source's form
    rounds = []
    for n, fraction in enumerate(fractions, 1):
        _, probs = model.predict(texts, batch_size=predict_batch_size, return_probabilities=True)  # (N, C)
        if len(np.unique(probs.argmax(1))) < 2:
            raise ValueError(f"self-training round {n}: the model predicts one class for all {len(texts)} target "
                             "texts, so there is nothing to pseudo-label both ways; train longer (epochs), check "
                             "that the target texts are the task's kind, or use another adaptation")
        # log-probabilities at temperature 1: select_pseudo_labels' softmax gives back the probabilities
        rows, ids = select_pseudo_labels(np.log(np.clip(probs, 1e-12, None)), top_fraction=fraction, temperature=1.0)
        pseudo = [names[j] if as_names else int(j) for j in ids]
        agreement = None
        if true_labels is not None:
            agreement = float(np.mean([str(true_labels[i]) == str(p) for i, p in zip(rows, pseudo)]))
        rounds.append({"fraction": fraction, "pseudo_rows": int(len(rows)), "pseudo_accuracy": agreement})
        model, result = train({"text": source_texts + [texts[i] for i in rows], "label": source_labels + pseudo},
                              last=n == len(fractions))
    model.eval()
    return SelfTrainingResult(model, rounds, result)
