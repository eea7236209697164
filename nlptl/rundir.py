"""Run directories that never mix two runs: checked before anything is written.

Why: a fresh run in a directory holding an earlier run's checkpoints used to prune them, or a
later ``--resume`` continued the other experiment; a failing re-run could overwrite the
finished run's ``config.json`` before failing. So the training engine calls
``check_run_directory`` first, before it writes a byte:

* ``resume=False``: a directory that holds checkpoints or a finished run (``config.json``,
  ``metrics.json``, ``model/``) is refused, naming ``resume=True`` (CLI ``--resume``) and another
  output directory as the ways on, unless ``overwrite=True``; then the earlier run's nlptl
  pieces (``RUN_PIECES``) are removed, and nothing else. ``feature_cache/`` is kept: its entries
  are named by a hash of weights, settings and inputs, so a new run only reuses what matches.
* ``resume=True``: there must be a complete checkpoint, and the fingerprint recorded with the
  checkpoints (``write_fingerprint``, ``checkpoints/run_fingerprint.json``) must equal the one
  given; otherwise the error lists each differing key, old value against new.

A fingerprint is any JSON-able dict the engine chooses: the training settings that change what a
checkpoint means (model, strategy, learning rates, batch size, seed, ...) and data fingerprints
(``nlptl.data.dataset_fingerprint``). Leave out what may change on resume (``resume``, paths,
progress bars).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from .artifacts import foreign_files, write_text_atomically
from .checkpoint import CHECKPOINT_DIR, LATEST, read_trainer_state

FINGERPRINT_NAME = "run_fingerprint.json"
FINISHED_PIECES = ("config.json", "metrics.json", "model")
# Everything an nlptl run writes into its directory except feature_cache/ (reusable, see above).
RUN_PIECES = ("checkpoints", "model", "log.jsonl", "metrics.json", "config.json", "predictions.json",
              "run_config.json", "report.md", "report.json", "learning_curves.png", "confusion_matrix.png",
              "per_class.png", "size_curve.png")
_MODEL_MARKER = "nlptl_model.json"


def check_run_directory(output_dir: str | os.PathLike, resume: bool, fingerprint: dict[str, Any] | None,
                        overwrite: bool = False, remove: bool = True) -> None:
    """Refuse to start a run that would mix with an earlier one in ``output_dir``; see the module docstring.

    ``fingerprint=None`` skips the resume comparison (a caller that leaves it to ``fit``);
    ``remove=False`` checks an ``overwrite`` without deleting (the other processes of a
    distributed run, while the main one deletes).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output_dir {str(out)!r} is a file; pass a directory (CLI: --output-dir)")
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True contradict each other: resume continues the run in "
                         "output_dir, overwrite deletes it; pass one of them")
    if resume:
        if fingerprint is not None:
            _check_resumable(out, fingerprint)
        return
    earlier = earlier_run_pieces(out)
    if not earlier:
        return
    if not overwrite:
        raise FileExistsError(
            f"output_dir {str(out)!r} already holds an earlier run ({', '.join(earlier)}); a fresh run there would "
            "mix with it. Continue that run with resume=True (CLI: --resume), or choose another --output-dir "
            "(output_dir=), or pass overwrite=True (CLI: --overwrite) to delete the earlier run's files first")
    if remove:
        remove_run_pieces(out)
    else:
        _check_removable(out)


def earlier_run_pieces(out: Path) -> list[str]:
    """What in ``out`` shows an earlier run: checkpoints, or a finished run's config, metrics or model."""
    found = [name for name in FINISHED_PIECES if (out / name).exists()]
    root = out / CHECKPOINT_DIR
    if root.is_dir() and any(p.name.startswith(("checkpoint-", ".tmp-checkpoint-")) or p.name == LATEST
                             for p in root.iterdir()):
        found.insert(0, f"{CHECKPOINT_DIR}/")
    return found


def _check_removable(out: Path) -> None:
    model = out / "model"
    if model.exists():
        foreign = foreign_files(model) if (model / _MODEL_MARKER).is_file() else None
        if foreign is None or foreign:
            what = f"it also holds {', '.join(map(repr, foreign[:5]))}" if foreign else f"it has no {_MODEL_MARKER}"
            raise FileExistsError(f"overwrite=True would delete {model}, but it is not only a saved nlptl model "
                                  f"({what}); move it away or choose another --output-dir")


def remove_run_pieces(out: Path) -> None:
    """Delete an earlier run's nlptl files (``RUN_PIECES``), refusing first if any of them holds foreign files."""
    _check_removable(out)
    for name in RUN_PIECES:
        path = out / name
        if name == CHECKPOINT_DIR and path.is_dir():
            _remove_checkpoints(path)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for evaluation in out.glob("eval-*.json"):  # `nlptl evaluate` outputs of the earlier model
        evaluation.unlink()


def _remove_checkpoints(root: Path) -> None:
    for path in root.iterdir():
        if path.name.startswith(("checkpoint-", ".tmp-checkpoint-")) and path.is_dir():
            shutil.rmtree(path)
        elif path.name in (LATEST, FINGERPRINT_NAME) or (path.name.startswith(".") and path.name.endswith(".tmp")):
            path.unlink()
    if not any(root.iterdir()):
        root.rmdir()


def write_fingerprint(output_dir: str | os.PathLike, fingerprint: dict[str, Any]) -> Path:
    """Record which run the checkpoints in ``output_dir`` belong to; resume compares against it."""
    root = Path(output_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / FINGERPRINT_NAME
    write_text_atomically(path, json.dumps({"fingerprint": _normalized(fingerprint)}, indent=1, sort_keys=True))
    return path


def read_fingerprint(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded fingerprint, None when none was recorded; a damaged file is an error naming it."""
    path = Path(output_dir) / CHECKPOINT_DIR / FINGERPRINT_NAME
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())["fingerprint"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc}), so resume cannot check the checkpoints "
                         "belong to this run; delete the file to resume without that check") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: 'fingerprint' is not a JSON object; delete the file to resume without the check")
    return recorded


def fingerprint_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: old (checkpoint) vs new (now)' for every dotted key whose value differs."""
    old, new = _flatten(_normalized(recorded)), _flatten(_normalized(current))
    missing = object()
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)[:80]  # noqa: E731
            out.append(f"{key}: {show(a)} in the checkpoint vs {show(b)} now")
    return out


def _check_resumable(out: Path, fingerprint: dict[str, Any]) -> None:
    read_trainer_state(out)  # raises, saying how, when there is no complete checkpoint
    recorded = read_fingerprint(out)
    if recorded is None:
        warnings.warn(f"{out / CHECKPOINT_DIR} records no run fingerprint (written by an older nlptl), so resume "
                      "cannot check the checkpoints belong to this configuration and data", UserWarning, stacklevel=3)
        return
    differences = fingerprint_differences(recorded, fingerprint)
    if differences:
        raise ValueError(
            f"resume=True but the checkpoints in {out / CHECKPOINT_DIR} belong to another run: "
            + "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
            + ". Resume with the settings and data of that run, or start this one in another --output-dir "
            "(or overwrite=True / --overwrite without --resume to replace it)")


def _normalized(value: Any) -> Any:
    """What the value reads back as from JSON (tuples become lists, paths strings), so comparisons are fair."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}
