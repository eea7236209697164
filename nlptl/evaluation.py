"""Evaluation: metrics of a model's head on a dataset, on one process or many, in row order."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .config import TrainConfig
from .devices import cpu_has_native_bf16, default_device_type, resolve_precision
from .encoders.base import ModelInput
from .model import TransferModel
from .sources import collate_for


def build_accelerator(cfg: TrainConfig):
    """An Accelerator for this precision; a second fit in the same process may choose another one."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    precision = resolve_precision(cfg.mixed_precision, default_device_type(cfg.cpu))  # "auto": bf16 where native
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        AcceleratorState._reset_state()  # keeps the process group; only the precision setting is redone
    # Unused parameters are normal here (a BERT pooler the features skip, groups frozen mid-run).
    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    accelerator = Accelerator(mixed_precision=precision, cpu=cfg.cpu, kwargs_handlers=kwargs)
    if precision == "fp16" and accelerator.device.type == "cpu":
        raise ValueError("mixed_precision='fp16' needs a GPU; on CPU use 'bf16' (applied through autocast) or 'no'")
    if precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("mixed_precision='bf16' on a CPU without avx512_bf16 or amx_bf16: bf16 matmuls are emulated "
                      "there and run slower than float32; pass mixed_precision='no' for speed", UserWarning,
                      stacklevel=3)
    return accelerator


def evaluate(model: TransferModel, data: Any, *, batch_size: int = 32, mixed_precision: str = "auto",
             cpu: bool = False, head: str | None = None, **columns: str) -> dict[str, float]:
    """Metrics of ``model`` (its ``head``) on ``data``; runs unchanged on one process or under ``accelerate launch``."""
    cfg = TrainConfig(batch_size=batch_size, mixed_precision=mixed_precision, cpu=cpu)
    accelerator = build_accelerator(cfg)
    name = head or model.default_head
    rows = model.get_head(name).prepare(model.encoder, data, train=False, **columns)
    loader = accelerator.prepare(eval_loader(rows, batch_size, collate_for(model, name)))
    model.to(accelerator.device)
    return evaluate_rows(model, loader, rows, data, accelerator, name)




@torch.inference_mode()
def evaluate_rows(model: TransferModel, loader, rows, dataset, accelerator, head: str | None = None
                  ) -> dict[str, float]:
    """Run the model over evaluation rows on every process and compute metrics once, in row order."""
    one = model.get_head(head)
    keys = one.gather_keys
    was_training = model.training
    model.eval()
    collected: dict[str, list] = {key: [] for key in ("row_index",) + keys}
    losses = []
    for batch in loader:
        with accelerator.autocast():
            outputs = model(batch, head=head)
        if "loss" in outputs:
            losses.append(accelerator.gather(outputs["loss"].detach().reshape(1)).float().mean().item())
        tensors = {"row_index": batch["row_index"]}
        for key in keys:
            tensors[key] = accelerator.pad_across_processes(outputs[key].float(), dim=1) if outputs[key].ndim > 1 \
                else outputs[key].float()
        gathered = accelerator.gather_for_metrics(tensors)
        for key, value in gathered.items():
            collected[key].extend(value.cpu().numpy())
    model.train(was_training)
    row_index = np.asarray(collected["row_index"])
    if len(row_index) != len(rows) or len(np.unique(row_index)) != len(rows):
        raise RuntimeError(f"evaluation gathered {len(row_index)} rows ({len(np.unique(row_index))} distinct) "
                           f"for {len(rows)} evaluation rows")
    order = np.argsort(row_index, kind="stable")
    outputs = {key: [collected[key][i] for i in order] for key in keys}
    metrics = one.compute_metrics(rows, outputs, dataset)
    if losses:
        metrics["eval_loss"] = float(np.mean(losses))
    return metrics




def eval_loader(rows, batch_size, collate) -> DataLoader:
    # Longest rows first so each batch pads little; row_index restores the order afterwards.
    lengths = [len(r["input"]) if isinstance(r["input"], ModelInput) else 0 for r in rows]
    order = np.argsort(lengths, kind="stable")[::-1]
    return DataLoader(_Rows([rows[i] for i in order]), batch_size=batch_size, shuffle=False, collate_fn=collate)




class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]
