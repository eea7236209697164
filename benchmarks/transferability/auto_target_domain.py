"""`nlptl auto` told about a target domain: train on Amazon books, adapt to kitchen text, score on kitchen.

    python benchmarks/transferability/auto_target_domain.py --data-dir ../shared/data

The transductive protocol of ``../shared/data/README.md`` (as in ``recipes/domain_adaptation.py``):
the 2,000 labelled source reviews train, the 2,000 target reviews' text is the unlabelled
file, and accuracy is on those target reviews. The script writes the target domain as two files
a user would have, under ``--runs`` (not committed): ``<target>.jsonl`` (text and label, the
evaluation file) and ``<target>-text.jsonl`` (text only, the ``--unlabeled-file``), then runs, at
every default (nothing tuned; ``--budget-minutes`` is passed on when given):

    nlptl auto --task text-classification --dataset amazon_reviews --domain books --data-dir DATA \\
        --eval-file RUNS/books-kitchen-data/kitchen.jsonl \\
        --unlabeled-file RUNS/books-kitchen-data/kitchen-text.jsonl --output-dir RUNS/auto-books-kitchen

and copies auto's report.md, metrics.json and rank.json to ``--output`` with ``command.json``
(the command and its wall time).
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
from nlptl.data import load_dataset

HERE = Path(__file__).resolve().parent
DOMAINS = ("books", "dvd", "electronics", "kitchen")


def write_target_files(data_dir: str, target: str, folder: Path) -> tuple[Path, Path]:
    """The target domain as a user would have it: ``<target>.jsonl`` (text, label), ``<target>-text.jsonl`` (text)."""
    reviews = load_dataset("amazon_reviews", domain=target, data_dir=data_dir)["train"]
    names = reviews.features["label"].names
    labelled, text = folder / f"{target}.jsonl", folder / f"{target}-text.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(labelled, "".join(json.dumps({"text": t, "label": names[y]}) + "\n"
                                            for t, y in zip(reviews["text"], reviews["label"])))
    write_text_atomically(text, "".join(json.dumps({"text": t}) + "\n" for t in reviews["text"]))
    return labelled, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--source", default="books", choices=DOMAINS)
    parser.add_argument("--target", default="kitchen", choices=DOMAINS)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the target files and auto's run go")
    parser.add_argument("--output", type=Path, default=None, help="default: auto-SOURCE-TARGET/ beside this script")
    parser.add_argument("--budget-minutes", type=float, default=None, help="passed to nlptl auto (default: its own)")
    args = parser.parse_args()
    pair = f"{args.source}-{args.target}"
    output = args.output or HERE / f"auto-{pair}"
    data_dir, auto_dir = args.runs / f"{pair}-data", args.runs / f"auto-{pair}"
    if args.source == args.target:
        sys.exit("--source and --target must be two different domains")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        sys.exit(f"--budget-minutes must be a number of minutes > 0, got {args.budget_minutes:g}")
    if auto_dir.exists():
        sys.exit(f"{auto_dir} exists: move it away or pass --runs with a fresh folder")

    labelled, text = write_target_files(args.data_dir, args.target, data_dir)
    command = ["auto", "--task", "text-classification", "--dataset", "amazon_reviews", "--domain", args.source,
               "--data-dir", args.data_dir, "--eval-file", str(labelled), "--unlabeled-file", str(text),
               "--output-dir", str(auto_dir)]
    if args.budget_minutes is not None:
        command += ["--budget-minutes", f"{args.budget_minutes:g}"]
    print("$", shlex.join(["nlptl", *command]), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nlptl.cli", *command], check=True)
    wall = time.perf_counter() - started

    output.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "metrics.json", "rank.json"):
        write_bytes_atomically(output / name, (auto_dir / name).read_bytes())
    record = {"command": shlex.join(["python", "benchmarks/transferability/auto_target_domain.py", *sys.argv[1:]]),
              "nlptl_command": shlex.join(["nlptl", *command]), "wall_seconds": round(wall, 1)}
    write_text_atomically(output / "command.json", json.dumps(record, indent=1) + "\n")
    metrics = json.loads((auto_dir / "metrics.json").read_text())
    print(json.dumps({name: run["accuracy"] for name, run in metrics["runs"].items()}))


if __name__ == "__main__":
    main()
