"""One CLI run's record for benchmarks/ner/results/: its command, applied settings, metrics, time and memory.

    /usr/bin/time -v -o runs/ner-cli.time nlptl train --task token-classification --dataset conll2003 \
        --data-dir ../shared/data --encoder minilm --output-dir runs/ner-cli
    python benchmarks/ner/record_cli_run.py runs/ner-cli --time-log runs/ner-cli.time \
        --output benchmarks/ner/results/cli-minilm-full-defaults.json

Reads the run directory's config.json and metrics.json (what nlptl wrote) and, from GNU time's
``-v`` log, the wall-clock time and peak resident memory. summarize.py leaves these records out of
the preset table (they have no ``config`` key); the report quotes them on their own.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from nlptl.artifacts import write_text_atomically


def from_time_log(text: str) -> dict:
    """Wall clock and peak RSS from ``/usr/bin/time -v`` output."""
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        raise ValueError("the time log has no wall-clock or maximum-RSS line: was it written by /usr/bin/time -v?")
    return {"wall_clock": f"{wall.group(1)} (time -v)", "peak_memory_mb": int(rss.group(1)) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the --output-dir of a finished nlptl train")
    parser.add_argument("--time-log", type=Path, required=True, help="the file /usr/bin/time -v -o wrote")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    for path in (args.run_dir / "config.json", args.run_dir / "metrics.json", args.time_log):
        if not path.is_file():
            parser.error(f"{path} does not exist: run the command in this script's docstring first")
    config = json.loads((args.run_dir / "config.json").read_text())
    results = json.loads((args.run_dir / "metrics.json").read_text())
    record = {"command": config["command"], "seed": config["applied"]["seed"], "applied": config["applied"],
              "metrics": results["metrics"], "train_seconds": results["train_seconds"],
              "train_size": results["train_size"], "eval_size": results["eval_size"],
              **from_time_log(args.time_log.read_text())}
    write_text_atomically(args.output, json.dumps(record, indent=2) + "\n")
    print(f"F1 {record['metrics']['f1']:.4f}, {record['wall_clock']}, {record['peak_memory_mb']:.0f} MB -> {args.output}")


if __name__ == "__main__":
    main()
