"""`nlptl auto` on SST-2 against the README's CLI defaults, on the same 4,000 training rows.

    python benchmarks/transferability/auto_vs_defaults.py --data-dir ../shared/data

Runs, one after another, in fresh processes and at each command's defaults (nothing tuned):

    nlptl auto  --task text-classification --dataset sst2 --train-size 4000 --output-dir runs/auto-sst2
    nlptl train --task text-classification --dataset sst2 --train-size 4000 --encoder minilm ...
    nlptl train --task text-classification --dataset sst2 --train-size 4000 --encoder glove-6b-50d ...

then copies auto's report.md, metrics.json and rank.json here (``auto-sst2/``) and writes
``auto-sst2/cli-defaults.json`` with each run's accuracy on the 872 validation sentences. The
goal (issue 12): auto ends at least as accurate as the best of the CLI defaults.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from nlptl.artifacts import write_bytes_atomically, write_text_atomically

HERE = Path(__file__).resolve().parent
NLPTL = [sys.executable, "-m", "nlptl.cli"]


def run(command: list[str]) -> float:
    print("$", shlex.join(["nlptl", *command]), flush=True)
    started = time.perf_counter()
    subprocess.run([*NLPTL, *command], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the run directories go")
    parser.add_argument("--output", type=Path, default=HERE / "auto-sst2")
    args = parser.parse_args()
    data = ["--task", "text-classification", "--dataset", "sst2", "--data-dir", args.data_dir, "--train-size", "4000"]
    for name in ("auto-sst2", "default-minilm", "default-glove-6b-50d"):
        if (args.runs / name).exists():
            sys.exit(f"{args.runs / name} exists: move it away or pass --runs with a fresh folder")

    auto_dir = args.runs / "auto-sst2"
    auto_seconds = run(["auto", *data, "--output-dir", str(auto_dir)])
    results = {}
    for encoder in ("minilm", "glove-6b-50d"):
        out = args.runs / f"default-{encoder}"
        command = ["train", *data, "--encoder", encoder, "--output-dir", str(out)]
        wall = run(command)
        metrics = json.loads((out / "metrics.json").read_text())
        results[encoder] = {"command": shlex.join(["nlptl", *command]),
                            "strategy": metrics["extra"]["config"]["strategy"],
                            "epochs": metrics["extra"]["config"]["epochs"],
                            "mixed_precision": metrics["extra"]["config"]["mixed_precision"],
                            "accuracy": metrics["metrics"]["accuracy"], "train_seconds": metrics["train_seconds"],
                            "wall_seconds": round(wall, 1),
                            "per_epoch_accuracy": [h.get("accuracy") for h in metrics["history"]]}

    args.output.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "metrics.json", "rank.json"):
        write_bytes_atomically(args.output / name, (auto_dir / name).read_bytes())
    auto = json.loads((auto_dir / "metrics.json").read_text())
    best = max(results.values(), key=lambda r: r["accuracy"])
    summary = {"note": "README CLI defaults on the same 4,000 seeded SST-2 training rows, scored on validation "
                       "(872), for comparison with nlptl auto (report.md here). Run directories are under "
                       f"{args.runs}/ (not committed).",
               "command": shlex.join(["python", "benchmarks/transferability/auto_vs_defaults.py",
                                      "--data-dir", args.data_dir, "--runs", str(args.runs)]),
               "runs": results,
               "auto": {"accuracy": auto["runs"]["chosen"]["accuracy"], "seconds_total": auto["seconds"],
                        "wall_seconds": round(auto_seconds, 1), "chosen": auto["runs"]["chosen"]["settings"]},
               "goal_met": auto["runs"]["chosen"]["accuracy"] >= best["accuracy"]}
    write_text_atomically(args.output / "cli-defaults.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps({"auto": summary["auto"]["accuracy"], **{k: v["accuracy"] for k, v in results.items()},
                      "goal_met": summary["goal_met"]}))


if __name__ == "__main__":
    main()
