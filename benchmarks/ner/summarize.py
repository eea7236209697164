"""Collect benchmarks/ner/results/*.json into one table (results.json) for report.md."""
from __future__ import annotations

import json
from pathlib import Path

from nlptl.artifacts import write_text_atomically

HERE = Path(__file__).parent
ROWS = ["minilm-full", "minilm-top2", "minilm-frozen", "minilm-frozen-default", "glove-bilstm", "minilm-scratch"]


def main() -> None:
    table = []
    for path in sorted((HERE / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if "config" not in r:  # a CLI run's record (cli-*.json), not a run.py preset: reported on its own
            continue
        m = r["metrics"]
        table.append({"run": path.stem, "config": r["config"], "train_sentences": r["train_sentences"],
                      "dev_sentences": r["dev_sentences"], "f1": m.get("f1"), "viterbi_f1": m.get("viterbi_f1"),
                      "argmax_f1": m.get("argmax_f1"), "macro_f1": m.get("macro_f1"),
                      "precision": m.get("precision"), "recall": m.get("recall"),
                      "token_accuracy": m.get("token_accuracy"),
                      "per_type_f1": {k[3:]: v for k, v in m.items() if k.startswith("f1_")},
                      "train_seconds": round(r["train_seconds"], 1), "eval_seconds": r.get("eval_seconds"),
                      "trainable_parameters": r["trainable_parameters"]})
    table.sort(key=lambda row: ROWS.index(row["config"]) if row["config"] in ROWS else 99)
    write_text_atomically(HERE / "results.json", json.dumps(table, indent=2))
    for row in table:
        types = " ".join(f"{k} {v:.3f}" for k, v in sorted(row["per_type_f1"].items()))
        print(f"| {row['run']} | {row['f1']:.3f} | {row['argmax_f1']:.3f} | {row['macro_f1']:.3f} | "
              f"{row['token_accuracy']:.3f} | {types} | {row['train_seconds']:.0f} s |")


if __name__ == "__main__":
    main()
