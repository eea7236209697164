"""Did the engine redesign cost speed? The quick suite before and after it, alternating, in one run.

    python benchmarks/engine/before_after.py                       # before = c35aeb0, the last commit before the engine
    python benchmarks/engine/before_after.py --rounds 3 --cases 1,2,3

Each side runs its own commit's ``benchmarks/run.py --suite quick`` (its nlptl first on PYTHONPATH,
the same virtual environment, so the peers are the same library versions). The sides alternate
(before, after, before, after, ...) so that a change in the machine's load hits both alike. Every
case's ratio is nlptl against its peer measured side by side inside one run, so the question "did
the ratios fall?" compares ratios, never absolute times across runs.

The "before" checkout is a ``git worktree`` in a fresh temporary directory that this script
creates and removes; nothing in the working tree is touched. Writes ``--output`` (default
benchmarks/engine/before_after.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from nlptl.artifacts import write_text_atomically

ROOT = Path(__file__).resolve().parents[2]
ENGINE_COMMIT = "5d54efb"  # "Engine: TrainConfig, pluggable objectives, named sources, ..."
BEFORE = "c35aeb0"  # its parent


def run_side(root: Path, cases: str, data_dir: Path, output: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), HF_HUB_OFFLINE="1")
    command = [sys.executable, str(root / "benchmarks" / "run.py"), "--suite", "quick", "--cases", cases,
               "--data-dir", str(data_dir), "--output", str(output), "--threads", str(threads)]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, env=env, cwd=root, check=True, stdout=subprocess.DEVNULL)
    return json.loads(output.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="commit to compare against (default: the engine's parent)")
    parser.add_argument("--rounds", type=int, default=2, help="before/after pairs, alternating")
    parser.add_argument("--cases", default="1,2,3,4,5,6", help="quick-suite cases both commits have")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "engine" / "before_after.json")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    before_sha = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.strip()
    after_sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip()

    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="nlptl-before-after-") as scratch:
        worktree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), before_sha], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        try:
            for round_index in range(args.rounds):
                for side, root in (("before", worktree), ("after", ROOT)):
                    out = Path(scratch) / f"{side}-{round_index}.json"
                    runs[side].append(run_side(root, args.cases, args.data_dir, out, args.threads))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)

    table = []
    for case in args.cases.split(","):
        row = {"case": case}
        for side in ("before", "after"):
            results = [next(r for r in run["results"] if r["case"] == case) for run in runs[side]]
            row[f"{side}_ratios"] = [r["ratio"] for r in results]
            row[f"{side}_seconds"] = [{"nlptl": r["nlptl_seconds"], "peer": r["peer_seconds"]} for r in results]
            row[f"{side}_mean"] = statistics.mean(row[f"{side}_ratios"])
            row["name"], row["target"], row["direction"] = results[0]["name"], results[0]["target"], results[0]["target_direction"]
        better_is_higher = row["direction"] == ">="
        change = row["after_mean"] / row["before_mean"]
        row["after_over_before"] = change
        row["fell"] = change < 1 if better_is_higher else change > 1
        table.append(row)

    report = {"command": "python benchmarks/engine/before_after.py " + " ".join(sys.argv[1:]),
              "before": before_sha, "after": after_sha, "rounds": args.rounds, "threads": args.threads,
              "environment": runs["after"][0]["environment"], "cases": table}
    write_text_atomically(args.output, json.dumps(report, indent=2) + "\n")
    print(f"{'case':<5} {'before (' + before_sha + ')':<24} {'after (' + after_sha + ')':<24} after/before  target")
    for row in table:
        before = ", ".join(f"{r:.2f}" for r in row["before_ratios"])
        after = ", ".join(f"{r:.2f}" for r in row["after_ratios"])
        print(f"{row['case']:<5} {before:<24} {after:<24} {row['after_over_before']:<13.3f} {row['direction']} {row['target']}")


if __name__ == "__main__":
    main()
