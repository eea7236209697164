"""Pre-registered: should the extractive-QA head fine-tune the encoder at 1e-4 by default?

    python benchmarks/qa/choose_encoder_rate.py --data-dir ../shared/data

`nlptl train --task extractive-qa --dataset squad --data-dir ../shared/data --encoder minilm` with
every default (encoder 5e-5, head 1e-3, full fine-tuning, 3 epochs, batch 32) scored EM 4.4 / F1
9.4 on the held-out articles (2026-12-07). The question, written down before any run here: does the
rate the token-classification head already declares (1e-4, for the same reason: per-token outputs
ask more of a sentence-embedding encoder) do better?

Chosen on the training articles only: the 70% that the CLI trains on (its article split, seed 0,
319 questions) are cut into 3 folds of whole articles (seeded), and each arm trains on two folds and
is scored on the third, three times. Both arms run exactly the CLI's training path (``nlptl.runs``),
differing only in the encoder rate. Rule: set ``ExtractiveQAHead.encoder_learning_rate`` to 1e-4 if
its F1 over the three held-out folds (weighted by questions) beats 5e-5 by at least 1 point and it
wins on at least 2 of the 3 folds; otherwise keep 5e-5. Writes ``results.json`` beside this script.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nlptl import data
from nlptl.artifacts import write_text_atomically
from nlptl.runs import RunConfig, _train

HERE = Path(__file__).resolve().parent
RATES = {"5e-5 (today's default)": None, "1e-4": 1e-4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    questions = data.load_dataset("squad", split="validation", data_dir=args.data_dir)
    train, _ = data.split_by_article(questions, eval_fraction=0.3, seed=0)  # the CLI's training articles
    titles = sorted(set(train["title"]))
    order = np.random.default_rng(0).permutation(len(titles))
    folds = [{titles[i] for i in order[k::3]} for k in range(3)]
    result = {"command": "python benchmarks/qa/choose_encoder_rate.py --data-dir ../shared/data",
              "folds": [sorted(f) for f in folds], "arms": {}}
    for name, rate in RATES.items():
        arm = result["arms"][name] = {"folds": []}
        for held in folds:
            fit_rows = train.filter(lambda row: row["title"] not in held)
            dev = train.filter(lambda row: row["title"] in held)
            with tempfile.TemporaryDirectory() as out:
                rates = {"learning_rate": rate, "head_learning_rate": 1e-3} if rate else {}
                config = RunConfig(task="extractive-qa", dataset="squad", data_dir=args.data_dir, encoder="minilm",
                                   output_dir=out, seed=0, **rates)
                started = time.perf_counter()
                metrics = _train(config, fit_rows, dev)[0]["metrics"]
            arm["folds"].append({"train": len(fit_rows), "dev": len(dev), "exact_match": metrics["exact_match"],
                                 "f1": metrics["f1"], "seconds": round(time.perf_counter() - started, 1)})
            print(name, arm["folds"][-1], flush=True)
        sizes = np.array([f["dev"] for f in arm["folds"]])
        arm["f1"] = float(np.average([f["f1"] for f in arm["folds"]], weights=sizes))
        arm["exact_match"] = float(np.average([f["exact_match"] for f in arm["folds"]], weights=sizes))
    new, old = result["arms"]["1e-4"], result["arms"]["5e-5 (today's default)"]
    gain = new["f1"] - old["f1"]
    wins = sum(a["f1"] > b["f1"] for a, b in zip(new["folds"], old["folds"]))
    adopt = gain >= 1.0 and wins >= 2
    result["verdict"] = (f"1e-4 minus 5e-5: {gain:+.2f} F1 over the held-out folds, better on {wins} of 3: "
                         + ("adopt 1e-4" if adopt else "keep 5e-5"))
    print(result["verdict"])
    write_text_atomically(HERE / "results.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
