"""Where `nlptl auto`'s run-time constants come from: its estimates against the runs it made.

    python benchmarks/transferability/planner_calibration.py

For every transformer run in the given auto output folders (each holds auto's metrics.json and
rank.json), this recomputes the planner's bare estimate (``compute_seconds``: the forward and
backward work, from the forward pass the ranking timed on that machine) and sets it beside the
seconds the run took. It fits ``seconds = a * bare + b`` in log space (every run's ratio counts
alike, so a long run cannot drown out the short ones), and prints the worst ratio of actual to
estimated seconds under the fit and under the constants in use (``OVERHEAD``, ``RUN_SECONDS``):
above 1, auto would overrun its budget by that factor on such a run. It also prints the envelope:
the smallest factor (in steps of 0.05, with ``RUN_SECONDS`` kept) under which no run took more
than ``TOLERANCE`` times its estimate; ``OVERHEAD`` is set to it. Writes planner-calibration.json
beside this script, with the plan today's constants make from each recorded run's own timings
(``replanned``), so a change to them shows which recorded plans it would change.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from nlptl.artifacts import write_text_atomically
from nlptl.transferability.auto import (DEV_FRACTION, OVERHEAD, RUN_SECONDS, compute_seconds, encoder_timing,
                                        estimate_run_seconds, plan_training)

HERE = Path(__file__).resolve().parent
TOLERANCE = 1.1  # a run may take this much more than its estimate
FOLDERS = ("auto-sst2", "auto-sst2-full", "auto-sst2-full/replanned", "auto-books-kitchen",
           "auto-books-kitchen/budget-6min", "auto-books-kitchen/budget-4min", "auto-ag-news",
           "auto-sst2/rerun-planner4")


def runs_of(folder: Path) -> list[dict]:
    """(name, bare estimate, seconds) of each transformer run in one auto output folder."""
    result = json.loads((folder / "metrics.json").read_text())
    ranking = json.loads((folder / "rank.json").read_text())
    choice = result["choice"]
    forward, groups = encoder_timing(ranking, choice["encoder"])  # as auto computes them
    target = (choice.get("adaptation") or {}).get("unlabeled_rows", 0)
    found = []
    for name, run in result["runs"].items():
        settings = run["settings"]
        if settings.get("baseline") == "tfidf_lr":
            continue  # seconds, never planned
        n, n_eval = result["train_size"], result["eval_size"]
        if name.startswith("selection/"):
            n, n_eval = n - choice["dev_rows"], choice["dev_rows"]
        bare = compute_seconds(forward, n, n_eval, settings.get("strategy", "full"), settings.get("top_k"), groups,
                               settings["epochs"], target if settings.get("adaptation") else 0)
        found.append({"folder": str(folder.relative_to(HERE)), "run": name, "bare": round(bare, 1),
                      "seconds": round(run["seconds"], 1)})
    return found


def replan(folder: Path) -> dict:
    """The plan today's planner makes from a recorded auto run's own timings, beside the one it made.

    The time left at planning is the budget less what the run spent outside its transformer runs
    (loading, ranking, the TF-IDF baseline, the A-distance). Adaptation is left out, as auto does
    by default today (``--adapt`` asks for it).
    """
    result = json.loads((folder / "metrics.json").read_text())
    ranking = json.loads((folder / "rank.json").read_text())
    choice = result["choice"]
    forward, groups = encoder_timing(ranking, choice["encoder"])  # as auto computes them
    n, n_eval = result["train_size"], result["eval_size"]
    trained = sum(run["seconds"] for name, run in result["runs"].items() if name != "tfidf_lr")
    left = result["budget_minutes"] * 60 - (result["seconds"] - trained)

    def cost(strategy, top_k, rows, epochs, n_test=n_eval, target_rows=0):
        return estimate_run_seconds(forward, rows, n_test, strategy, top_k, groups, epochs, target_rows)

    advised = (choice["strategy"], choice["top_k"])
    n_dev = max(1, int(round(DEV_FRACTION * n)))
    plan = plan_training(cost, advised, n, n_dev, 0, left)
    epochs, planned = plan["epochs"], [plan["selected"]]
    seconds = sum(cost(*c, n - n_dev, epochs, n_dev) for c in plan["contenders"]) if plan["compare"] else 0.0
    if plan["compare"]:  # the comparison's winner then trains on all rows: the dearer contender is planned for
        planned = plan["contenders"]
    seconds += max(cost(*c, n, epochs) for c in planned)
    # a comparison trains the advised configuration against full fine-tuning; the winner is not planned
    recorded = advised if "dev_accuracy" in choice else (choice["selected_strategy"], choice["selected_top_k"])
    return {"folder": str(folder.relative_to(HERE)), "left_seconds": round(left),
            "recorded": {"compare": "dev_accuracy" in choice, "configuration": list(recorded),
                         "epochs": choice["epochs"]},
            "today": {"compare": plan["compare"], "configuration": list(plan["selected"]), "epochs": epochs,
                      "fits": plan["fits"], "estimated_seconds": round(seconds)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=list(FOLDERS), help="auto output folders beside this script")
    args = parser.parse_args()
    runs = [run for folder in args.folders for run in runs_of(HERE / folder)]
    bare = np.array([r["bare"] for r in runs])
    seconds = np.array([r["seconds"] for r in runs])

    def log_error(p: np.ndarray) -> float:
        return float(np.sum(np.log(seconds / (p[0] * bare + p[1])) ** 2))

    a, b = minimize(log_error, x0=[1.5, 30.0], method="Nelder-Mead").x
    envelope = math.ceil(round(float(np.max((seconds / TOLERANCE - RUN_SECONDS) / bare)) / 0.05, 6)) * 0.05
    ratios = {"fitted": seconds / (a * bare + b), "in use": seconds / (OVERHEAD * bare + RUN_SECONDS)}
    for r, in_use in zip(runs, ratios["in use"]):
        print(f"{r['folder']:32} {r['run']:18} bare {r['bare']:7.1f} s  took {r['seconds']:7.1f} s  "
              f"took/estimate {in_use:.2f}")
    summary = {name: {"max": round(float(x.max()), 2), "min": round(float(x.min()), 2)} for name, x in ratios.items()}
    result = {"command": "python benchmarks/transferability/planner_calibration.py", "runs": runs,
              "fit": {"overhead": round(float(a), 2), "run_seconds": round(float(b), 1)},
              "envelope": {"overhead": round(envelope, 2), "run_seconds": RUN_SECONDS, "tolerance": TOLERANCE},
              "in_use": {"overhead": OVERHEAD, "run_seconds": RUN_SECONDS}, "took_over_estimate": summary}
    result["replanned"] = [replan(HERE / folder) for folder in args.folders]
    for r in result["replanned"]:
        print(f"{r['folder']:32} recorded {r['recorded']}  today {r['today']}")
    write_text_atomically(HERE / "planner-calibration.json", json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("fit", "envelope", "in_use", "took_over_estimate")}))


if __name__ == "__main__":
    main()
