"""Evaluation reports: compare finished run directories in one Markdown page, one JSON, and plots.

    write_report(["runs/scratch", "runs/tfidf", "runs/full", "runs/frozen"], "reports/sst2")

reads each run directory (``config.json`` + ``metrics.json``, and ``predictions.json`` for
classification; see :mod:`nlptl.runs`), ranks the runs on the task's primary metric (accuracy
for classification, F1 for extractive QA) and flags **negative transfer**: a transfer run (no
``baseline``) scoring below the from-scratch baseline trained on the same eval data. The
result is ``report.md`` for a person, ``report.json`` with the same content for a program, and
PNG plots (:mod:`nlptl.plots`). Every score in the report is a percentage (0-100).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import plots

__all__ = ["write_report", "load_run", "build_report"]



def _task_head(task: Any, where: Path):
    """The head class of a run's task: it says the primary metric, the table's metrics and their scale."""
    from .heads import head_class

    try:
        return head_class(task)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


@dataclass
class Run:
    """One run directory, read and checked once; its task's scores are percentages (0-100)."""

    path: Path
    name: str
    config: dict[str, Any]
    record: dict[str, Any]  # metrics.json as written
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    predictions: dict[str, Any] | None = None
    compared_with: list[str] = field(default_factory=list)
    scratch_primary: float | None = None

    def setting(self, key: str) -> Any:
        """A config value, top level first, then under "fit" (both layouts exist)."""
        return self.config.get(key, (self.config.get("fit") or {}).get(key))

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def strategy(self) -> str:
        baseline, strategy = self.config.get("baseline"), self.setting("strategy") or "?"
        if baseline:
            return baseline
        return f"top_k={self.setting('top_k')}" if strategy == "top_k" else strategy

    @property
    def fingerprint(self) -> dict[str, str | None]:
        return self.config.get("data_fingerprint") or {}


def load_run(path: str | Path) -> Run:
    """Read one run directory; errors name the directory and the missing or malformed file."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {str(path)!r} does not exist; pass the output_dir of a training run")
    for needed in ("config.json", "metrics.json"):
        if not (path / needed).is_file():
            raise FileNotFoundError(f"run directory {str(path)!r} has no {needed}; a finished run writes config.json "
                                    f"and metrics.json (is the run still going, or did it crash?)")
    config, record = _read_json(path / "config.json"), _read_json(path / "metrics.json")
    if not isinstance(config, dict) or not isinstance(record, dict):
        raise ValueError(f"run directory {str(path)!r}: config.json and metrics.json must each hold a JSON object")
    task = config.get("task")
    head = _task_head(task, path / "config.json")
    metrics = dict(record.get("metrics") or {})
    primary = head.primary_metric
    if not isinstance(metrics.get(primary), (int, float)):
        raise ValueError(f"{path / 'metrics.json'}: metrics has no number {primary!r} (the {task} primary metric); "
                         f"it has {sorted(metrics)}")
    history = [dict(entry) for entry in record.get("history") or []]
    # reports show percentages; a head says whether its metrics are fractions (scale 100) or already percent
    for scores in [metrics, *history]:
        for key in head.report_metrics:
            if isinstance(scores.get(key), (int, float)):
                scores[key] = head.metric_scale * scores[key]
    predictions = _read_json(path / "predictions.json") if (path / "predictions.json").is_file() else None
    return Run(path, str(config.get("name") or path.name), config, record, metrics, history, predictions)


def build_report(run_dirs: Sequence[str | Path], title: str | None = None) -> dict[str, Any]:
    """Everything report.json holds, computed before anything is written, so bad input writes nothing."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if not run_dirs:
        raise ValueError(f"a report needs a non-empty list of run directories, got {run_dirs!r}")
    runs = [load_run(d) for d in run_dirs]
    tasks = sorted({run.task for run in runs})
    if len(tasks) > 1:
        detail = ", ".join(f"{str(run.path)!r} ({run.task})" for run in runs)
        raise ValueError(f"runs of different tasks {tasks} cannot share one report: {detail}; make one report per task")
    task = tasks[0]
    head = _task_head(task, runs[0].path / "config.json")
    primary = head.primary_metric
    _unique_names(runs)
    _compare_with_scratch(runs, primary)
    best = max(runs, key=lambda run: run.metrics[primary])  # the first listed wins a tie
    scored = [run for run in runs if run.predictions is not None]
    environments = [run.config.get("environment") for run in runs]
    first = runs[0].config
    dataset = first.get("dataset") or (Path(first["eval_file"]).name if first.get("eval_file") else None)
    report = {
        "title": title or (f"{dataset}: " if dataset else "") + f"{task} transfer report",
        "task": task,
        "primary_metric": primary,
        "scale": "percent (0-100)",
        "metric_names": [m for m in head.report_metrics if any(m in run.metrics for run in runs)],
        "best_run": best.name,
        "per_class": _per_class(head, max(scored, key=lambda run: run.metrics[primary])) if scored else None,
        "environment": environments[0] if all(e == environments[0] for e in environments) else None,
        "runs": [_run_entry(run, primary, run is best) for run in runs],
    }
    report["negative_transfer_runs"] = [entry["name"] for entry in report["runs"] if entry["negative_transfer"]]
    report["summary"] = summarize(report)
    report["plots"] = plots.planned(report)
    return report


