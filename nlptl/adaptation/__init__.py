"""Domain adaptation and instance transfer: learn from a labelled source for an unlabelled target.

Objectives for ``nlptl.fit(model, {"source": labelled, "target": texts}, ...)``: ``DANN``,
``CORAL``, ``MMD``; ``coral_transform`` is CORAL's closed form on frozen features. Instance
transfer: ``importance_weights`` (domain classifier or KMM) for
``fit(..., weight_column=...)``, ``TrAdaBoost`` for a few target labels. ``domain_adaptive_pretraining``
continues masked-LM training on target text; ``self_training`` fits on the target's confident
pseudo-labels; ``domain_distance`` says how far apart two domains are.
"""
from __future__ import annotations

from typing import Any

from .alignment import CORAL, MMD, coral_distance, coral_transform, mk_mmd
from .dann import DANN, DomainDiscriminator, reverse_gradient, warm_up
from .dapt import DAPTResult, domain_adaptive_pretraining, masked_lm_for
from .distance import domain_distance
from .paired import SourceTargetObjective
from .self_training import SelfTrainingResult, self_training
from .table import FeatureTableEncoder
from .tradaboost import TrAdaBoost
from .weights import effective_sample_size, importance_weights

#: the objectives ``--adaptation`` names (importance / kmm are weights, not objectives: see weights_for;
#: self_training is rounds of fits on pseudo-labels: see ``self_training``)
OBJECTIVES = {"dann": DANN, "coral": CORAL, "mmd": MMD}
WEIGHTINGS = {"importance": "classifier", "kmm": "kmm"}
ADAPTATIONS = (*OBJECTIVES, *WEIGHTINGS, "self_training")


def objective_for(name: str, **options: Any) -> SourceTargetObjective:
    """The objective an ``--adaptation`` name stands for, e.g. ``objective_for("dann", trade_off=0.5)``."""
    if name not in OBJECTIVES:
        hint = " (it is a weighting: use weights_method_for)" if name in WEIGHTINGS else ""
        raise ValueError(f"unknown adaptation objective {name!r}{hint}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](**options)


def weights_method_for(name: str) -> str:
    """``importance_weights``'s method for an ``--adaptation`` weighting name ("importance" -> "classifier")."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown adaptation weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name]


__all__ = ["DANN", "CORAL", "MMD", "SourceTargetObjective", "DomainDiscriminator", "reverse_gradient", "warm_up",
           "coral_distance", "coral_transform", "mk_mmd", "importance_weights", "effective_sample_size", "TrAdaBoost",
           "domain_distance", "domain_adaptive_pretraining", "self_training", "SelfTrainingResult", "masked_lm_for",
           "DAPTResult", "FeatureTableEncoder", "objective_for", "weights_method_for", "OBJECTIVES", "WEIGHTINGS",
           "ADAPTATIONS"]
