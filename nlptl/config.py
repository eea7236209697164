"""``TrainConfig``: every training option in one validated dataclass.

``nlptl.fit(model, train, eval, config=TrainConfig(...))`` and ``fit(..., **fields)`` take the
same fields; ``RunConfig`` (a run of the CLI or a recipe) extends it with data and model settings,
the CLI's training flags are generated from its fields, and ``config.json`` records it. So each
option is written once, here, with its default, its check and its ``--help`` text.

Learning rates left at None get defaults that suit the strategy (``strategies.default_learning_rates``):
a new head alone, or over static vectors, learns at 1e-2; fine-tuning a transformer uses 5e-5 for
the encoder (or the head's ``encoder_learning_rate``: 1e-4 for token classification) and 1e-3 for
the head; LoRA adapters use 5e-4 (head 1e-3); trained static vectors use 1e-3.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .strategies import SCHEDULES, STRATEGIES

PRECISIONS = ("auto", "no", "bf16", "fp16")
TASK_SAMPLINGS = ("all", "proportional", "temperature", "round_robin")
CACHE_DTYPES = ("float32", "float16")
EARLY_STOPPING_MODES = ("auto", "min", "max")
# what other libraries call some of these options (transformers' TrainingArguments, plain PyTorch)
OTHER_NAMES = {"lr": "learning_rate", "num_epochs": "epochs", "num_train_epochs": "epochs",
               "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
               "warmup": "warmup_ratio", "grad_accum": "gradient_accumulation_steps", "fp16": "mixed_precision",
               "bf16": "mixed_precision", "clip_grad_norm": "max_grad_norm", "lr_scheduler_type": "schedule"}


def option(default: Any, help: str, cli: bool = True, choices: tuple | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its ``--help`` text (and whether the CLI offers it as a flag)."""
    metadata = {"help": help, "cli": cli, "choices": choices}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass(kw_only=True)
