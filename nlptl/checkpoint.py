"""Complete, atomic training checkpoints for exact resume.

``output_dir/checkpoints/checkpoint-<step>/`` holds Accelerate's state (model, optimizer,
scheduler, RNG states of every process) plus ``trainer_state.json`` (epoch, position in the
epoch, history, early-stopping state) and, once early stopping has a best epoch,
``best_weights.safetensors`` (the weights it will restore at the end). A checkpoint is written
to a temporary directory and renamed into place; the ``latest`` pointer is replaced atomically
afterwards, so a kill at any moment leaves the previous complete checkpoint as "latest". A
damaged or missing pointer falls back to the newest complete checkpoint; a damaged RNG state or
any pickled file that is more than plain state is an error naming the file.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from .artifacts import write_text_atomically  # re-exported: runs.py and others import it from here

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_NAME = "trainer_state.json"
BEST_WEIGHTS = "best_weights.safetensors"
RNG_STATE_NAME = "random_states"  # accelerate's name: random_states_<process index>.pkl


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
    """The checkpoint ``latest`` names; when that pointer is missing or damaged, the newest complete one."""
    root = Path(output_dir) / CHECKPOINT_DIR
    complete = complete_checkpoints(output_dir)
    try:
        named = (root / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        named = None
    for path in complete:
        if path.name == named:
            return path
    if complete and (root / LATEST).exists():
        warnings.warn(f"{root / LATEST} names {named!r:.60}, which is not a complete checkpoint; resuming from the "
                      f"newest complete one, {complete[0].name}", UserWarning, stacklevel=2)
    return complete[0] if complete else None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints whose trainer_state.json parses (the last file a save writes), newest step first."""
    found = []
    for path in (Path(output_dir) / CHECKPOINT_DIR).glob("checkpoint-*"):
        step = path.name.partition("-")[2]
        if not step.isdigit() or not path.is_dir():
            continue
        try:
            json.loads((path / STATE_NAME).read_text())
        except (OSError, ValueError):
            continue
        found.append((int(step), path))
    return [path for _, path in sorted(found, reverse=True)]


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
    """Restore Accelerate's state from the latest checkpoint; return the trainer state and any best weights.

    Every pickled file is checked first with ``torch.load(weights_only=True)``: Accelerate reads
    its RNG states that way but, when they fail, only logs and trains on with fresh RNG (a silent
    divergence), and it reads objects registered with ``register_for_checkpointing`` with
    ``weights_only=False``, which would run whatever code a crafted file names.
    """
    path, state = read_trainer_state(output_dir)
    check_pickles(path, accelerator.process_index)
    try:
        accelerator.load_state(str(path))
    except Exception as exc:
        raise ValueError(f"cannot restore the training state from {path} ({type(exc).__name__}: {exc}); the checkpoint "
                         "is damaged or was written for another model or optimizer: delete it to resume from the one "
                         "before, or start fresh without resume") from exc
    best_weights = None
    if (path / BEST_WEIGHTS).is_file():
        from .encoders.weights import load_safetensors

        best_weights = load_safetensors(path / BEST_WEIGHTS)
    return state, best_weights


def check_pickles(checkpoint: Path, process_index: int = 0) -> None:
    """Refuse a checkpoint whose pickled files are damaged or hold more than plain states; name the file."""
    rng_file = checkpoint / f"{RNG_STATE_NAME}_{process_index}.pkl"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} is missing: without it a resumed run would draw different random "
                                "numbers than the interrupted one; resume from another checkpoint or start fresh")
    # The .bin files (optimizer, scheduler, sampler) Accelerate itself reads with weights_only=True and
    # raises on; the .pkl ones it reads leniently (RNG) or with weights_only=False (custom objects).
    for file in sorted(checkpoint.glob("*.pkl")):
        states = _load_plain(file)
        if file == rng_file:
            _check_rng_state(rng_file, states)


def _load_plain(file: Path) -> Any:
    from accelerate.utils import load  # torch.load(weights_only=True) plus numpy's RNG-state types

    try:
        return load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{file} cannot be read as plain training state ({type(exc).__name__}: {str(exc)[:200]}); it "
                         "is damaged, or holds objects nlptl refuses to unpickle: delete this checkpoint to resume "
                         "from the one before, or start fresh") from None


def _check_rng_state(file: Path, states: Any) -> None:
    """Apply the saved RNG states in a sandbox (then restore ours): a damaged one raises here, not never."""
    import random

    import numpy as np
    import torch

    needed = ("random_state", "numpy_random_seed", "torch_manual_seed")
    if not isinstance(states, dict) or any(key not in states for key in needed):
        raise ValueError(f"{file} is not an RNG state file (needs {', '.join(needed)}); the checkpoint is damaged: "
                         "delete it to resume from the one before, or start fresh")
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])
        torch.set_rng_state(states["torch_manual_seed"])
    except Exception as exc:
        raise ValueError(f"{file}: the RNG state is damaged ({type(exc).__name__}: {exc}); a resumed run would not "
                         "repeat the interrupted one: delete this checkpoint to resume from the one before, or start "
                         "fresh") from None
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def _prune(root: Path, keep: int) -> None:
    checkpoints = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in checkpoints[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
