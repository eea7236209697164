"""Recipe: hard parameter sharing — one MiniLM encoder, one head per task, trained together.

    python recipes/multi_task.py --data-dir ../shared/data --output benchmarks/engine/multi_task

Tasks: SST-2 (validation), AG News (test) and Amazon books reviews (a seeded 80/20 split of the
2,000 reviews). Each task trains on ``--train-size`` seeded rows (books: its 1,600). The
multi-task run draws one task per step (``--task-sampling``); each single-task run trains the same
architecture on its task alone with the same batch size and epochs, so both spend the same number
of steps on each task's data. Writes ``<output>/multi_task.json`` and ``report.md``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.data import load_dataset
from nlptl.heads import ClassificationHead
from nlptl.runs import resolve_encoder_source

TASKS = {"sst2": ("sst2", {}, "validation"), "ag_news": ("ag_news", {}, "test"),
         "books": ("amazon_reviews", {"domain": "books"}, None)}


def task_splits(data_dir: str, train_size: int, seed: int) -> dict:
    """{task: (train, eval)}: seeded training subsamples, the standard evaluation splits."""
    splits = {}
    for task, (name, options, eval_split) in TASKS.items():
        data = load_dataset(name, data_dir=data_dir, **options)
        if eval_split is None:  # Amazon: one split of 2,000 reviews
            parts = data["train"].train_test_split(test_size=0.2, seed=seed, stratify_by_column="label")
            train, evaluation = parts["train"], parts["test"]
        else:
            train, evaluation = data["train"], data[eval_split]
        if len(train) > train_size:
            train = train.shuffle(seed=seed).select(range(train_size))
        splits[task] = (train, evaluation)
    return splits


def make_model(tasks: dict, max_length: int) -> nlptl.TransferModel:
    path, kind = resolve_encoder_source("minilm")
    encoder = nlptl.load_encoder(path, kind=kind, max_length=max_length)
    heads = {t: ClassificationHead(len(train.features["label"].names)) for t, (train, _) in tasks.items()}
    labels = {t: train.features["label"].names for t, (train, _) in tasks.items()}
    return nlptl.TransferModel(encoder, heads=heads, labels=labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--task-sampling", default="proportional", choices=["proportional", "temperature", "round_robin"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = task_splits(args.data_dir, args.train_size, args.seed)
    settings = dict(strategy="full", epochs=args.epochs, batch_size=32, seed=args.seed, progress=False,
                    group_by_length=True)
    results = {"settings": {**vars(args), **settings}, "command": "python " + " ".join(map(shlex.quote, sys.argv))}

    model = make_model(splits, args.max_length)
    started = time.perf_counter()
    fitted = nlptl.fit(model, {t: tr for t, (tr, _) in splits.items()}, task_sampling=args.task_sampling, **settings)
    multi = {t: nlptl.evaluate(model, ev, head=t, batch_size=64)["accuracy"] for t, (_, ev) in splits.items()}
    results["multi_task"] = {"accuracy": multi, "seconds": time.perf_counter() - started,
                             "train_seconds": fitted.train_seconds}
    print(json.dumps({"multi_task": multi}), flush=True)

    results["single_task"] = {"accuracy": {}, "seconds": {}}
    for task, (train, evaluation) in splits.items():
        model = make_model({task: (train, evaluation)}, args.max_length)
        started = time.perf_counter()
        nlptl.fit(model, {task: train}, **settings)
        accuracy = nlptl.evaluate(model, evaluation, head=task, batch_size=64)["accuracy"]
        results["single_task"]["accuracy"][task] = accuracy
        results["single_task"]["seconds"][task] = time.perf_counter() - started
        print(json.dumps({"single_task": task, "accuracy": accuracy}), flush=True)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "multi_task.json", json.dumps(results, indent=2))
    write_text_atomically(out / "report.md", report(results, splits))
    print(f"report: {out / 'report.md'}")


def report(results: dict, splits: dict) -> str:
    lines = ["# Hard parameter sharing: SST-2 + AG News + Amazon books on one MiniLM", "",
             f"Command: `{results['command']}`", "",
             "| task | train rows | eval rows | multi-task | single-task | difference |", "|---|---|---|---|---|---|"]
    for task, (train, evaluation) in splits.items():
        m, s = results["multi_task"]["accuracy"][task], results["single_task"]["accuracy"][task]
        lines.append(f"| {task} | {len(train)} | {len(evaluation)} | {m:.3f} | {s:.3f} | {100 * (m - s):+.1f} pts |")
    single_seconds = sum(results["single_task"]["seconds"].values())
    lines += ["", f"Time: multi-task {results['multi_task']['seconds']:.0f} s (one model), single-task "
              f"{single_seconds:.0f} s (three models), training plus evaluation."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
