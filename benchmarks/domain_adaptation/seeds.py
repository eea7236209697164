"""Several seeds of the domain-adaptation table side by side: each method's gain over source-only per seed and on average.

    python benchmarks/domain_adaptation/seeds.py benchmarks/domain_adaptation benchmarks/domain_adaptation/seed1 \
        benchmarks/domain_adaptation/seed2 --output benchmarks/domain_adaptation/seeds.md

Each folder holds a ``domain_adaptation.json`` written by ``recipes/domain_adaptation.py`` with the
same settings except ``seed``. For every method: its 12-pair mean minus source-only's and the
pairs it improves, for each seed; then the same on the pair accuracies averaged over the seeds
(the issue's goal: mean gain >= 1.5 points with >= 9 of 12 pairs improved).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nlptl.artifacts import write_text_atomically

GOAL_POINTS, GOAL_PAIRS = 1.5, 9


def compared(settings: dict) -> dict:
    """The settings that must agree across seeds (older tables have no "limit" key where newer ones have None)."""
    return {k: v for k, v in settings.items() if k not in ("seed", "command") and v is not None}


def load(folders: list[str]) -> list[dict]:
    runs = [json.loads((Path(f) / "domain_adaptation.json").read_text()) for f in folders]
    first = compared(runs[0]["settings"])
    for folder, run in zip(folders, runs):
        other = compared(run["settings"])
        if other != first:
            sys.exit(f"seeds.py: error: {folder} was made with other settings than {folders[0]}: {other} vs {first}")
    seeds = [run["settings"]["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        sys.exit(f"seeds.py: error: the folders repeat a seed ({seeds}); give one run per seed")
    return runs


def gain(pairs: dict, method: str) -> tuple[float, int, int]:
    """(mean gain in points, pairs improved, pairs compared) of ``method`` over source-only."""
    ran = [p for p, row in pairs.items() if method in row and "source_only" in row]
    deltas = [pairs[p][method] - pairs[p]["source_only"] for p in ran]
    return 100 * float(np.mean(deltas)), sum(d > 0 for d in deltas), len(ran)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="one recipe output folder per seed")
    parser.add_argument("--output", default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    runs = load(args.folders)
    seeds = [run["settings"]["seed"] for run in runs]
    pair_names = list(runs[0]["pairs"])
    everywhere = [m for m in runs[0]["pairs"][pair_names[0]]  # a seed may have run fewer methods than seed 0
                  if all(m in run["pairs"][p] for run in runs for p in pair_names)]
    methods = [m for m in everywhere if m not in ("source_only", "target_supervised")]
    averaged = {p: {m: float(np.mean([run["pairs"][p][m] for run in runs])) for m in everywhere} for p in pair_names}
    left_out = [m for m in runs[0]["pairs"][pair_names[0]] if m not in everywhere]
    lines = [f"Seeds {', '.join(map(str, seeds))}; each cell: mean - source-only (points), pairs improved of 12. "
             f"Goal: >= +{GOAL_POINTS} with >= {GOAL_PAIRS} pairs improved."
             + (f" Not run with every seed, so not shown: {', '.join(left_out)}." if left_out else ""), "",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | pairs averaged over seeds | goal met on |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for m in methods:
        cells, met = [], []
        for seed, run in zip(seeds, runs):
            points, better, n = gain(run["pairs"], m)
            cells.append(f"{points:+.2f}, {better}/{n}")
            if points >= GOAL_POINTS and better >= GOAL_PAIRS:
                met.append(f"seed {seed}")
        points, better, n = gain(averaged, m)
        cells.append(f"{points:+.2f}, {better}/{n}")
        if points >= GOAL_POINTS and better >= GOAL_PAIRS:
            met.append("average")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {', '.join(met) or 'none'} |")
    source = [100 * float(np.mean([run["pairs"][p]["source_only"] for p in pair_names])) for run in runs]
    lines += ["", "source-only 12-pair mean by seed: " + ", ".join(f"{v:.2f}" for v in source)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        write_text_atomically(Path(args.output), text)


if __name__ == "__main__":
    main()
