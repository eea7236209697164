"""The one training loop, on Accelerate: CPU, one GPU, or many under ``accelerate launch``.

``fit`` reads as: validate the config -> seed -> prepare each named source -> freeze per strategy
-> objective setup -> optimizer of trainable parameters -> (resume) -> epochs of steps, each step
asking the *objective* for a loss over that step's batches -> evaluate with gather_for_metrics.

What a step trains on is the objective's business (``nlptl/objectives``), which sources are in a
step is the step plan's (``nlptl/sources.py``); this file only runs the loop.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .cache import FeatureCache
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, training_fields
from .model import TransferModel
from .objectives import Objective, Supervised, TrainStep
from .rundir import check_run_directory, write_fingerprint
from .evaluation import build_accelerator, eval_loader, evaluate_rows
from .sources import SourceStream, StepPlan, collate_for, named_sources, next_batch, prepare_source
from .strategies import (Strategy, apply_freezing, build_scheduler, count_parameters, decay_groups,
                         default_learning_rates, parameter_groups, set_frozen_modules_to_eval)

SINGLE_SOURCE = "train"  # the name of the one source when train_data is one dataset
# metric names early stopping minimises under early_stopping_mode="auto" (any other name is maximised)
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity")
# settings that may change between a run and its resume without changing what a checkpoint means
RESUMABLE_CHANGES = ("output_dir", "resume", "overwrite", "progress", "cpu", "eval_batch_size", "save_every_steps",
                     "save_total_limit", "cache_features", "cache_dtype", "cache_max_memory_mb")


@dataclass
class FitResult:
    metrics: dict[str, float]  # final evaluation (of the best model when early stopping)
    history: list[dict[str, Any]]  # one entry per epoch: train loss, eval metrics, trainable groups
    output_dir: str | None = None
    train_seconds: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _Trainee(nn.Module):
    """Model and objective as one module: one forward per step (what DDP needs), one state to checkpoint."""

    def __init__(self, model: TransferModel, objective: Objective) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batches: dict[str, dict[str, torch.Tensor]], step: TrainStep) -> Any:
        return self.objective.loss(self.model, batches, step)


def fit(model: TransferModel, train_data: Any, eval_data: Any = None, *, config: TrainConfig | None = None,
        objective: Objective | None = None, **options: Any) -> FitResult:
    """Train ``model`` on ``train_data`` (a dataset, or ``{name: dataset}``); see ``TrainConfig`` for options."""
    from accelerate.utils import set_seed

    cfg = TrainConfig.from_kwargs(config, **options)
    objective = objective if objective is not None else Supervised()
    if not isinstance(model, TransferModel):
        raise TypeError(f"model must be an nlptl.TransferModel, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an nlptl.objectives.Objective, got {type(objective).__name__}")
    started = time.perf_counter()  # training time includes preparing rows and any feature cache
    plan = Strategy(cfg.strategy, cfg.top_k)
    groups = model.encoder.layer_groups()
    plan.validate(len(groups))
    train_sets, eval_sets = (named_sources(train_data, "train_data", SINGLE_SOURCE),
                             named_sources(eval_data, "eval_data", None))
    heads = {name: model.head_for(name) for name in train_sets}
    eval_heads = {name: model.head_for(name) if name is not None else model.default_head for name in eval_sets}
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed)
    model.initialize_fresh_heads()  # under the seed: a head built before fit starts like one built in it
    plan.prepare(model, cfg)  # strategy="lora" adds its adapters here, under the seed (nlptl/lora.py)
    head_rates = {model.get_head(name).encoder_learning_rate for name in heads.values()}  # one head, or all agree
    encoder_lr, head_lr = default_learning_rates(plan.name, model.encoder, cfg.learning_rate, cfg.head_learning_rate,
                                                 head_rates.pop() if len(head_rates) == 1 else None)

    sources = [prepare_source(model, name, data, heads[name], cfg, objective) for name, data in train_sets.items()]
    eval_rows = {name: model.get_head(eval_heads[name]).prepare(model.encoder, data, train=False, **cfg.columns)
                 for name, data in eval_sets.items()}
    _check_early_stopping_metric(cfg.early_stopping_metric, {n: model.get_head(h) for n, h in eval_heads.items()})
    out = Path(cfg.output_dir) if cfg.output_dir else None
    if out is not None:  # everything is validated: now check the run directory, before writing to it
        fingerprint = run_fingerprint(model, cfg, objective, sources, eval_rows)
        check_run_directory(out, cfg.resume, fingerprint, cfg.overwrite, remove=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            if not cfg.resume:
                write_fingerprint(out, fingerprint)
                if (out / "log.jsonl").exists():
                    (out / "log.jsonl").unlink()  # a log left by a run that crashed before its first checkpoint

    # DDP registers only parameters that require grad when wrapped: for gradual unfreezing, all must.
    apply_freezing(model, len(groups) if plan.name == "gradual_unfreezing" else plan.trainable_groups(len(groups), 0))
    objective.setup(model)
    trainee = accelerator.prepare(_Trainee(model, objective))  # DDP-wrapped under several processes

    # Below a fixed freeze line nothing changes: compute it once per source (see nlptl/cache.py).
    cache_mode, boundary, cache_reason = _cache_plan(plan, model, len(groups), sources[0].rows, cfg.cache_features,
                                                     accelerator.device)
    caches: dict[str, FeatureCache] = {}
    eval_collates = {name: collate_for(model, eval_heads[name]) for name in eval_rows}
    if cache_mode:
        def build(rows, head):
            directory = out / "feature_cache" if out is not None else None
            with accelerator.autocast():  # the frozen part runs at the run's precision, as in training
                return FeatureCache.build(model, rows, cfg.eval_batch_size or cfg.batch_size, accelerator.device,
                                          cfg.cache_dtype, cfg.progress and accelerator.is_local_main_process,
                                          directory, cfg.cache_max_memory_mb, boundary, head=model.get_head(head),
                                          precision=accelerator.mixed_precision)
        for source in sources:
            caches[source.name] = build(source.rows, source.head)
            source.collate = collate_for(model, source.head, caches[source.name])
        for name, rows in eval_rows.items():
            caches[f"eval:{name}"] = build(rows, eval_heads[name])
            eval_collates[name] = collate_for(model, eval_heads[name], caches[f"eval:{name}"])
        if cfg.progress:
            accelerator.print(f"cached {cache_mode}: {sum(c.nbytes for c in caches.values()) / 2**20:.1f} MiB "
                              f"({cfg.cache_dtype})")
    by_name = {s.name: s for s in sources}
    mode = cfg.task_sampling or ("all" if objective.sampling == "all" else "proportional")
    streams = {s.name: SourceStream(len(s.rows), cfg.batch_size, cfg.seed, i, s.lengths if cfg.group_by_length
                                    else None, accelerator.num_processes, accelerator.process_index)
               for i, s in enumerate(sources)}
    steps = StepPlan([s.name for s in sources], [len(s.rows) for s in sources],
                     [streams[s.name].batches_per_pass for s in sources], mode, cfg.seed, cfg.sampling_temperature,
                     cfg.epoch_source)
    eval_loaders = {name: eval_loader(rows, cfg.eval_batch_size or cfg.batch_size, eval_collates[name])
                    for name, rows in eval_rows.items()}
    eval_loaders = {name: accelerator.prepare(loader) for name, loader in eval_loaders.items()}

    start_epoch = _resume_epoch(out) if cfg.resume else 0
    trainable_names = apply_freezing(model, plan.trainable_groups(len(groups), start_epoch))
    lr_args = dict(learning_rate=encoder_lr, head_learning_rate=head_lr, discriminative_decay=cfg.discriminative_decay,
                   weight_decay=0.0 if objective.replaces_weight_decay else cfg.weight_decay)
    param_groups = parameter_groups(model, **lr_args) + _objective_groups(objective, head_lr, cfg.weight_decay)
    if not param_groups:
        raise ValueError(f"nothing to train: strategy {plan.name!r} freezes the encoder and the head(s) and "
                         f"{type(objective).__name__} have no trainable parameters; use nlptl.evaluate to score "
                         "the model as it is, or a strategy that trains part of the encoder")
    optimizer = _adamw(param_groups)
    optimizer_steps_per_epoch = math.ceil(steps.steps_per_epoch / cfg.gradient_accumulation_steps)
    total_steps = optimizer_steps_per_epoch * cfg.epochs
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps, int(cfg.warmup_ratio * total_steps))
    optimizer = accelerator.prepare(optimizer)
    accelerator.register_for_checkpointing(scheduler)

    state = {"epoch": 0, "batches_done": 0, "global_step": 0, "history": [], "best": None, "best_epoch": None,
             "bad_epochs": 0, "train_seconds": 0.0, "streams": {n: s.position for n, s in streams.items()}}
    best_weights = None
    if cfg.resume:
        state, best_weights = load_checkpoint(accelerator, out)
        for name, position in state["streams"].items():
            streams[name].position = list(position)
        accelerator.print(f"resumed from step {state['global_step']} (epoch {state['epoch']}, "
                          f"batch {state['batches_done']})")
    log = _Log(out, accelerator)
    _log_caches(log, cache_mode, cache_reason, caches, cfg.cache_dtype)
    stopped_early = False
    started -= state["train_seconds"]  # a resumed run counts the time already spent
    gas = cfg.gradient_accumulation_steps

    for epoch in range(state["epoch"], cfg.epochs):
        names = apply_freezing(model, plan.trainable_groups(len(groups), epoch))
        if names != trainable_names:  # gradual unfreezing moved the line: give the optimizer the new groups
            _add_new_parameter_groups(optimizer, scheduler, parameter_groups(model, **lr_args))
            trainable_names = names
            log.write({"type": "unfreeze", "epoch": epoch, "trainable_groups": names})
        trainee.train()
        set_frozen_modules_to_eval(model)
        skip = state["batches_done"] if epoch == state["epoch"] else 0
        losses: list[float] = state.pop("epoch_losses", []) if skip else []
        bar = _progress(accelerator, cfg.progress, optimizer_steps_per_epoch, skip // gas,
                        f"epoch {epoch + 1}/{cfg.epochs}")
        for batch_index in range(skip, steps.steps_per_epoch):
            batches = {name: next_batch(by_name[name], streams[name], accelerator.device)
                       for name in steps.sources_at(epoch, batch_index)}
            sync = (batch_index + 1) % gas == 0 or batch_index + 1 == steps.steps_per_epoch
            step = TrainStep(state["global_step"], total_steps, epoch)
            with contextlib.nullcontext() if sync else accelerator.no_sync(trainee):
                loss, logged = _unpack(trainee(batches, step), objective)
                accelerator.backward(loss / gas)
            losses.append(float(loss.detach()))
            if not sync:
                continue
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(trainee.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            state["global_step"] += 1
            log.write({"type": "step", "step": state["global_step"], "epoch": epoch, "loss": losses[-1],
                       "lr": scheduler.get_last_lr()[0], **logged})
            bar.update(1)
            if cfg.save_every_steps and state["global_step"] % cfg.save_every_steps == 0:
                state.update(epoch=epoch, batches_done=batch_index + 1, epoch_losses=losses,
                             train_seconds=time.perf_counter() - started,
                             streams={n: s.position for n, s in streams.items()})
                save_checkpoint(accelerator, out, state["global_step"], state, keep=cfg.save_total_limit,
                                best_weights=best_weights)
                state.pop("epoch_losses")
        bar.close()
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                  "trainable_groups": trainable_names}
        for name, loader in eval_loaders.items():
            metrics = evaluate_rows(model, loader, eval_rows[name], eval_sets[name], accelerator, eval_heads[name])
            record.update({(f"{name}/{k}" if name is not None else k): v for k, v in metrics.items()})
        if eval_loaders:
            log.write({"type": "eval", **record})
        state["history"].append(record)
        state.update(epoch=epoch + 1, batches_done=0, streams={n: s.position for n, s in streams.items()})
        if cfg.early_stopping_metric:
            improved = _improved(record, state["best"], cfg.early_stopping_metric, cfg.early_stopping_mode)
            if improved:
                state.update(best=record[cfg.early_stopping_metric], best_epoch=epoch + 1, bad_epochs=0)
                best_weights = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            else:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= cfg.early_stopping_patience:
                    stopped_early = True
                    log.write({"type": "early_stop", "epoch": epoch + 1, "best_epoch": state["best_epoch"]})
                    break

    if best_weights is not None:
        model.load_state_dict(best_weights)
    metrics = {}
    if eval_loaders:
        best = [h for h in state["history"] if h["epoch"] == state["best_epoch"]] if best_weights else []
        metrics = {k: v for k, v in (best or state["history"][-1:])[0].items()
                   if k not in ("epoch", "trainable_groups")}
    trainee.eval()
    before_finish = None  # the objective's last word (a refitted head) changes the metrics, not the epoch history
    if objective.finish(model, {s.name: (s.head, s.rows) for s in sources if s.labelled}) and eval_loaders:
        before_finish, metrics = metrics, {k: v for k, v in metrics.items() if k == "train_loss"}
        for name, loader in eval_loaders.items():
            found = evaluate_rows(model, loader, eval_rows[name], eval_sets[name], accelerator, eval_heads[name])
            metrics.update({(f"{name}/{k}" if name is not None else k): v for k, v in found.items()})
        log.write({"type": "eval", "stage": "finish", **metrics})
    accelerator.wait_for_everyone()
    trainable, total = count_parameters(model)
    applied = {**training_fields(cfg), "learning_rate": encoder_lr, "head_learning_rate": head_lr,
               "mixed_precision": accelerator.mixed_precision}
    model.training_info = {k: applied[k] for k in ("strategy", "top_k", "epochs", "learning_rate", "head_learning_rate",
                                                   "discriminative_decay", "seed", "columns", "mixed_precision")}
    model.training_info["objective"] = {"name": type(objective).__name__, **objective.config()}
    result = FitResult(metrics=metrics, history=state["history"], output_dir=cfg.output_dir,
                       train_seconds=time.perf_counter() - started, trainable_parameters=trainable,
                       total_parameters=total, stopped_early=stopped_early,
                       extra={"config": applied, "objective": model.training_info["objective"],
                              "sources": {s.name: {"rows": len(s.rows), "head": s.head, "labelled": s.labelled}
                                          for s in sources}, "task_sampling": mode,
                              **({"metrics_before_finish": before_finish} if before_finish is not None else {})})
    if out is not None and accelerator.is_main_process:
        model.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    accelerator.end_training()
    return result


# ----- pieces of fit ---------------------------------------------------------------------------


def run_fingerprint(model: TransferModel, cfg: TrainConfig, objective: Objective, sources: list,
                    eval_rows: dict) -> dict[str, Any]:
    """What a checkpoint belongs to: the settings, model, objective and prepared rows (see ``nlptl.rundir``)."""
    def digest(rows: list) -> str:
        return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()

    settings = {k: v for k, v in training_fields(cfg).items() if k not in RESUMABLE_CHANGES}
    return {"settings": settings,
            "encoder": {"class": type(model.encoder).__name__, **model.encoder.config()},
            "heads": {name: {"class": type(head).__name__, **head.config()} for name, head in model.heads.items()},
            "objective": {"class": type(objective).__name__, **objective.config()},
            "train_data": {source.name: digest(source.rows) for source in sources},
            "eval_data": {str(name): digest(rows) for name, rows in eval_rows.items()}}


def _unpack(value: Any, objective: Objective) -> tuple[torch.Tensor, dict[str, float]]:
    loss, logged = value if isinstance(value, tuple) else (value, {})
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(f"{type(objective).__name__}.loss must return a scalar tensor (or (tensor, dict)), "
                        f"got {type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    return loss, dict(logged or {})


def _check_early_stopping_metric(metric: str | None, eval_heads: dict) -> None:
    """Refuse, before anything trains or is written, a metric that no evaluation can report."""
    if not metric:
        return
    if not eval_heads:
        raise ValueError(f"early_stopping_metric={metric!r} (CLI: --early-stopping-metric) needs eval_data to "
                         "measure it on; pass eval_data (CLI: --eval-file / --eval-split) or leave it unset")
    if any(head.metric_names() is None for head in eval_heads.values()):
        return  # a head that does not declare its metrics: _improved checks the name at the first evaluation
    known = [f"{name}/{m}" if name is not None else m
             for name, head in eval_heads.items() for m in ("eval_loss",) + head.metric_names()]
    if metric not in known:
        raise ValueError(f"early_stopping_metric={metric!r} (CLI: --early-stopping-metric) is not a metric this "
                         f"evaluation reports; choose one of {known}")


def _improved(record: dict, best: float | None, metric: str, mode: str) -> bool:
    if metric not in record:
        raise ValueError(f"early_stopping_metric {metric!r} is not among the evaluation metrics "
                         f"{sorted(k for k in record if k not in ('epoch', 'trainable_groups', 'train_loss'))}")
    minimise = mode == "min" or (mode == "auto" and metric.rsplit("/", 1)[-1].endswith(LOWER_IS_BETTER))
    value = record[metric]
    return best is None or (value < best if minimise else value > best)


def _objective_groups(objective: Objective, head_lr: float, weight_decay: float) -> list[dict]:
    params = [p for p in objective.parameters() if p.requires_grad]
    return decay_groups("objective", params, objective.learning_rate or head_lr, weight_decay)


def _log_caches(log, cache_mode, cache_reason, caches, dtype) -> None:
    if not cache_mode:
        log.write({"type": "feature_cache", "mode": None, "reason": cache_reason})
    for name, cache in caches.items():
        log.write({"type": "feature_cache", "mode": cache_mode, "split": name, "mib": round(cache.nbytes / 2**20, 1),
                   "dtype": dtype, "on_disk": str(cache.location) if cache.location else None,
                   "reused": cache.reused, "reason": cache_reason})


def _cache_plan(plan: Strategy, model, n_groups: int, rows: list, requested: bool | None, device):
    """(mode, boundary groups, reason): cache whole encoder outputs, hidden states at the freeze line, or nothing."""
    from .encoders.boundary import replay_matches, supports_boundary

    n_frozen = n_groups - plan.trainable_groups(n_groups, epoch=0)
    if requested is False:
        return None, None, "turned off (cache_features=False)"
    if plan.name == "feature_extraction":
        return "frozen features", None, "the whole encoder is frozen"
    if plan.name == "gradual_unfreezing":
        reason = "gradual_unfreezing moves the freeze line every epoch"
    elif n_frozen == 0:
        reason = f"strategy {plan.name!r} trains every encoder group"
    elif not supports_boundary(model.encoder, n_frozen):
        reason = "this encoder cannot be run from its freeze line"
    else:
        sample = {k: v.to(device) for k, v in model.head.collate(model.encoder, rows[:4]).items()}
        if replay_matches(model.encoder, sample, n_frozen):
            return "freeze-line states", n_frozen, f"the bottom {n_frozen} groups are frozen for the whole run"
        reason = "replaying this encoder from its freeze line did not match its plain forward pass"
    if requested:
        raise ValueError(f"cache_features=True cannot be honoured: {reason}")
    return None, None, reason


def _adamw(groups: list[dict]) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where this build has it (about 3x faster steps on CPU), else foreach."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, ValueError):  # e.g. parameters on a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, foreach=True)


def _add_new_parameter_groups(optimizer, scheduler, wanted: list[dict]) -> None:
    """Append groups for newly unfrozen parameters, scheduled like the existing ones."""
    inner = getattr(optimizer, "optimizer", optimizer)
    have = {g["name"] for g in inner.param_groups}
    for group in wanted:
        if group["name"] in have:
            continue
        group = dict(group, initial_lr=group["lr"])
        inner.add_param_group(group)
        scheduler.base_lrs.append(group["initial_lr"])
        if hasattr(scheduler, "lr_lambdas"):
            scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
            inner.param_groups[-1]["lr"] = group["initial_lr"] * scheduler.lr_lambdas[0](scheduler.last_epoch)


def _resume_epoch(out: Path) -> int:
    from .checkpoint import read_trainer_state

    return read_trainer_state(out)[1]["epoch"]


class _Log:
    """JSON-lines log of every optimizer step and evaluation, written by the main process."""

    def __init__(self, out: Path | None, accelerator) -> None:
        self.path = out / "log.jsonl" if out is not None and accelerator.is_main_process else None

    def write(self, record: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")


def _progress(accelerator, enabled: bool, total: int, initial: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description,
                disable=not (enabled and accelerator.is_local_main_process), leave=False)
