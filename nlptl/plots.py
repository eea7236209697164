"""The PNG figures of an evaluation report (:mod:`nlptl.report`), drawn with matplotlib's Agg canvas.

Figures are built from ``matplotlib.figure.Figure`` directly, never through ``pyplot``: no global
figure registry and no backend switch, so calling a report from a notebook or a GUI program
leaves its matplotlib state alone. Every function writes one PNG to the path it is given.
Scores are percentages (0-100), like the report tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["PLOT_FILES", "planned", "draw", "learning_curves", "confusion_matrix_plot", "per_class_plot",
           "size_curve"]

PLOT_FILES = {"learning_curves": "learning_curves.png", "confusion_matrix": "confusion_matrix.png",
              "per_class": "per_class.png", "size_curve": "size_curve.png"}
_MANY_LABELS = 20  # above this, cell counts and per-class bars get too small to read


def planned(report: dict[str, Any]) -> dict[str, str]:
    """The plots a report gets (name -> file name): only those its runs have data for."""
    names = []
    if any(run["history"] for run in report["runs"]):
        names.append("learning_curves")
    if report["per_class"]:
        names += ["confusion_matrix", "per_class"]
    if any(len({size for size, _ in pairs}) > 1 for pairs in size_points(report["runs"]).values()):
        names.append("size_curve")  # a size curve needs one strategy trained on several sizes
    return {name: PLOT_FILES[name] for name in names}


def draw(report: dict[str, Any], output: Path, write: Callable[[Path, Callable[[Path], None]], None]) -> None:
    """Draw every planned plot of ``report`` into ``output`` through ``write(path, draw_to)``."""
    primary, per_class = report["primary_metric"], report["per_class"]
    drawers = {
        "learning_curves": lambda path: learning_curves([r for r in report["runs"] if r["history"]], primary, path),
        "confusion_matrix": lambda path: confusion_matrix_plot(
            np.array(per_class["confusion_matrix"]), per_class["confusion_labels"], per_class["run"], path),
        "per_class": lambda path: per_class_plot(per_class["labels"], per_class, per_class["run"], path),
        "size_curve": lambda path: size_curve(size_points(report["runs"]), primary, path),
    }
    for name, file_name in report["plots"].items():
        write(output / file_name, drawers[name])


def size_points(runs: Sequence[dict]) -> dict[str, list[tuple[int, float]]]:
    """(labelled-set size, primary score) pairs per strategy, from report run entries."""
    points: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        if run["train_size"] is not None:
            points.setdefault(run["strategy"], []).append((run["train_size"], run["primary"]))
    return points


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("reports draw their plots with matplotlib; install it with "
                          "`pip install 'nlptl[reports]'` (or `pip install matplotlib`)") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure, path: Path) -> None:
    figure.savefig(path, format="png")  # explicit: path may be a temporary name without .png


def learning_curves(runs: Sequence[dict], primary: str, path: Path) -> None:
    """Eval primary metric (left) and train loss (right) per epoch, one line per run.

    ``runs`` are dicts with "name" and "history" (the metrics.json entries, already in 0-100).
    """
    figure = _figure(11, 4.2)
    metric_axes, loss_axes = figure.subplots(1, 2)
    for run in runs:
        epochs = [entry.get("epoch", i + 1) for i, entry in enumerate(run["history"])]
        scores = [_number(entry.get(primary)) for entry in run["history"]]
        losses = [_number(entry.get("train_loss")) for entry in run["history"]]
        metric_axes.plot(epochs, scores, marker="o", label=run["name"])
        loss_axes.plot(epochs, losses, marker="o", label=run["name"])
    metric_axes.set(title=f"Eval {primary} per epoch", xlabel="epoch", ylabel=f"{primary} (0-100)")
    loss_axes.set(title="Train loss per epoch", xlabel="epoch", ylabel="mean train loss")
    for axes in (metric_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.legend(*metric_axes.get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    _save(figure, path)


def confusion_matrix_plot(matrix: np.ndarray, labels: Sequence[str], run_name: str, path: Path) -> None:
    """Counts with rows = true label and columns = predicted; colour is the share of the true class."""
    k = len(labels)
    side = min(max(4.5, 0.55 * k + 2.5), 16)
    figure = _figure(side + 1.2, side)
    axes = figure.subplots()
    row_totals = matrix.sum(axis=1, keepdims=True)  # (K, 1)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)  # (K, K)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    font = "small" if k <= 10 else "x-small"
    axes.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center",
                    fontsize=font)
    axes.set_yticks(range(k), labels, fontsize=font)
    axes.set(xlabel="predicted label", ylabel="true label", title=f"Confusion matrix: {run_name}")
    if k <= _MANY_LABELS:
        for i in range(k):
            for j in range(k):
                colour = "white" if shares[i, j] > 0.5 else "black"
                axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=font)
    _save(figure, path)


def per_class_plot(labels: Sequence[str], scores: dict[str, Sequence[float]], run_name: str, path: Path) -> None:
    """Grouped bars of precision, recall and F1 (0-100) per class, support in the tick labels."""
    k = len(labels)
    figure = _figure(min(max(6.0, 0.9 * k + 2), 20), 4.5 if k <= 6 else 5.5)
    axes = figure.subplots()
    positions = np.arange(k)
    width = 0.27
    for offset, key in zip((-width, 0.0, width), ("precision", "recall", "f1")):
        axes.bar(positions + offset, scores[key], width, label=key)
    ticks = [f"{label}\n(n={int(n)})" for label, n in zip(labels, scores["support"])]
    axes.set_xticks(positions, ticks, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center",
                    fontsize="small" if k <= _MANY_LABELS else "x-small")
    axes.set(ylim=(0, 105), ylabel="score (0-100)", title=f"Per-class scores: {run_name}")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.18 if k <= 6 else -0.3))
    _save(figure, path)


def size_curve(points: dict[str, list[tuple[int, float]]], primary: str, path: Path) -> None:
    """Primary metric versus labelled-set size, one line per strategy (mean over repeats, every run a dot)."""
    figure = _figure(7, 4.5)
    axes = figure.subplots()
    sizes_seen = []
    for strategy, pairs in sorted(points.items()):
        sizes = sorted({size for size, _ in pairs})
        means = [np.mean([score for size, score in pairs if size == s]) for s in sizes]
        (line,) = axes.plot(sizes, means, marker="o", label=strategy)
        axes.scatter([s for s, _ in pairs], [v for _, v in pairs], color=line.get_color(), alpha=0.4, s=14)
        sizes_seen += sizes
    if sizes_seen and max(sizes_seen) >= 10 * max(min(sizes_seen), 1):
        axes.set_xscale("log")  # learning-curve sizes usually grow geometrically
    axes.set_xticks(sorted(set(sizes_seen)), [f"{s:,}" for s in sorted(set(sizes_seen))])
    axes.minorticks_off()
    axes.set(xlabel="labelled training examples", ylabel=f"{primary} (0-100)",
             title=f"{primary.capitalize()} versus labelled-set size")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    _save(figure, path)


def _number(value) -> float:
    return float("nan") if value is None else float(value)
