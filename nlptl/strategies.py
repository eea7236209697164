"""Freezing strategies from the transfer-learning playbook, and the optimizer groups they imply.

Every strategy answers one question per epoch: *which encoder layer groups train?* The head
always trains. Groups are counted from the top (output side), as the encoder names them.

=====================  ==============================================================
feature_extraction     no encoder group trains; the encoder runs in eval mode
top_k                  the top ``top_k`` groups train, the rest are frozen (eval mode)
full                   every group trains (use a low learning rate)
gradual_unfreezing     ULMFiT: epoch 0 trains the head only, each later epoch unfreezes
                       one more group from the top (epoch e: top e groups)
lora                   LoRA adapters on the encoder's linears (all groups, or the top
                       ``top_k``) train; every pretrained weight stays frozen (nlptl/lora.py)
=====================  ==============================================================

Discriminative learning rates (``discriminative_decay=d``) work with any strategy: the top
trainable group gets ``learning_rate``, the next one down ``learning_rate * d``, then ``* d**2``...
The head gets ``head_learning_rate`` (default: ``learning_rate``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STRATEGIES = ("feature_extraction", "top_k", "full", "gradual_unfreezing", "lora")
SCHEDULES = ("linear", "slanted_triangular", "constant")
HEAD_LEARNING_RATE = 1e-3  # a new, randomly initialised head over a transformer that trains too: fast
HEAD_ONLY_LEARNING_RATE = 1e-2  # a new head over fixed features or static vectors: a few hundred steps must fit it
ENCODER_LEARNING_RATE = 5e-5  # pretrained transformer weights: slow, or fine-tuning forgets what they know
VECTORS_LEARNING_RATE = 1e-3  # trained static word vectors (one embedding table, sparse updates)
LORA_LEARNING_RATE = 5e-4  # LoRA's A and B: new, small, with B starting at zero (Hu et al. 2021 used 4e-4 to 5e-4)


@dataclass(frozen=True)
class Strategy:
    name: str
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.name!r}; choose one of {', '.join(STRATEGIES)}")
        if self.name == "top_k" and (self.top_k is None or self.top_k < 1):
            raise ValueError(f"strategy 'top_k' needs top_k >= 1, got top_k={self.top_k}")
        if self.name == "lora" and self.top_k is not None and self.top_k < 1:
            raise ValueError(f"strategy 'lora' takes top_k >= 1 (adapters on the top k groups) or None, "
                             f"got {self.top_k}")

    def validate(self, num_groups: int) -> None:
        if self.name in ("top_k", "lora") and self.top_k is not None and self.top_k > num_groups:
            raise ValueError(f"top_k={self.top_k} is larger than the encoder's {num_groups} layer groups")

    def prepare(self, model: nn.Module, config) -> None:
        """What the strategy changes in the model before training: ``lora`` adds the adapters (``config``'s lora_*)."""
        if self.name == "lora":
            from .lora import add_adapters

            add_adapters(model, config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_target_modules,
                         self.top_k)
        elif getattr(model.encoder, "lora_settings", None) is not None and self.name != "feature_extraction":
            raise ValueError(f"strategy={self.name!r}: this model carries LoRA adapters; train them with "
                             "strategy='lora' (or only a head with 'feature_extraction'), or fold them into the "
                             "weights first with nlptl.lora.merge(model) to fine-tune the weights themselves")

    def trainable_groups(self, num_groups: int, epoch: int) -> int:
        """How many encoder groups, counted from the top, train in this epoch."""
        if self.name == "feature_extraction":
            return 0
        if self.name == "top_k":
            return self.top_k
        if self.name == "full":
            return num_groups
        if self.name == "lora":  # the groups whose adapters train; every base weight stays frozen
            return num_groups if self.top_k is None else self.top_k
        return min(epoch, num_groups)  # gradual_unfreezing


def apply_freezing(model: nn.Module, n_trainable: int) -> list[str]:
    """Set ``requires_grad`` so exactly the top ``n_trainable`` encoder groups (and the head) train.

    An encoder carrying LoRA adapters trains only its adapters in those groups, never its base weights.
    Returns the names of the trainable groups, bottom to top.
    """
    groups = model.encoder.layer_groups()
    first_trainable = len(groups) - n_trainable
    adapters = None
    if getattr(model.encoder, "lora_settings", None) is not None:
        from .lora import adapter_parameters

        adapters = {id(p) for p in adapter_parameters(model.encoder)}
    for index, (_, modules) in enumerate(groups):
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(index >= first_trainable and (adapters is None or id(p) in adapters))
    for p in model.heads.parameters():
        p.requires_grad_(True)
    return [name for name, _ in groups[first_trainable:]]


def default_learning_rates(strategy: str, encoder: nn.Module, learning_rate: float | None,
                           head_learning_rate: float | None, encoder_rate: float | None = None) -> tuple[float, float]:
    """(encoder rate, head rate) with the defaults filled in to suit the strategy and encoder.

    A head over features that do not change (feature extraction) or over static vectors trains at
    1e-2: at 1e-3 the 3 default epochs on a few thousand rows leave it underfitted (GloVe feature
    extraction on 4,000 SST-2 rows: 0.568 at 1e-3, 0.687 at 1e-2), and the fine-tuning rate 2e-5
    left it near chance. Fine-tuning a transformer uses 5e-5 for its weights (or the head's
    ``encoder_rate``: 1e-4 under a token-classification head) and 1e-3 for the new head; LoRA
    adapters 5e-4 (and 1e-3 for the head); trained static vectors use 1e-3. A rate you pass is
    kept as is: ``learning_rate`` alone also sets the head's unless ``head_learning_rate`` is
    given, as before.
    """
    if strategy == "feature_extraction":
        rate = learning_rate if learning_rate is not None else HEAD_ONLY_LEARNING_RATE
        return rate, head_learning_rate if head_learning_rate is not None else rate
    static = getattr(encoder, "kind", None) == "static"
    if learning_rate is None:
        learning_rate = (LORA_LEARNING_RATE if strategy == "lora" else VECTORS_LEARNING_RATE if static
                         else encoder_rate or ENCODER_LEARNING_RATE)
        head_rate = HEAD_ONLY_LEARNING_RATE if static else HEAD_LEARNING_RATE
        return learning_rate, head_learning_rate if head_learning_rate is not None else head_rate
    return learning_rate, head_learning_rate if head_learning_rate is not None else learning_rate


def set_frozen_modules_to_eval(model: nn.Module) -> None:
    """Put fully frozen groups in eval mode so their dropout and batch-norm statistics stay fixed."""
    for _, modules in model.encoder.layer_groups():
        for module in modules:
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()
    if not any(p.requires_grad for p in model.encoder.parameters()):
        model.encoder.eval()


def parameter_groups(
    model: nn.Module,
    learning_rate: float,
    head_learning_rate: float | None = None,
    discriminative_decay: float | None = None,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Optimizer parameter groups holding only trainable parameters, one per layer group.

    Biases and normalisation weights (1-D tensors) get no weight decay, as is standard.
    """
    decay = discriminative_decay or 1.0
    trainable = [
        (name, [p for m in modules for p in m.parameters() if p.requires_grad])
        for name, modules in model.encoder.layer_groups()
    ]
    trainable = [(name, params) for name, params in trainable if params]
    head_rate = head_learning_rate or learning_rate
    single = len(model.heads) == 1
    named = [("head" if single else f"head.{name}", [p for p in head.parameters() if p.requires_grad], head_rate)
             for name, head in model.heads.items()]
    for depth, (name, params) in enumerate(reversed(trainable)):  # top group first
        named.append((name, params, learning_rate * decay**depth))
    return [group for name, params, lr in named for group in decay_groups(name, params, lr, weight_decay)]


def decay_groups(name: str, params: list, lr: float, weight_decay: float) -> list[dict]:
    """Optimizer groups of ``params``: matrices with ``weight_decay``, biases and norms (1-D) without."""
    groups = []
    for with_decay in (True, False):
        chosen = [p for p in params if (p.ndim > 1) == with_decay]
        if chosen:
            groups.append({"params": chosen, "lr": lr, "weight_decay": weight_decay if with_decay else 0.0,
                           "name": f"{name}{'' if with_decay else '.no_decay'}"})
    return groups


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def slanted_triangular(total_steps: int, cut_fraction: float = 0.1, ratio: float = 32.0):
    """ULMFiT's slanted-triangular schedule as a LambdaLR multiplier (Howard & Ruder 2018, eq. 3)."""
    cut = max(1, int(total_steps * cut_fraction))

    def multiplier(step: int) -> float:
        if step < cut:
            p = step / cut
        else:
            p = max(0.0, 1 - (step - cut) / max(1, total_steps - cut))
        return (1 + p * (ratio - 1)) / ratio

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_steps: int):
    """Warm-up plus linear decay (default), slanted-triangular, or constant."""
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    if schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup_steps, max(total_steps, 1))
    if schedule == "slanted_triangular":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, slanted_triangular(total_steps))
    if schedule == "constant":
        return get_constant_schedule(optimizer)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