def write_report(run_dirs: Sequence[str | Path], output_dir: str | Path, title: str | None = None) -> Path:
    """Write report.md, report.json and the PNG plots for these runs into output_dir; returns report.md.

    Each file is written to a temporary name and renamed, and report.md comes last, so a crash
    leaves the previous report (or none), never a half-written one.
    """
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output_dir {str(output)!r} is a file; pass a directory for the report (--output)")
    report = build_report(run_dirs, title)
    output.mkdir(parents=True, exist_ok=True)
    plots.draw(report, output, _write_atomically)
    _write_atomically(output / "report.json", lambda path: path.write_text(json.dumps(report, indent=2) + "\n"))
    _write_atomically(output / "report.md", lambda path: path.write_text(render_markdown(report), encoding="utf-8"))
    for name, file_name in plots.PLOT_FILES.items():
        if name not in report["plots"]:
            (output / file_name).unlink(missing_ok=True)  # a stale plot from an earlier report here
    return output / "report.md"


def summarize(report: dict[str, Any], strong: Callable[[str], str] = str) -> str:
    """The one-paragraph verdict: who won on the primary metric, and did transfer beat from-scratch."""
    primary, runs = report["primary_metric"], report["runs"]
    by_name = {run["name"]: run for run in runs}
    best = by_name[report["best_run"]]
    ranked = sorted(runs, key=lambda run: -run["primary"])
    sentences = [f"{len(runs)} {report['task']} run{'s' if len(runs) > 1 else ''} compared on {primary} (0-100)."]
    runner_up = f", ahead of {ranked[1]['name']} ({ranked[1]['primary']:.2f})" if len(runs) > 1 else ""
    sentences.append(f"Best: {strong(best['name'])} ({best['strategy']}) with {primary} {best['primary']:.2f}"
                     f"{runner_up}.")
    transfer = [run for run in runs if run["baseline"] is None]
    compared = [run for run in transfer if run["gain_vs_scratch"] is not None]
    if not transfer:
        sentences.append("Every run is a baseline, so this report does not judge transfer.")
    elif not compared:
        sentences.append("There is no from-scratch baseline on the same eval data, so whether transfer helped is "
                         "not measured (add a run with baseline='from_scratch').")
    else:
        top = max(compared, key=lambda run: run["primary"])
        verdict = "helped" if top["gain_vs_scratch"] > 0 else "did not help"
        sentences.append(f"Transfer {verdict}: the best transfer run, {top['name']} ({top['primary']:.2f}), is "
                         f"{top['gain_vs_scratch']:+.2f} points versus the from-scratch baseline "
                         f"({top['scratch_primary']:.2f}).")
    negative = [by_name[name] for name in report["negative_transfer_runs"]]
    if negative:
        listed = ", ".join(f"{run['name']} ({run['primary']:.2f} vs {run['scratch_primary']:.2f})" for run in negative)
        sentences.append(f"{strong('Negative transfer')}: {listed} scored below the from-scratch baseline "
                         "on the same eval data.")
    return " ".join(sentences)


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: title, verdict, comparison table, plots, per-class scores, reproducibility."""
    primary, names = report["primary_metric"], report["metric_names"]
    others = [m for m in names if m != primary]
    lines = [f"# {report['title']}", "", summarize(report, strong=lambda text: f"**{text}**"), "",
             "## Results", "",
             f"Scores are percentages (0-100); **{primary}** is the primary metric. "
             "\"vs scratch\" is the difference to the from-scratch baseline on the same eval data (with the same "
             "labelled-set size, else the nearest smaller one; `compared_with` in report.json names it).", ""]
    header = ["Run", "Strategy / baseline", f"{primary} (primary)", *others, "vs scratch", "Train time",
              "Trainable params", "Peak memory (MB)", "Labelled examples", "Flags"]
    lines += [_row(header), _row(["---"] * len(header))]
    for run in report["runs"]:
        flags = (["best"] if run["best"] else []) + (["**NEGATIVE TRANSFER**"] if run["negative_transfer"] else [])
        strategy = f"{run['strategy']} (baseline)" if run["baseline"] else run["strategy"]
        lines.append(_row([
            run["name"], strategy, f"**{run['primary']:.2f}**" if run["best"] else f"{run['primary']:.2f}",
            *[_score(run["metrics"].get(m)) for m in others],
            "" if run["gain_vs_scratch"] is None else f"{run['gain_vs_scratch']:+.2f}",
            _duration(run["train_seconds"]), _count(run["trainable_parameters"]),
            "n/a" if run["peak_memory_mb"] is None else f"{run['peak_memory_mb']:,.0f}",
            "n/a" if run["train_size"] is None else f"{run['train_size']:,}", ", ".join(flags)]))
    unit = (report["per_class"] or {}).get("unit", "class")
    confusion = ("Entity-type confusion of the best run: the gold type (rows) against the type predicted at the "
                 "same span; O = missed (column) or spurious (row)" if unit == "entity type"
                 else "Confusion matrix of the best run")
    captions = {"learning_curves": f"Eval {primary} and train loss per epoch",
                "confusion_matrix": confusion,
                "per_class": f"Per-{unit} precision, recall and F1 of the best run",
                "size_curve": f"{primary.capitalize()} versus labelled-set size, per strategy"}
    if report["plots"]:
        lines += ["", "## Plots", ""]
        for name, file_name in report["plots"].items():
            lines += [f"### {captions[name]}", "", f"![{captions[name]}]({file_name})", ""]
    if report["per_class"]:
        per_class = report["per_class"]
        lines += ["", f"## Per-{unit} scores: {per_class['run']}", "",
                  _row([unit.capitalize(), "Precision", "Recall", "F1", "Support"]), _row(["---"] * 5)]
        for i, label in enumerate(per_class["labels"]):
            lines.append(_row([label, *(_score(per_class[key][i]) for key in ("precision", "recall", "f1")),
                               str(per_class["support"][i])]))
    lines += ["", "## Reproducibility", ""]
    if report["environment"]:
        lines += ["Environment (every run): " + _environment(report["environment"]), ""]
    for run in report["runs"]:
        fingerprint = run["data_fingerprint"]
        lines += [f"### {run['name']}", "", f"- Directory: `{run['run_dir']}`", f"- Seed: {run['seed']}",
                  f"- Train data sha256: `{fingerprint.get('train')}`",
                  f"- Eval data sha256: `{fingerprint.get('eval')}`"]
        if not report["environment"]:
            lines.append("- Environment: " + _environment(run["environment"]))
        lines += ["- Command:", "", "```bash", str(run["command"] or "(not recorded)"), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _run_entry(run: Run, primary: str, best: bool) -> dict[str, Any]:
    record, scratch = run.record, run.scratch_primary
    return {
        "name": run.name, "run_dir": str(run.path), "strategy": run.strategy, "baseline": run.config.get("baseline"),
        "encoder": run.config.get("encoder"), "seed": run.setting("seed"),
        "primary": run.metrics[primary], "metrics": run.metrics, "best": best,
        "negative_transfer": scratch is not None and run.metrics[primary] < scratch,
        "compared_with": run.compared_with, "scratch_primary": scratch,
        "gain_vs_scratch": None if scratch is None else run.metrics[primary] - scratch,
        "train_seconds": record.get("train_seconds"), "trainable_parameters": record.get("trainable_parameters"),
        "total_parameters": record.get("total_parameters"), "peak_memory_mb": record.get("peak_memory_mb"),
        "train_size": record.get("train_size"), "eval_size": record.get("eval_size"), "history": run.history,
        "data_fingerprint": run.fingerprint, "environment": run.config.get("environment"),
        "command": run.config.get("command"), "config": run.config,
    }


def _compare_with_scratch(runs: list[Run], primary: str) -> None:
    """Give each transfer run the from-scratch score it must beat, on the same eval data.

    The reference is the from-scratch runs (averaged over repeats) on the same eval data
    (fingerprint) with the same labelled-set size, else the nearest smaller one: scratch that
    beats transfer with fewer labels is still negative transfer. Scratch trained only on more
    labels than the transfer run is no fair reference, so that run is not judged.
    """
    scratch = [run for run in runs if run.config.get("baseline") == "from_scratch"]
    for run in runs:
        if run.config.get("baseline") is not None or not run.fingerprint.get("eval"):
            continue
        matches = [s for s in scratch if s.fingerprint.get("eval") == run.fingerprint["eval"]]
        size = run.record.get("train_size")
        if size is not None and all(s.record.get("train_size") is not None for s in matches):
            smaller = [s.record["train_size"] for s in matches if s.record["train_size"] <= size]
            matches = [s for s in matches if smaller and s.record["train_size"] == max(smaller)]
        if matches:
            run.compared_with = [s.name for s in matches]
            run.scratch_primary = float(np.mean([s.metrics[primary] for s in matches]))


def _per_class(head, run: Run) -> dict[str, Any] | None:
    """The task's per-class scores (0-100) and confusion matrix from a run's predictions.json."""
    breakdown = head.prediction_breakdown(run.predictions, run.path / "predictions.json")
    return None if breakdown is None else {"run": run.name, **breakdown}


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary sibling, then rename over ``path``: readers see the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun the training run that wrote it") from None


def _unique_names(runs: list[Run]) -> None:
    """Two runs with one name would be one line in a plot legend; suffix the repeats with their directory."""
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name} ({run.path.name} #{seen[run.name]})"


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def _score(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _count(n: int | None) -> str:
    """Parameter counts as people say them: 950, 1.5k, 22.7M, 1.1B."""
    if n is None:
        return "n/a"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale * 0.9995:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _environment(environment: dict[str, Any] | None) -> str:
    return "not recorded" if not environment else ", ".join(f"{key} {value}" for key, value in environment.items())
