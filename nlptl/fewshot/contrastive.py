"""``ContrastivePairs``: SetFit-style contrastive fine-tuning and the head, in one ``fit`` call.

SetFit (Tunstall et al. 2022) first tunes a sentence encoder so that same-class pairs are close
(cosine 1) and different-class pairs far apart (cosine 0), then fits a head on the tuned
embeddings. Here both happen together: each step encodes one labelled batch *once*, draws pairs
among its members, and adds SetFit's cosine-similarity loss on the pooled features to the head's
cross-entropy on the same features. Pairs are index pairs into that batch, so a pair costs no
extra encoder pass, and their number is bounded per example rather than growing as n².

After the last epoch (``refit_head``, on by default for a plain linear head) the head's classifier is refitted as
SetFit fits its head: scikit-learn's ``LogisticRegression`` to convergence on the tuned encoder's
features of the training rows, still inside the same ``fit`` call. A few optimizer steps leave a
jointly trained head short of that optimum; on SST-2 at 8 shots the refit adds a point or so.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..objectives.base import Objective, TrainStep, weighted_mean


def sample_pairs(labels: torch.Tensor, pairs_per_example: int, max_pairs: int | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(left, right, target) index pairs within one batch: balanced, seeded by ``generator``, bounded.

    Each anchor i gets ``m_i = min(pairs_per_example // 2, #same-class others, #other-class)``
    positives and as many negatives, drawn without replacement, so every anchor contributes as many
    positive as negative pairs; an anchor alone in its class (or a one-class batch) gets none.
    At most ``min(B * pairs_per_example, max_pairs)`` pairs come back for a batch of B labels.
    """
    labels = labels.reshape(-1).cpu()  # (B,)
    batch = len(labels)
    same = labels[:, None] == labels[None, :]  # (B, B)
    same.fill_diagonal_(False)
    other = labels[:, None] != labels[None, :]  # (B, B)
    scores = torch.rand((batch, batch), generator=generator)  # (B, B) random order of partners
    half = pairs_per_example // 2
    left, right, target = [], [], []
    for i in range(batch):
        m = min(half, int(same[i].sum()), int(other[i].sum()))
        if m == 0:
            continue
        for mask, value in ((same[i], 1.0), (other[i], 0.0)):
            partners = torch.where(mask, scores[i], torch.tensor(-1.0)).topk(m).indices  # (m,)
            left.append(torch.full((m,), i))
            right.append(partners)
            target.append(torch.full((m,), value))
    if not left:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    left_t, right_t, target_t = torch.cat(left), torch.cat(right), torch.cat(target)  # (P,) each
    if max_pairs is not None and len(left_t) > max_pairs:
        # Keep a balanced subset: the same number of positives and negatives, chosen at random.
        keep = []
        for value in (1.0, 0.0):
            idx = torch.nonzero(target_t == value).reshape(-1)
            keep.append(idx[torch.randperm(len(idx), generator=generator)[: max_pairs // 2]])
        keep_t = torch.cat(keep)
        left_t, right_t, target_t = left_t[keep_t], right_t[keep_t], target_t[keep_t]
    return left_t, right_t, target_t


# Training settings that suit a few contrastive steps on a handful of rows (the CLI's defaults for
# --method contrastive; recipes/few_shot.py explains how they were chosen on held-out training rows).
FEW_SHOT_DEFAULTS = {"epochs": 8, "learning_rate": 1e-4, "head_learning_rate": 1e-2}


class ContrastivePairs(Objective):
    """Cosine-similarity pair loss on the pooled features plus the head's cross-entropy, per step.

    loss = pair_weight * mean_pairs (cos(f_i, f_j) - y_ij)^2 + head_weight * CE(head(f))

    with y_ij = 1 for same-class pairs, 0 otherwise (SetFit's ``CosineSimilarityLoss``).

    Pair budget (why it cannot explode): pairs are drawn *inside each training batch*, at most
    ``pairs_per_example`` per anchor (half positive, half negative; see ``sample_pairs``) and at
    most ``max_pairs`` per step. A run therefore scores at most
    ``epochs * min(n * pairs_per_example, steps_per_epoch * max_pairs)`` pairs, linear in the number
    of examples n, and memory per step is one batch of features, whatever n is. No pair list is
    ever materialised over the whole data set (SetFit's ``sample_pairs`` is quadratic in n).
    The pair draw of step t is seeded by ``(seed, t)``, so a resumed run draws the same pairs.

    ``batch_size`` of ``fit`` decides which examples can pair: keep it at least a few times the
    number of classes (for 8 shots, the whole support set in one batch works well).
    """

    def __init__(self, pairs_per_example: int = 20, max_pairs: int | None = 2048, pair_weight: float = 1.0,
                 head_weight: float = 1.0, seed: int = 0, refit_head: bool | None = None, refit_c: float = 1.0) -> None:
        super().__init__()
        if isinstance(pairs_per_example, bool) or not isinstance(pairs_per_example, int) or pairs_per_example < 2:
            raise ValueError(f"pairs_per_example={pairs_per_example!r}: need an int >= 2 (one positive, one negative)")
        if max_pairs is not None and (not isinstance(max_pairs, int) or max_pairs < 2):
            raise ValueError(f"max_pairs={max_pairs!r}: need an int >= 2, or None for no per-step cap")
        for name, value in (("pair_weight", pair_weight), ("head_weight", head_weight)):
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"ContrastivePairs {name}={value!r}: must be a finite number >= 0")
        if refit_head is not None and not isinstance(refit_head, bool):
            raise ValueError(f"refit_head={refit_head!r}: pass True, False or None (refit the heads that can be)")
        if isinstance(refit_c, bool) or not isinstance(refit_c, (int, float)) or not 0 < refit_c < float("inf"):
            raise ValueError(f"refit_c={refit_c!r}: the inverse regularisation strength must be a finite number > 0")
        self.refit_head, self.refit_c = refit_head, float(refit_c)
        self.pairs_per_example, self.max_pairs = pairs_per_example, max_pairs
        self.pair_weight, self.head_weight, self.seed = float(pair_weight), float(head_weight), seed

    def loss(self, model: nn.Module, batches: Mapping[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        total, logged = None, {}
        for offset, (source, batch) in enumerate(sorted(batches.items())):
            out = model(batch, head=model.head_for(source))
            if "losses" not in out or "features" not in out:
                raise ValueError(f"source {source!r}: ContrastivePairs needs labelled batches and a head that "
                                 "returns pooled 'features' (e.g. ClassificationHead)")
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step.global_step * 101 + offset)
            left, right, target = sample_pairs(batch["labels"], self.pairs_per_example, self.max_pairs, generator)
            features = out["features"]  # (B, D)
            if len(left):
                device = features.device
                cosine = nn.functional.cosine_similarity(features[left.to(device)], features[right.to(device)])  # (P,)
                pair_loss = ((cosine - target.to(device, cosine.dtype)) ** 2).mean()
            else:
                pair_loss = features.sum() * 0.0  # no pair in this batch: the head still learns
            head_loss = weighted_mean(out["losses"], batch)
            value = self.pair_weight * pair_loss + self.head_weight * head_loss
            logged.update({f"{source}/pair_loss": float(pair_loss.detach()),
                           f"{source}/head_loss": float(head_loss.detach()), f"{source}/pairs": len(left)})
            total = value if total is None else total + value
        return total, logged

    def finish(self, model: nn.Module, sources: Mapping[str, tuple[str, list[dict[str, Any]]]]) -> bool:
        """Refit each source's linear classifier with logistic regression on the tuned features.

        ``refit_head=None`` refits every head that is a plain linear ClassificationHead and leaves
        others (a prototype head) as trained; True requires every head to be refittable.
        """
        if self.refit_head is False:
            return False
        changed = False
        for name, (head_name, rows) in sorted(sources.items()):
            if self.refit_head or refittable(model.get_head(head_name)):
                refit_classifier(model, head_name, rows, self.refit_c)
                changed = True
        return changed

    def config(self) -> dict[str, Any]:
        return {"pairs_per_example": self.pairs_per_example, "max_pairs": self.max_pairs,
                "pair_weight": self.pair_weight, "head_weight": self.head_weight, "seed": self.seed,
                "refit_head": self.refit_head, "refit_c": self.refit_c}


@torch.inference_mode()
def pooled_features(model: nn.Module, head_name: str, rows: list[dict[str, Any]],
                    batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, label ids (N,)) of prepared rows, as ``head_name`` pools them, in eval mode."""
    head = model.get_head(head_name)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        chunks = []
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in head.collate(model.encoder, rows[start : start + batch_size]).items()}
            chunks.append(model(batch, head=head_name)["features"].float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks), np.asarray([row["label"] for row in rows])


def refittable(head: nn.Module) -> bool:
    """A single-label ClassificationHead whose last layer is the only one: what logistic regression can replace."""
    from ..heads import ClassificationHead

    return (isinstance(head, ClassificationHead) and isinstance(getattr(head, "classifier", None), nn.Linear)
            and not head.hidden_size and not head.multi_label)  # a PrototypeHead (a subclass) has no linear layer


def refit_classifier(model: nn.Module, head_name: str, rows: list[dict[str, Any]], c: float = 1.0) -> None:
    """Replace a ClassificationHead's final linear layer by a logistic regression fitted on the rows' features."""
    from sklearn.linear_model import LogisticRegression

    head = model.get_head(head_name)
    if not refittable(head):
        raise ValueError(f"refit_head=True needs a single-label ClassificationHead without hidden_size (head "
                         f"{head_name!r} is {type(head).__name__}); pass ContrastivePairs(refit_head=False)")
    features, labels = pooled_features(model, head_name, rows)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"refit_head: the training rows of head {head_name!r} hold one class only")
    fitted = LogisticRegression(C=c, max_iter=1000).fit(features, labels)
    weight = np.zeros((head.num_labels, features.shape[1]), dtype=np.float32)  # (C, D)
    bias = np.full(head.num_labels, -1e4, dtype=np.float32)  # (C,): a class absent from the rows is never predicted
    if len(fitted.classes_) == 2:  # one score w.x + b for the second class: logits (0, w.x + b) give the same softmax
        bias[fitted.classes_[0]] = 0.0
        weight[fitted.classes_[1]], bias[fitted.classes_[1]] = fitted.coef_[0], fitted.intercept_[0]
    else:
        weight[fitted.classes_], bias[fitted.classes_] = fitted.coef_, fitted.intercept_
    linear = head.classifier
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight).to(linear.weight))
        linear.bias.copy_(torch.from_numpy(bias).to(linear.bias))
