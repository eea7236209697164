"""The one training loop, on Accelerate: CPU, one GPU, or many under ``accelerate launch``.

``fit`` reads as: prepare rows -> build loaders -> freeze per strategy -> optimizer of trainable
parameters -> (resume) -> epochs of accumulate/clip/step -> evaluate with gather_for_metrics.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cache import FeatureCache
from .checkpoint import load_checkpoint, save_checkpoint
from .encoders.base import ModelInput
from .model import TransferModel
from .strategies import (Strategy, apply_freezing, build_scheduler, count_parameters, parameter_groups,
                         set_frozen_modules_to_eval)


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


def fit(
    model: TransferModel,
    train_data: Any,
    eval_data: Any = None,
    *,
    strategy: str = "full",
    top_k: int | None = None,
    epochs: int = 3,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    learning_rate: float = 2e-5,
    head_learning_rate: float | None = None,
    discriminative_decay: float | None = None,
    weight_decay: float = 0.01,
    schedule: str = "linear",
    warmup_ratio: float = 0.1,
    gradient_accumulation_steps: int = 1,
    max_grad_norm: float | None = 1.0,
    mixed_precision: str = "no",
    early_stopping_metric: str | None = None,
    early_stopping_patience: int = 2,
    output_dir: str | None = None,
    save_every_steps: int | None = None,
    save_total_limit: int = 2,
    resume: bool = False,
    seed: int = 0,
    cpu: bool = False,
    progress: bool = True,
    cache_features: bool | None = None,
    cache_dtype: str = "float32",
    cache_max_memory_mb: float = 2048,
    group_by_length: bool = False,
    **columns: str,
) -> FitResult:
    """Train ``model`` on ``train_data`` with a freezing ``strategy``; see the README for every option."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    started = time.perf_counter()  # training time includes preparing rows and any feature cache
    plan = Strategy(strategy, top_k)
    groups = model.encoder.layer_groups()
    plan.validate(len(groups))
    if resume and output_dir is None:
        raise ValueError("resume=True needs output_dir= (where the checkpoints are)")
    if save_every_steps and output_dir is None:
        raise ValueError("save_every_steps needs output_dir= to write checkpoints into")
    # Unused parameters are normal here (a BERT pooler the features skip, groups frozen mid-run).
    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    accelerator = Accelerator(
        mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps, cpu=cpu,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed), kwargs_handlers=kwargs,
    )
    set_seed(seed)
    out = Path(output_dir) if output_dir else None
    if out is not None and accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if resume is False and (out / "log.jsonl").exists():
            (out / "log.jsonl").unlink()  # a fresh run starts a fresh log

    head, encoder = model.head, model.encoder
    train_rows = head.prepare(encoder, train_data, train=True, **columns)
    eval_rows = head.prepare(encoder, eval_data, train=False, **columns) if eval_data is not None else None
    # DDP registers only parameters that require grad when wrapped: for gradual unfreezing, all must.
    n_trainable = plan.trainable_groups(len(groups), epoch=0)
    apply_freezing(model, len(groups) if plan.name == "gradual_unfreezing" else n_trainable)
    model = accelerator.prepare(model)
    core = accelerator.unwrap_model(model)

    # Below a fixed freeze line nothing changes: compute it once (see nlptl/cache.py).
    cache_mode, boundary, cache_reason = _cache_plan(plan, core, len(groups), train_rows, cache_features,
                                                     accelerator.device)
    collate = lambda rows: head.collate(encoder, rows)  # noqa: E731
    eval_collate = collate
    caches: list[FeatureCache] = []
    if cache_mode:
        cache_dir = out / "feature_cache" if out is not None else None
        caches = [FeatureCache.build(core, rows, eval_batch_size or batch_size, accelerator.device, cache_dtype,
                                     progress and accelerator.is_local_main_process, cache_dir, cache_max_memory_mb,
                                     boundary)
                  for rows in (train_rows, eval_rows) if rows]
        collate = lambda rows: caches[0].collate(head, encoder, rows)  # noqa: E731
        eval_collate = (lambda rows: caches[1].collate(head, encoder, rows)) if eval_rows else None  # noqa: E731
        if progress:
            accelerator.print(f"cached {cache_mode}: {sum(c.nbytes for c in caches) / 2**20:.1f} MiB ({cache_dtype})")
    # The loader's own generator keeps its per-iterator seed draw off the global RNG, so a resumed run
    # draws dropout masks exactly as an unbroken one.
    sampling = dict(shuffle=True, generator=torch.Generator().manual_seed(seed))
    if group_by_length:  # batches of similar lengths pad less; still a seeded shuffle per epoch
        sampler = _LengthGroupedSampler(batch_size, [len(r["input"]) for r in train_rows], seed)
        sampling = dict(sampler=sampler, generator=torch.Generator().manual_seed(seed))
    train_loader = DataLoader(_Rows(train_rows), batch_size=batch_size, collate_fn=collate, **sampling)
    train_loader = accelerator.prepare(train_loader)
    eval_loader = None
    if eval_rows:
        eval_loader = accelerator.prepare(_eval_loader(eval_rows, eval_batch_size or batch_size, eval_collate))

    start_epoch = _resume_epoch(out) if resume else 0
    trainable_names = apply_freezing(core, plan.trainable_groups(len(groups), start_epoch))
    lr_args = dict(learning_rate=learning_rate, head_learning_rate=head_learning_rate,
                   discriminative_decay=discriminative_decay, weight_decay=weight_decay)
    optimizer = _adamw(parameter_groups(core, **lr_args))
    steps_per_epoch = math.ceil(len(train_loader) / gradient_accumulation_steps)
    total_steps = steps_per_epoch * epochs
    scheduler = build_scheduler(optimizer, schedule, total_steps, int(warmup_ratio * total_steps))
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)

    state = {"epoch": 0, "batches_done": 0, "global_step": 0, "history": [], "best": None, "best_epoch": None,
             "bad_epochs": 0, "train_seconds": 0.0}
    best_weights = None
    if resume:
        state, best_weights = load_checkpoint(accelerator, out)
        accelerator.print(f"resumed from step {state['global_step']} (epoch {state['epoch']}, "
                          f"batch {state['batches_done']})")
    log = _Log(out, accelerator)
    if not cache_mode:
        log.write({"type": "feature_cache", "mode": None, "reason": cache_reason})
    for name, cache in zip(("train", "eval"), caches):
        log.write({"type": "feature_cache", "mode": cache_mode, "split": name, "mib": round(cache.nbytes / 2**20, 1),
                   "dtype": cache_dtype, "on_disk": str(cache.location) if cache.location else None,
                   "reused": cache.reused, "reason": cache_reason})
    stopped_early = False
    started -= state["train_seconds"]  # a resumed run counts the time already spent

    for epoch in range(state["epoch"], epochs):
        names = apply_freezing(core, plan.trainable_groups(len(groups), epoch))
        if names != trainable_names:  # gradual unfreezing moved the line: give the optimizer the new groups
            _add_new_parameter_groups(optimizer, scheduler, parameter_groups(core, **lr_args))
            trainable_names = names
            log.write({"type": "unfreeze", "epoch": epoch, "trainable_groups": names})
        model.train()
        set_frozen_modules_to_eval(core)
        train_loader.set_epoch(epoch)
        skip = state["batches_done"] if epoch == state["epoch"] else 0
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        if skip and hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        losses: list[float] = state.pop("epoch_losses", []) if skip else []
        bar = _progress(accelerator, progress, len(train_loader), skip, f"epoch {epoch + 1}/{epochs}")
        for batch_index, batch in enumerate(batches, start=skip):
            with accelerator.accumulate(model):
                loss = model(batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if accelerator.sync_gradients:
                state["global_step"] += 1
                log.write({"type": "step", "step": state["global_step"], "epoch": epoch, "loss": losses[-1],
                           "lr": scheduler.get_last_lr()[0]})
                bar.update(1)
                if save_every_steps and state["global_step"] % save_every_steps == 0:
                    state.update(epoch=epoch, batches_done=batch_index + 1, epoch_losses=losses,
                                 train_seconds=time.perf_counter() - started)
                    save_checkpoint(accelerator, out, state["global_step"], state, keep=save_total_limit,
                                    best_weights=best_weights)
                    state.pop("epoch_losses")
        bar.close()
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                  "trainable_groups": trainable_names}
        if eval_loader is not None:
            record.update(evaluate_rows(model, eval_loader, eval_rows, eval_data, accelerator))
            log.write({"type": "eval", **record})
        state["history"].append(record)
        state.update(epoch=epoch + 1, batches_done=0)
        if early_stopping_metric:
            if early_stopping_metric not in record:
                raise ValueError(f"early_stopping_metric {early_stopping_metric!r} is not among the evaluation "
                                 f"metrics {sorted(k for k in record if k not in ('epoch', 'trainable_groups'))}")
            if state["best"] is None or record[early_stopping_metric] > state["best"]:
                state.update(best=record[early_stopping_metric], best_epoch=epoch + 1, bad_epochs=0)
                best_weights = copy.deepcopy({k: v.cpu() for k, v in core.state_dict().items()})
            else:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= early_stopping_patience:
                    stopped_early = True
                    log.write({"type": "early_stop", "epoch": epoch + 1, "best_epoch": state["best_epoch"]})
                    break

    if best_weights is not None:
        core.load_state_dict(best_weights)
    metrics = {}
    if eval_loader is not None:
        best = [h for h in state["history"] if h["epoch"] == state["best_epoch"]] if best_weights else []
        metrics = {k: v for k, v in (best or state["history"][-1:])[0].items() if k not in ("epoch", "trainable_groups")}
    accelerator.wait_for_everyone()
    trainable, total = count_parameters(core)
    core.training_info = {"strategy": plan.name, "top_k": top_k, "epochs": epochs, "learning_rate": learning_rate,
                          "discriminative_decay": discriminative_decay, "seed": seed, "columns": columns}
    model.eval()
    result = FitResult(metrics=metrics, history=state["history"], output_dir=output_dir,
                       train_seconds=time.perf_counter() - started, trainable_parameters=trainable,
                       total_parameters=total, stopped_early=stopped_early)
    if out is not None and accelerator.is_main_process:
        core.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    accelerator.end_training()
    return result


