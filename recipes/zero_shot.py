"""Recipe: zero-shot classification from label templates, then self-training a head on its guesses.

    python recipes/zero_shot.py --data-dir ../shared/data --dataset ag_news --output reports/ag-zero

Writes <output>/zero_shot.json ({"accuracy", "self_trained_accuracy", ...}) and report.md.
"accuracy" is the template with the label descriptions fixed in nlptl/fewshot/splits.py, scored
centred on the unlabelled texts' mean feature (zero_shot's center_on, chosen on held-out training
rows by benchmarks/few_shot/tune_zero_shot_calibration.py); plain cosines and label names alone
are reported beside it. Unlabelled texts for self-training are a seeded
sample of the training split with its labels removed (their labels only measure pseudo-label quality).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.encoders.base import EncoderOutput
from nlptl.fewshot import self_train, zero_shot
from nlptl.fewshot.splits import load_benchmark
from nlptl.fewshot.zero_shot import check_selection
from nlptl.cli import positive_int
from nlptl.runs import resolve_encoder_source


def head_accuracy(model, features: np.ndarray, gold: list[int]) -> float:
    """Accuracy of the model's head on precomputed mean-pooled features (N, D): no second encoder pass."""
    x = torch.from_numpy(features)[:, None, :]  # (N, 1, D): one position whose mean pool is the vector
    with torch.inference_mode():
        logits = model.head(EncoderOutput(x, torch.ones(x.shape[:2], dtype=torch.bool)), {})["logits"]
    return float((logits.argmax(-1).numpy() == np.asarray(gold)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="ag_news", choices=["ag_news", "sst2", "amazon_books"])
    parser.add_argument("--output", required=True)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--eval-rows", type=positive_int, default=None, help="score a seeded subset (default: the full split)")
    parser.add_argument("--unlabelled-rows", type=positive_int, default=4000, help="training texts used without labels")
    parser.add_argument("--top-fraction", type=float, default=0.3, help="per class, the most confident share kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        check_selection(args.top_fraction, None)  # before minutes of encoding
    except ValueError as e:
        parser.error(f"--top-fraction: {e}")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        parser.error(f"--output {args.output!r} is a file; pass a directory")

    bench = load_benchmark(args.dataset, args.data_dir, args.eval_rows, args.seed)
    path, kind = resolve_encoder_source(args.encoder)
    encoder = nlptl.load_encoder(path, kind=kind)
    texts, gold = list(bench.evaluation["text"]), list(bench.evaluation["label"])
    started = time.perf_counter()
    features = encoder.encode(texts)  # (N, D) once, shared by every variant
    encode_seconds = time.perf_counter() - started

    def accuracy(predicted: list[str]) -> float:
        return float(np.mean([bench.labels.index(p) == g for p, g in zip(predicted, gold)]))

    pool = bench.pool.shuffle(seed=args.seed).select(range(min(args.unlabelled_rows, len(bench.pool))))
    pool_features = encoder.encode(list(pool["text"]))  # (M, D): only their mean is used, no labels
    variants = {}
    for name, descriptions in (("names_only", None), ("described", bench.descriptions)):
        for suffix, center_on in (("", None), ("_centred", pool_features)):
            variants[name + suffix] = accuracy(zero_shot(encoder, texts, bench.labels, bench.template, descriptions,
                                                         text_features=features, center_on=center_on))
    started = time.perf_counter()
    trained = self_train(encoder, list(pool["text"]), bench.labels, bench.template, bench.descriptions,
                         top_fraction=args.top_fraction, seed=args.seed, text_features=pool_features,
                         true_labels=[bench.labels[i] for i in pool["label"]])
    self_seconds = time.perf_counter() - started
    self_trained = head_accuracy(trained.model, features, gold)
    result = {"accuracy": variants["described_centred"], "self_trained_accuracy": self_trained,
              "uncentred_accuracy": variants["described"], "names_only_accuracy": variants["names_only"],
              "names_only_centred_accuracy": variants["names_only_centred"],
              "dataset": args.dataset, "evaluation": bench.note, "template": bench.template,
              "descriptions": bench.descriptions, "unlabelled_rows": len(pool), "pseudo_labelled_rows": trained.pseudo_rows,
              "pseudo_label_accuracy": trained.pseudo_accuracy, "pseudo_per_class": trained.per_class,
              "top_fraction": args.top_fraction, "seed": args.seed, "encoder": args.encoder,
              "seconds": {"encode_eval": encode_seconds, "self_train_total": self_seconds,
                          "self_train_fit": trained.fit.train_seconds}}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "zero_shot.json", json.dumps(result, indent=2))
    write_text_atomically(out / "report.md", 
        f"# Zero-shot {args.dataset} with {args.encoder}\n\n"
        f"Command: `python {' '.join(sys.argv)}`\n\nScored on {bench.note}; seed {args.seed}.\n"
        f"Template `{bench.template}`; descriptions {json.dumps(bench.descriptions)}.\n\n"
        "| method | accuracy |\n|---|---|\n"
        f"| label names in the template | {variants['names_only']:.3f} |\n"
        f"| label names, texts centred on the unlabelled mean | {variants['names_only_centred']:.3f} |\n"
        f"| label descriptions in the template (averaged) | {variants['described']:.3f} |\n"
        f"| label descriptions, texts centred on the unlabelled mean (headline) | {variants['described_centred']:.3f} |\n"
        f"| self-trained head on {trained.pseudo_rows} pseudo-labels from {len(pool)} unlabelled training texts "
        f"(pseudo-labels {trained.pseudo_accuracy:.3f} correct) | {self_trained:.3f} |\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
