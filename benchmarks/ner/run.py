"""CoNLL-2003 NER benchmark: one configuration per call, trained with ``nlptl.fit`` on train.txt, scored on dev.txt.

    python benchmarks/ner/run.py --config minilm-full --data-dir ../shared/data

Writes ``benchmarks/ner/results/<config>.json`` (metrics, per-type scores, time, settings) and
the run directory under ``runs/ner/<config>`` (gitignored).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.data.conll import load_conll2003
from nlptl.heads.token_classification import TokenClassificationHead, tag_names
from nlptl.runs import reinitialize, resolve_encoder_source

# encoder, head options, fit options (learning rates left at None take the strategy defaults). Full and
# from-scratch runs are scored once after training (eval_in_fit=False): a dev pass costs minutes on this CPU,
# while frozen and top-2 runs cache the dev features too, so their per-epoch scoring is cheap.
CONFIGS = {
    "minilm-full": ("minilm", {}, dict(strategy="full", epochs=2, learning_rate=1e-4, mixed_precision="bf16"), False),
    "minilm-frozen": ("minilm", {}, dict(strategy="feature_extraction", epochs=10, head_learning_rate=1e-3,
                                         mixed_precision="bf16"), True),  # the rate its recorded rows used
    "minilm-frozen-default": ("minilm", {}, dict(strategy="feature_extraction", epochs=10, mixed_precision="bf16"),
                              True),  # the head-only default rate (1e-2 since 2026-12-06)
    "minilm-top2": ("minilm", {}, dict(strategy="top_k", top_k=2, epochs=2, learning_rate=1e-4,
                                       mixed_precision="bf16"), True),
    "minilm-scratch": ("minilm", {}, dict(strategy="full", epochs=2, learning_rate=5e-4, mixed_precision="bf16"),
                       False),
    "glove-bilstm": ("glove-6b-50d", {"lstm_hidden": 128, "dropout": 0.5},
                     dict(strategy="feature_extraction", epochs=8, head_learning_rate=2e-3), True),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--train-size", type=int, help="first N training sentences only (quick checks)")
    parser.add_argument("--dev-size", type=int, help="a seeded sample of N dev sentences only (when CPU is short)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; on a CPU shared by many jobs one "
                        "thread is many times faster than two (no spinning threads waiting on each other)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = args.config
    encoder_name, head_options, fit_options, eval_in_fit = CONFIGS[name]
    if args.epochs:
        fit_options = {**fit_options, "epochs": args.epochs}
    splits = load_conll2003(Path(args.data_dir))
    train, dev = splits["train"], splits["validation"]
    if args.train_size:
        train = train.shuffle(seed=args.seed).select(range(args.train_size))
    if args.dev_size:
        dev = dev.shuffle(seed=args.seed).select(range(args.dev_size))
    source, kind = resolve_encoder_source(encoder_name)
    encoder = nlptl.load_encoder(source, kind=kind)
    if name.endswith("scratch"):
        reinitialize(encoder, args.seed)
    labels = tag_names(train["tags"])
    model = nlptl.TransferModel(encoder, TokenClassificationHead(labels=labels, **head_options))
    out = Path("runs/ner") / (name + (f"-train{args.train_size}" if args.train_size else ""))
    started = time.perf_counter()
    result = nlptl.fit(model, train, dev if eval_in_fit else None, output_dir=str(out), overwrite=True,
                       batch_size=32, seed=args.seed, group_by_length=True, progress=False, **fit_options)
    if not eval_in_fit:
        scoring = time.perf_counter()
        result.metrics = nlptl.evaluate(model, dev, batch_size=64, mixed_precision=fit_options.get("mixed_precision",
                                                                                                    "no"))
        result.extra["eval_seconds"] = time.perf_counter() - scoring
    wall = time.perf_counter() - started
    record = {"config": name, "encoder": encoder_name, "head": model.head.config(), "fit": fit_options,
              "batch_size": 32, "group_by_length": True, "seed": args.seed, "threads": args.threads,
              "train_sentences": len(train), "dev_sentences": len(dev), "eval_in_fit": eval_in_fit,
              "eval_seconds": result.extra.get("eval_seconds"), "metrics": result.metrics, "history": result.history,
              "train_seconds": result.train_seconds, "wall_seconds": wall,
              "trainable_parameters": result.trainable_parameters, "total_parameters": result.total_parameters,
              "applied": result.extra.get("config", {}), "command": "python " + " ".join(sys.argv)}
    sizes = (f"-train{args.train_size}" if args.train_size else "") + (f"-dev{args.dev_size}" if args.dev_size else "")
    target = Path(__file__).parent / "results" / f"{name}{sizes}.json"
    target.parent.mkdir(exist_ok=True)
    write_text_atomically(target, json.dumps(record, indent=2, default=str))
    print(json.dumps({k: result.metrics.get(k) for k in ("f1", "viterbi_f1", "argmax_f1", "token_accuracy")}),
          f"{result.train_seconds:.0f}s")


if __name__ == "__main__":
    main()