class TrainConfig:
    strategy: str = option("full", "which encoder layer groups train", choices=STRATEGIES)
    top_k: int | None = option(None, "strategy top_k: how many layer groups from the top train "
                               "(lora: how many carry adapters; default all)")
    lora_rank: int = option(8, "strategy lora: rank of each low-rank update")
    lora_alpha: float = option(16.0, "strategy lora: scale, the update is alpha/rank * B A")
    lora_dropout: float = option(0.1, "strategy lora: dropout on the adapters' input, in [0, 1)")
    lora_target_modules: list[str] | None = option(
        None, "strategy lora: linears to adapt, e.g. query,value (default: per architecture, see README)")
    epochs: int = option(3, "passes over the training data (see epoch_source with several sources)")
    batch_size: int = option(32, "training rows per step and process")
    eval_batch_size: int | None = option(None, "evaluation batch size (default: batch_size)")
    learning_rate: float | None = option(None, "encoder learning rate (default: suits the strategy, see README)")
    head_learning_rate: float | None = option(
        None, "head learning rate (default: 1e-2 over frozen features or static vectors, else 1e-3)")
    discriminative_decay: float | None = option(None, "per-group learning-rate factor going down, e.g. 0.8")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and norms)")
    schedule: str = option("linear", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_ratio: float = option(0.1, "fraction of steps spent warming up, in [0, 1]")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    max_grad_norm: float | None = option(1.0, "gradient clipping norm (None: no clipping)")
    mixed_precision: str = option("auto", "auto: bf16 autocast where the CPU/GPU has native bf16, else no; "
                                  "no; bf16; fp16 (GPU only)", choices=PRECISIONS)
    early_stopping_metric: str | None = option(None, "evaluation metric to keep the best epoch by, e.g. accuracy")
    early_stopping_patience: int = option(2, "epochs without improvement before stopping")
    early_stopping_mode: str = option("auto", "auto: minimise *loss, *error, *mse, *mae, *perplexity; maximise others",
                                      choices=EARLY_STOPPING_MODES)
    output_dir: str | None = option(None, "run directory: checkpoints, log.jsonl, model/, metrics.json", cli=False)
    save_every_steps: int | None = option(None, "write a resumable checkpoint every N optimizer steps")
    save_total_limit: int = option(2, "checkpoints to keep")
    resume: bool = option(False, "continue from the last checkpoint in output_dir", cli=False)
    overwrite: bool = option(False, "a fresh run in an output_dir holding an earlier run: delete that run's "
                             "nlptl files first (default: refuse)", cli=False)
    seed: int = option(0, "seeds the whole run: head initialisation, shuffling, dropout")
    cpu: bool = option(False, "train on CPU even when a GPU is present", cli=False)
    progress: bool = option(True, "progress bars", cli=False)
    cache_features: bool | None = option(None, "cache what is below a fixed freeze line (default: where it can)",
                                         cli=False)
    cache_dtype: str = option("float32", "storage dtype of the feature cache", choices=CACHE_DTYPES, cli=False)
    cache_max_memory_mb: float = option(2048, "feature cache size that spills to memory-mapped files", cli=False)
    group_by_length: bool = option(False, "batch training rows of similar length (less padding)", cli=False)
    weight_column: str | None = option(None, "column of per-example loss weights (instance transfer)")
    task_sampling: str | None = option(None, "several sources: all in every step, or one per step drawn "
                                       "proportional / temperature / round_robin (default: the objective's)",
                                       choices=TASK_SAMPLINGS)
    sampling_temperature: float = option(2.0, "task_sampling=temperature: p ~ size**(1/T)")
    epoch_source: str | None = option(None, "several sources: the source whose size makes one epoch "
                                      "(default: the total, or the first source when all train each step)")
    columns: dict[str, str] = option({}, "column names the heads read, e.g. {'text_column': 'review'}", cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, str):  # the CLI's form: --lora-target-modules query,value
            self.lora_target_modules = [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]
        elif isinstance(self.lora_target_modules, tuple):
            self.lora_target_modules = list(self.lora_target_modules)
        checks = [
            (self.strategy in STRATEGIES, "strategy", f"choose one of {', '.join(STRATEGIES)}"),
            (self.top_k is None or _int(self.top_k) and self.top_k >= 1, "top_k", "an integer >= 1"),
            (self.strategy != "top_k" or self.top_k is not None, "top_k", "strategy 'top_k' needs top_k >= 1"),
            (_int(self.lora_rank) and self.lora_rank >= 1, "lora_rank", "an integer >= 1 (typical: 4 to 16)"),
            (_positive(self.lora_alpha), "lora_alpha", "a finite number > 0 (typical: 2 x lora_rank)"),
            (_number(self.lora_dropout) and 0 <= self.lora_dropout < 1, "lora_dropout", "a number in [0, 1)"),
            (self.lora_target_modules is None or _names(self.lora_target_modules), "lora_target_modules",
             "a non-empty list of module names such as ['query', 'value'] (or 'query,value'), or None"),
            (_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1"),
            (_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (self.eval_batch_size is None or _int(self.eval_batch_size) and self.eval_batch_size >= 1,
             "eval_batch_size", "an integer >= 1"),
            (self.learning_rate is None or _positive(self.learning_rate), "learning_rate", "a finite number > 0"),
            (self.head_learning_rate is None or _positive(self.head_learning_rate), "head_learning_rate",
             "a finite number > 0"),
            (self.discriminative_decay is None
             or _positive(self.discriminative_decay) and self.discriminative_decay <= 1,
             "discriminative_decay", "a number in (0, 1]"),
            (_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0"),
            (self.schedule in SCHEDULES, "schedule", f"choose one of {', '.join(SCHEDULES)}"),
            (_number(self.warmup_ratio) and 0 <= self.warmup_ratio <= 1, "warmup_ratio", "a number in [0, 1]"),
            (_int(self.gradient_accumulation_steps) and self.gradient_accumulation_steps >= 1,
             "gradient_accumulation_steps", "an integer >= 1"),
            (self.max_grad_norm is None or _positive(self.max_grad_norm), "max_grad_norm",
             "a finite number > 0, or None for no clipping"),
            (self.mixed_precision in PRECISIONS, "mixed_precision", f"choose one of {', '.join(PRECISIONS)}"),
            (_int(self.early_stopping_patience) and self.early_stopping_patience >= 1, "early_stopping_patience",
             "an integer >= 1"),
            (self.early_stopping_mode in EARLY_STOPPING_MODES, "early_stopping_mode",
             f"choose one of {', '.join(EARLY_STOPPING_MODES)}"),
            (self.save_every_steps is None or _int(self.save_every_steps) and self.save_every_steps >= 1,
             "save_every_steps", "an integer >= 1"),
            (_int(self.save_total_limit) and self.save_total_limit >= 1, "save_total_limit", "an integer >= 1"),
            (_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0"),
            (self.cache_dtype in CACHE_DTYPES, "cache_dtype", f"choose one of {', '.join(CACHE_DTYPES)}"),
            (_number(self.cache_max_memory_mb) and self.cache_max_memory_mb >= 0, "cache_max_memory_mb",
             "a number >= 0 (0: always on disk)"),
            (self.task_sampling is None or self.task_sampling in TASK_SAMPLINGS, "task_sampling",
             f"choose one of {', '.join(TASK_SAMPLINGS)}"),
            (_positive(self.sampling_temperature), "sampling_temperature", "a number > 0"),
            (isinstance(self.columns, dict) and all(k.endswith("_column") for k in self.columns), "columns",
             "a dict of *_column names"),
        ]
        for ok, name, expected in checks:
            if not ok and expected.startswith("choose"):
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; {expected}")
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected {expected}")
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other: resume continues the run in "
                             "output_dir, overwrite deletes it; pass one of them")
        if self.resume and self.output_dir is None:
            raise ValueError("resume=True needs output_dir= (where the checkpoints are)")
        if self.save_every_steps and self.output_dir is None:
            raise ValueError("save_every_steps needs output_dir= to write checkpoints into")

    @classmethod
    def from_kwargs(cls, base: "TrainConfig | None" = None, **values: Any) -> "TrainConfig":
        """``base`` with ``values`` replaced; ``*_column=`` keywords go into ``columns``; typos are named."""
        known = {f.name for f in fields(TrainConfig)}
        columns = {k: values.pop(k) for k in list(values) if k.endswith("_column") and k not in known}
        unknown = sorted(set(values) - known)
        if unknown:
            hints = [f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := [OTHER_NAMES[name]] if name in
                     OTHER_NAMES else difflib.get_close_matches(name, known, n=1)) else "") for name in unknown]
            raise TypeError(f"unknown training option(s) {', '.join(hints)}; see nlptl.TrainConfig for all of them")
        merged = {**(training_fields(base) if base is not None else {}), **values}
        merged["columns"] = {**merged.get("columns", {}), **columns}
        return TrainConfig(**merged)


def training_fields(config: Any) -> dict[str, Any]:
    """The ``TrainConfig`` fields of a config (a ``RunConfig`` has more)."""
    values = asdict(config)
    return {f.name: values[f.name] for f in fields(TrainConfig)}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(name: str, value: Any, low: int, note: str = "") -> None:
    """Raise ValueError naming ``name`` unless ``value`` is an integer (not a bool, not 2.5) >= ``low``."""
    if not _int(value) or value < low:
        raise ValueError(f"{name}={value!r}: expected an integer >= {low}{note}")


def require_positive(name: str, value: Any, what: str = "a finite number", note: str = "") -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite number (not a bool) > 0."""
    if not _positive(value):
        raise ValueError(f"{name}={value!r}: expected {what} > 0{note}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip(".") for v in value)
