"""Recipe: soft parameter sharing (L2-SP) against plain fine-tuning, on 1% of the labels.

    python recipes/l2sp.py --data-dir ../shared/data --output benchmarks/engine/l2sp

With few labels, fine-tuning can wander far from what pretraining learned. L2-SP (Li et al. 2018)
adds alpha/2 * ||w - w_pretrained||^2 for the encoder and beta/2 * ||w_head||^2 for the head, in
place of weight decay. Both arms fine-tune MiniLM fully with the same settings and the default
learning rates (5e-5 encoder, 1e-3 head); "plain" keeps AdamW's decay 0.01. 1% of SST-2 (673
sentences, validation 872) and 1% of the AG News sample (100, test 7,600), seeds 0-2: the seed
draws the subsample and seeds the run. Writes ``<output>/l2sp.json`` and ``report.md``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.data import load_dataset
from nlptl.heads import ClassificationHead
from nlptl.objectives import L2SP, Supervised
from nlptl.runs import resolve_encoder_source

DATASETS = {"sst2": ("validation", 673, 5), "ag_news": ("test", 100, 10)}  # eval split, rows (1%), epochs


def run_once(train, evaluation, objective, epochs: int, seed: int, max_length: int) -> tuple[float, float]:
    path, kind = resolve_encoder_source("minilm")
    encoder = nlptl.load_encoder(path, kind=kind, max_length=max_length)
    labels = train.features["label"].names
    model = nlptl.TransferModel(encoder, ClassificationHead(len(labels)), labels=labels)
    started = time.perf_counter()
    nlptl.fit(model, train, objective=objective, strategy="full", epochs=epochs, batch_size=16, seed=seed,
              progress=False)
    seconds = time.perf_counter() - started
    return nlptl.evaluate(model, evaluation, batch_size=64)["accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {"settings": vars(args), "command": "python " + " ".join(map(shlex.quote, sys.argv)), "datasets": {}}
    for name, (eval_split, rows, epochs) in DATASETS.items():
        data = load_dataset(name, data_dir=args.data_dir)
        per_arm = {"plain": [], "l2sp": []}
        for seed in seeds:
            train = data["train"].shuffle(seed=seed).select(range(rows))
            for arm in per_arm:
                objective = L2SP(alpha=args.alpha, beta=args.beta) if arm == "l2sp" else Supervised()
                accuracy, seconds = run_once(train, data[eval_split], objective, epochs, seed, args.max_length)
                per_arm[arm].append({"seed": seed, "accuracy": accuracy, "train_seconds": seconds})
                print(json.dumps({"dataset": name, "arm": arm, "seed": seed, "accuracy": accuracy}), flush=True)
        results["datasets"][name] = {
            "train_rows": rows, "eval_split": eval_split, "eval_rows": len(data[eval_split]), "epochs": epochs,
            **{arm: {"mean": statistics.mean(r["accuracy"] for r in runs),
                     "std": statistics.stdev(r["accuracy"] for r in runs) if len(runs) > 1 else 0.0, "runs": runs}
               for arm, runs in per_arm.items()}}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "l2sp.json", json.dumps(results, indent=2))
    lines = ["# L2-SP against plain fine-tuning, 1% of the labels, MiniLM", "", f"Command: `{results['command']}`", "",
             "| dataset | train rows | epochs | plain (mean ± std) | L2-SP (mean ± std) | difference |",
             "|---|---|---|---|---|---|"]
    for name, r in results["datasets"].items():
        lines.append(f"| {name} | {r['train_rows']} | {r['epochs']} | {r['plain']['mean']:.3f} ± {r['plain']['std']:.3f} "
                     f"| {r['l2sp']['mean']:.3f} ± {r['l2sp']['std']:.3f} | "
                     f"{100 * (r['l2sp']['mean'] - r['plain']['mean']):+.1f} pts |")
    write_text_atomically(out / "report.md", "\n".join(lines) + "\n")
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
