"""``ContrastivePairs``: SetFit-style contrastive fine-tuning and the head, in one ``fit`` call.

SetFit (Tunstall et al. 2022) first tunes a sentence encoder so that same-class pairs are close
(cosine 1) and different-class pairs far apart (cosine 0), then fits a head on the tuned
embeddings. Here both happen together: each step encodes one labelled batch *once*, draws pairs
among its members, and adds SetFit's cosine-similarity loss on the pooled features to the head's
cross-entropy on the same features. Pairs are index pairs into that batch, so a pair costs no
extra encoder pass, and their number is bounded per example rather than growing as n².
"""
from __future__ import annotations

from typing import Any, Mapping

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
                 head_weight: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if isinstance(pairs_per_example, bool) or not isinstance(pairs_per_example, int) or pairs_per_example < 2:
            raise ValueError(f"pairs_per_example={pairs_per_example!r}: need an int >= 2 (one positive, one negative)")
        if max_pairs is not None and (not isinstance(max_pairs, int) or max_pairs < 2):
            raise ValueError(f"max_pairs={max_pairs!r}: need an int >= 2, or None for no per-step cap")
        for name, value in (("pair_weight", pair_weight), ("head_weight", head_weight)):
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"ContrastivePairs {name}={value!r}: must be a finite number >= 0")
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

    def config(self) -> dict[str, Any]:
        return {"pairs_per_example": self.pairs_per_example, "max_pairs": self.max_pairs,
                "pair_weight": self.pair_weight, "head_weight": self.head_weight, "seed": self.seed}