def evaluate(model: TransferModel, data: Any, *, batch_size: int = 32, mixed_precision: str = "no",
             cpu: bool = False, **columns: str) -> dict[str, float]:
    """Metrics of ``model`` on ``data``; runs unchanged on one process or under ``accelerate launch``."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    rows = model.head.prepare(model.encoder, data, train=False, **columns)
    loader = accelerator.prepare(_eval_loader(rows, batch_size, lambda b: model.head.collate(model.encoder, b)))
    prepared = accelerator.prepare(model)
    return evaluate_rows(prepared, loader, rows, data, accelerator)


@torch.inference_mode()
def evaluate_rows(model, loader, rows, dataset, accelerator) -> dict[str, float]:
    """Run the model over evaluation rows on every process and compute metrics once, in row order."""
    core = accelerator.unwrap_model(model)
    keys = core.head.gather_keys
    model.eval()
    collected: dict[str, list] = {key: [] for key in ("row_index",) + keys}
    losses = []
    for batch in loader:
        outputs = model(batch)
        if "loss" in outputs:
            losses.append(accelerator.gather(outputs["loss"].detach().reshape(1)).float().mean().item())
        tensors = {"row_index": batch["row_index"]}
        for key in keys:
            tensors[key] = accelerator.pad_across_processes(outputs[key].float(), dim=1) if outputs[key].ndim > 1 \
                else outputs[key].float()
        gathered = accelerator.gather_for_metrics(tensors)
        for key, value in gathered.items():
            collected[key].extend(value.cpu().numpy())
    row_index = np.asarray(collected["row_index"])
    if len(row_index) != len(rows) or len(np.unique(row_index)) != len(rows):
        raise RuntimeError(f"evaluation gathered {len(row_index)} rows ({len(np.unique(row_index))} distinct) "
                           f"for {len(rows)} evaluation rows")
    order = np.argsort(row_index, kind="stable")
    outputs = {key: [collected[key][i] for i in order] for key in keys}
    metrics = core.head.compute_metrics(rows, outputs, dataset)
    if losses:
        metrics["eval_loss"] = float(np.mean(losses))
    return metrics


def _eval_loader(rows, batch_size, collate) -> DataLoader:
    # Longest rows first so each batch pads little; row_index restores the order afterwards.
    lengths = [len(r["input"]) if isinstance(r["input"], ModelInput) else 0 for r in rows]
    order = np.argsort(lengths, kind="stable")[::-1]
    return DataLoader(_Rows([rows[i] for i in order]), batch_size=batch_size, shuffle=False, collate_fn=collate)


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
    inner_scheduler = getattr(scheduler, "scheduler", scheduler)
    have = {g["name"] for g in inner.param_groups}
    for group in wanted:
        if group["name"] in have:
            continue
        group = dict(group, initial_lr=group["lr"])
        inner.add_param_group(group)
        inner_scheduler.base_lrs.append(group["initial_lr"])
        if hasattr(inner_scheduler, "lr_lambdas"):
            inner_scheduler.lr_lambdas.append(inner_scheduler.lr_lambdas[0])
            inner.param_groups[-1]["lr"] = group["initial_lr"] * inner_scheduler.lr_lambdas[0](inner_scheduler.last_epoch)


def _resume_epoch(out: Path) -> int:
    from .checkpoint import read_trainer_state

    return read_trainer_state(out)[1]["epoch"]


class _LengthGroupedSampler:
    """transformers' LengthGroupedSampler, reseeded at every epoch so a resumed run sees the same order."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        self.seed, self.generator = seed, torch.Generator()
        self.sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=self.generator)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return iter(self.sampler)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


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

    steps = math.ceil(total / accelerator.gradient_accumulation_steps)
    return tqdm(total=steps, initial=initial // accelerator.gradient_accumulation_steps, desc=description,
                disable=not (enabled and accelerator.is_local_main_process), leave=False)
