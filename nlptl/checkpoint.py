"""Complete, atomic training checkpoints for exact resume.

``output_dir/checkpoints/checkpoint-<step>/`` holds Accelerate's state (model, optimizer,
scheduler, RNG states of every process) plus ``trainer_state.json`` (epoch, position in the
epoch, history, early-stopping state) and, once early stopping has a best epoch,
``best_weights.safetensors`` (the weights it will restore at the end). A checkpoint is written
to a temporary directory and renamed into place; the ``latest`` pointer is replaced atomically
afterwards, so a kill at any moment leaves the previous complete checkpoint as "latest".
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .artifacts import write_text_atomically  # re-exported: runs.py and others import it from here

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_NAME = "trainer_state.json"
BEST_WEIGHTS = "best_weights.safetensors"


def save_checkpoint(accelerator, output_dir: Path, step: int, state: dict[str, Any], keep: int = 2,
                    best_weights: dict[str, Any] | None = None) -> Path:
    """Save full training state at ``step`` (and early stopping's best weights); every process must call this."""
    root = Path(output_dir) / CHECKPOINT_DIR
    final = root / f"checkpoint-{step}"
    staging = root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / STATE_NAME).write_text(json.dumps(state, indent=1))
        if best_weights is not None:
            from safetensors.torch import save_file

            # clone: tied weights share storage, which safetensors refuses; load_state_dict re-ties them
            save_file({k: v.clone().contiguous() for k, v in best_weights.items()}, str(staging / BEST_WEIGHTS))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        write_text_atomically(root / LATEST, final.name)
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = Path(output_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / STATE_NAME).is_file() else None


def read_trainer_state(output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The latest complete checkpoint and its trainer state; a clear error when there is none."""
    path = latest_checkpoint(output_dir)
    if path is None:
        raise FileNotFoundError(
            f"resume=True but {Path(output_dir) / CHECKPOINT_DIR} holds no complete checkpoint; "
            "train once with save_every_steps=N (CLI: --save-every-steps N) to write one, or start fresh "
            "with resume=False (CLI: without --resume)"
        )
    return path, json.loads((path / STATE_NAME).read_text())


def load_checkpoint(accelerator, output_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Restore Accelerate's state from the latest checkpoint; return the trainer state and any best weights."""
    path, state = read_trainer_state(output_dir)
    accelerator.load_state(str(path))
    best_weights = None
    if (path / BEST_WEIGHTS).is_file():
        from safetensors.torch import load_file

        best_weights = load_file(str(path / BEST_WEIGHTS))
    return state, best_weights


def _prune(root: Path, keep: int) -> None:
    checkpoints = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in checkpoints[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
