"""``nlptl auto``: rank, choose encoder + strategy + freeze line, train it and the baselines, report why.

Everything trains through ``nlptl.runs.run(RunConfig(...))``, so each run directory is a normal
one (``nlptl evaluate`` / ``nlptl report`` work on it). The budget is a wall-clock plan: the
ranking measures how fast the chosen encoder's forward pass is on this machine, and the number of
epochs is the most (up to 3) whose estimated cost, with the baselines', fits in what is left.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from .pipeline import rank_texts

__all__ = ["auto", "estimate_epoch_seconds", "MAX_EPOCHS"]

MAX_EPOCHS = 3
BACKWARD_FACTOR = 3.0  # forward + backward of a trained layer ~ 3 forwards (the usual 1:2 rule)


def estimate_epoch_seconds(forward_per_row: float, n_train: int, n_eval: int, strategy: str, top_k: int | None,
                           num_groups: int) -> float:
    """Rough seconds for one epoch: trained groups forward + backward, plus one evaluation pass.

    Feature extraction and top_k cache what is below the freeze line, so after the first epoch
    only the trained fraction of the encoder runs; the first epoch's caching pass is counted once
    in :func:`_run_seconds`.
    """
    if strategy == "feature_extraction":
        trained_fraction = 0.0
    elif strategy == "top_k":
        trained_fraction = (top_k or 0) / num_groups
    else:
        trained_fraction = 1.0
    return forward_per_row * (n_train * BACKWARD_FACTOR * trained_fraction + n_eval * (trained_fraction or 0.05))


def _run_seconds(forward_per_row: float, n_train: int, n_eval: int, strategy: str, top_k: int | None,
                 num_groups: int, epochs: int) -> float:
    caching = forward_per_row * n_train if strategy in ("feature_extraction", "top_k") else 0.0
    return caching + epochs * estimate_epoch_seconds(forward_per_row, n_train, n_eval, strategy, top_k, num_groups)


def _accuracy(run_dir: Path) -> float | None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics.get("metrics", {}).get("accuracy")


def auto(data: dict[str, Any], output_dir: str | Path, budget_minutes: float = 20.0,
         sources: Sequence[str] = ("minilm", "glove-6b-50d", "tfidf"), sample: int = 2000, seed: int = 0,
         command: str | None = None) -> dict[str, Any]:
    """Rank, choose, train the choice and the baselines within ``budget_minutes``; write report.md + metrics.json.

    ``data`` holds the RunConfig data fields (dataset, data_dir, dataset_options, train_size,
    train_file, eval_file ...), shared by every run so all of them see the same rows.
    """
    from ..runs import RunConfig, load_splits, run

    started = time.perf_counter()
    budget = budget_minutes * 60.0
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = {**data, "seed": seed}
    train, evaluation = load_splits(RunConfig(output_dir=str(out / "tfidf_lr"), baseline="tfidf_lr", **common))
    ranking = rank_texts(list(train["text"]), list(train["label"]), sources=sources, sample=sample, seed=seed)
    (out / "rank.json").write_text(json.dumps(ranking, indent=2))
    choice = dict(ranking["recommendation"])
    runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    def train_run(name: str, **settings: Any) -> None:
        directory = out / name
        run_started = time.perf_counter()
        run(RunConfig(output_dir=str(directory), **common, **settings), command=command)
        runs[name] = {"dir": str(directory), "accuracy": _accuracy(directory), "settings": settings,
                      "seconds": time.perf_counter() - run_started}

    train_run("tfidf_lr", baseline="tfidf_lr")  # seconds: always affordable, and the bar to beat
    if choice["baseline"] is None:
        encoder = choice["encoder"]
        rows = [r for r in ranking["candidates"] if r["source"] == encoder]
        num_groups = max((r["depth"] or 1) for r in rows)
        forward = sum(r["feature_seconds"] for r in rows) / ranking["sample"]  # one full pass, per row
        n_train, n_eval = len(train), len(evaluation)
        left = budget - (time.perf_counter() - started)
        scratch = _run_seconds(forward, n_train, n_eval, "full", None, num_groups, 1)
        reserve = scratch if scratch < 0.4 * left else 0.0  # the from-scratch baseline only if it is cheap enough
        epochs = 0
        for candidate_epochs in range(MAX_EPOCHS, 0, -1):
            cost = _run_seconds(forward, n_train, n_eval, choice["strategy"], choice["top_k"], num_groups,
                                candidate_epochs)
            if cost <= left - reserve:
                epochs = candidate_epochs
                break
        if epochs == 0 and choice["strategy"] != "feature_extraction":
            notes.append(f"{choice['strategy']} (top_k={choice['top_k']}) does not fit one epoch in the budget; "
                         "fell back to feature extraction")
            choice.update(strategy="feature_extraction", top_k=0)
            epochs = 1
        epochs = max(epochs, 1)
        choice["epochs"] = epochs
        choice["estimated_seconds"] = _run_seconds(forward, n_train, n_eval, choice["strategy"], choice["top_k"],
                                                   num_groups, epochs)
        settings = {"encoder": encoder, "strategy": choice["strategy"], "epochs": epochs}
        if choice["strategy"] == "top_k":
            settings["top_k"] = choice["top_k"]
        train_run("chosen", **settings)
        if reserve and budget - (time.perf_counter() - started) >= scratch:
            train_run("from_scratch", encoder=encoder, baseline="from_scratch", strategy="full", epochs=1)
        else:
            notes.append(f"from-scratch baseline skipped: one epoch was estimated at {scratch:.0f} s, more than "
                         "the budget had left")
    else:
        notes.append("the ranking put TF-IDF first, so the TF-IDF baseline is the choice")
    best_name = "chosen" if "chosen" in runs else "tfidf_lr"
    baselines = {k: v["accuracy"] for k, v in runs.items() if k != "chosen" and v["accuracy"] is not None}
    chosen_accuracy = runs[best_name]["accuracy"]
    negative = "chosen" in runs and bool(baselines) and chosen_accuracy < max(baselines.values())
    result = {"choice": choice, "runs": runs, "negative_transfer": negative, "budget_minutes": budget_minutes,
              "seconds": time.perf_counter() - started, "rank_seconds": ranking["seconds"], "notes": notes,
              "top_candidates": [{k: r[k] for k in ("name", "logme", "h_score", "knn_accuracy", "rank")}
                                 for r in ranking["candidates"][:5]],
              "freeze_advice": ranking["freeze_advice"], "train_size": len(train), "eval_size": len(evaluation)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(_report(result, ranking, command))
    return result


def _report(result: dict[str, Any], ranking: dict[str, Any], command: str | None) -> str:
    choice, runs = result["choice"], result["runs"]
    lines = ["# nlptl auto", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Ranked {len(ranking['candidates'])} candidates on {ranking['sample']} training rows in "
              f"{ranking['seconds']:.0f} s, then trained within a {result['budget_minutes']:g}-minute budget "
              f"({result['seconds'] / 60:.1f} minutes used in all).", "", "## The choice", ""]
    if choice["baseline"]:
        lines.append(choice["reason"] + ".")
    else:
        how = ("feature extraction (encoder frozen, head trained)" if choice["strategy"] == "feature_extraction"
               else f"the top {choice['top_k']} layer groups fine-tuned, the rest frozen")
        lines.append(f"**{choice['encoder']}** with {how}, {choice['epochs']} epoch(s) (estimated "
                     f"{choice['estimated_seconds']:.0f} s). Why: {choice['reason']}.")
    lines += ["", "| rank | candidate | LogME | H-score | kNN acc |", "|---|---|---|---|---|"]
    lines += [f"| {r['rank']} | {r['name']} | {r['logme']:.4f} | {r['h_score']:.4f} | {r['knn_accuracy']:.3f} |"
              for r in result["top_candidates"]]
    for source, advice in result["freeze_advice"].items():
        curve = ", ".join(f"{g} {s:.3f}" for g, s in zip(advice["groups"], advice["curve"]))
        lines += ["", f"{source} LogME per depth (bottom to top): {curve}."]
    lines += ["", "## Result", "", "| run | accuracy | seconds |", "|---|---|---|"]
    for name, r in runs.items():
        accuracy = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"| {name} | {accuracy} | {r['seconds']:.0f} |")
    lines.append("")
    if "chosen" in runs:
        if result["negative_transfer"]:
            lines.append("**Negative transfer**: the chosen transfer run lost to a baseline above.")
        else:
            lines.append("Transfer helped: the chosen run beat every baseline trained here.")
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
