"""``TrAdaBoost`` (Dai et al., ICML 2007): boosting for transfer when a few target labels exist.

Each round fits a weighted base learner on source + target rows. A misclassified *target* row
gains weight (AdaBoost), a misclassified *source* row loses weight by the fixed factor
1 / (1 + sqrt(2 ln n_s / N)): source rows that disagree with the target task fade out. The
prediction is the weighted vote of the learners of the second half of the rounds.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone


class TrAdaBoost(ClassifierMixin, BaseEstimator):
    """``fit(X_source, y_source, X_target, y_target)`` then ``predict(X)``; any sklearn classifier with
    sample_weight."""

    def __init__(self, estimator: Any = None, n_estimators: int = 20) -> None:
        self.estimator, self.n_estimators = estimator, n_estimators

    def fit(self, x_source: np.ndarray, y_source: np.ndarray, x_target: np.ndarray,
            y_target: np.ndarray) -> "TrAdaBoost":
        from sklearn.linear_model import LogisticRegression

        if self.n_estimators < 2:
            raise ValueError(f"n_estimators={self.n_estimators}: TrAdaBoost votes with the second half, give >= 2")
        x = np.concatenate([x_source, x_target])
        y = np.concatenate([y_source, y_target])
        n_s = len(x_source)
        self.classes_ = np.unique(y)
        weights = np.ones(len(x)) / len(x)
        beta_source = 1.0 / (1.0 + math.sqrt(2.0 * math.log(n_s) / self.n_estimators))
        self.learners_, self.betas_ = [], []
        base = self.estimator if self.estimator is not None else LogisticRegression(max_iter=1000)
        for _ in range(self.n_estimators):
            p = weights / weights.sum()
            learner = clone(base).fit(x, y, sample_weight=p * len(x))
            wrong = (learner.predict(x) != y).astype(float)
            error = float((p[n_s:] * wrong[n_s:]).sum() / p[n_s:].sum())  # error on the target rows only
            error = min(max(error, 1e-10), 0.499)  # keep beta_t in (0, 1), as the paper requires
            beta_target = error / (1.0 - error)
            weights[:n_s] *= beta_source ** wrong[:n_s]
            weights[n_s:] *= beta_target ** -wrong[n_s:]
            self.learners_.append(learner)
            self.betas_.append(beta_target)
        return self

    def decision_scores(self, x: np.ndarray) -> np.ndarray:
        """(N, classes) votes of the second-half learners, each weighted by ln(1 / beta_t)."""
        half = len(self.learners_) // 2
        scores = np.zeros((len(x), len(self.classes_)))
        for learner, beta in zip(self.learners_[half:], self.betas_[half:]):
            predicted = learner.predict(x)
            scores[np.arange(len(x)), np.searchsorted(self.classes_, predicted)] += math.log(1.0 / beta)
        return scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_scores(x).argmax(1)]
