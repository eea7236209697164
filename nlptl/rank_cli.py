"""``nlptl rank`` and ``nlptl auto``: which pretrained source, at which depth, before training anything.

``add_commands(subparsers)`` registers both subcommands on the ``nlptl`` parser (``nlptl/cli.py``
calls it once); the work is :func:`nlptl.transferability.pipeline.rank_texts` and
:func:`nlptl.transferability.auto.auto`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .artifacts import write_text_atomically
from .transferability.ranking import SCORES

DEFAULT_ENCODERS = ["minilm", "glove-6b-50d", "tfidf"]


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the labelled texts come from: a named dataset or your own file."""
    data = parser.add_argument_group("data")
    data.add_argument("--task", choices=["text-classification"], default="text-classification")
    data.add_argument("--dataset", help="a dataset name (see `nlptl datasets`), e.g. sst2, ag_news, amazon_reviews")
    data.add_argument("--domain", help="amazon_reviews: books, dvd, electronics or kitchen")
    data.add_argument("--data-dir", help="folder with local copies of the named datasets (or set NLPTL_DATA_DIR)")
    data.add_argument("--split", default="train", help="the labelled split to rank on (default: train)")
    data.add_argument("--train-file", help="your own CSV/TSV/JSON/JSON-lines labelled file")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")


def add_rank_arguments(parser: argparse.ArgumentParser) -> None:
    """The ranking settings, shared by `nlptl rank` and the validation recipe."""
    rank = parser.add_argument_group("ranking")
    rank.add_argument("--encoders", nargs="+", default=DEFAULT_ENCODERS,
                      help="sources to rank: 'minilm', 'glove-6b-50d', 'tfidf', or any encoder path / hub id "
                           f"(default: {' '.join(DEFAULT_ENCODERS)})")
    rank.add_argument("--layers", nargs="+", default=["all"],
                      help="transformer layer groups to score: 'all' (default, gives the freeze line), 'last', "
                           "or group names such as embeddings layer.5")
    rank.add_argument("--sample", type=int, default=2000, help="rank on a seeded sample of this many rows")
    rank.add_argument("--seed", type=int, default=0)
    rank.add_argument("--score", choices=sorted(SCORES), default="logme", help="the score that ranks (default logme)")
    rank.add_argument("--no-standardize", dest="standardize", action="store_false",
                      help="score LogME on raw features instead of per-dimension standardized ones")
    rank.add_argument("--tolerance", type=float, default=0.05,
                      help="freeze line: the first depth within this fraction of the curve's range of its best")
    rank.add_argument("--max-length", type=int, help="truncate transformer inputs to this many tokens")
    rank.add_argument("--batch-size", type=int, default=64)
    rank.add_argument("--threads", type=int,
                      help="torch/BLAS threads while ranking (default: 1 when the machine's load average is at or "
                           "above its core count, else unchanged)")
    rank.add_argument("--classifiers", nargs="+", default=[],
                      help="trained source classifiers (nlptl run directories) to score with LEEP on the same sample")


def load_labelled(args: argparse.Namespace):
    """The labelled split to rank on, as a datasets.Dataset with text and label columns."""
    from . import data

    if args.dataset and args.train_file:
        raise ValueError("give either --dataset or --train-file, not both")
    if args.dataset:
        options = {"domain": args.domain} if args.domain else {}
        return data.load_dataset(args.dataset, split=args.split, data_dir=args.data_dir, **options)
    if args.train_file:
        return data.load_files(train_file=args.train_file, text_column=args.text_column,
                               label_column=args.label_column)["train"]
    raise ValueError("nothing to rank on: give --dataset NAME (with --data-dir) or --train-file FILE")


def layers_setting(values: list[str]) -> list[str] | str:
    if values in (["all"], ["last"]):
        return values[0]
    if "all" in values or "last" in values:
        raise ValueError(f"--layers {' '.join(values)}: 'all' and 'last' stand alone, not among group names")
    return values


def cmd_rank(args: argparse.Namespace) -> None:
    from .transferability.pipeline import classifier_scores, format_table, rank_texts, seeded_sample

    dataset = load_labelled(args)
    result = rank_texts(list(dataset["text"]), list(dataset["label"]), sources=args.encoders,
                        layers=layers_setting(args.layers), sample=args.sample, seed=args.seed, primary=args.score,
                        standardize=args.standardize, tolerance=args.tolerance, max_length=args.max_length,
                        batch_size=args.batch_size, threads=args.threads)
    if args.classifiers:
        rows = seeded_sample(len(dataset), args.sample, args.seed)  # the rows the features were scored on
        sample = dataset.select(rows)
        result["source_classifiers"] = classifier_scores(args.classifiers, list(sample["text"]),
                                                         list(sample["label"]), batch_size=args.batch_size)
    result = {"task": args.task, "dataset": args.dataset or args.train_file, "domain": args.domain,
              "split": args.split, "labels": dataset.features["label"].names, **result}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output, json.dumps(result, indent=2))
    print(format_table(result))
    print(f"wrote {output}")


def cmd_auto(args: argparse.Namespace) -> None:
    import shlex
    import sys

    from .transferability.auto import auto

    if args.dataset and args.train_file:
        raise ValueError("give either --dataset or --train-file (with --eval-file), not both")
    data = {"eval_file": args.eval_file, "text_column": args.text_column, "label_column": args.label_column,
            "train_size": args.train_size}  # with --dataset, --eval-file is what it is scored on (e.g. a target domain)
    if args.dataset:
        data.update(dataset=args.dataset, data_dir=args.data_dir,
                    dataset_options={"domain": args.domain} if args.domain else {})
    else:
        data.update(train_file=args.train_file)
    command = "nlptl " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    result = auto(data, args.output_dir, budget_minutes=args.budget_minutes, sources=args.encoders,
                  sample=args.sample, seed=args.seed, command=command, overwrite=args.overwrite,
                  unlabeled_file=args.unlabeled_file, adapt=args.adapt)
    summary = {name: r["accuracy"] for name, r in result["runs"].items()}
    print(json.dumps({"output_dir": args.output_dir, "choice": result["choice"].get("best_candidate"),
                      "strategy": result["choice"]["strategy"], "top_k": result["choice"]["top_k"],
                      "accuracy": summary, "negative_transfer": result["negative_transfer"],
                      "best_run": result["best_run"]}))


def add_commands(subparsers) -> None:
    """Register `nlptl rank` and `nlptl auto` on the `nlptl` subcommand parsers."""
    rank = subparsers.add_parser(
        "rank", help="rank pretrained sources and layers for a task in seconds, and advise the freeze line",
        description="Score frozen features of every (encoder, layer) candidate, static vectors and TF-IDF on a "
                    "seeded sample with LogME, H-score and leave-one-out kNN accuracy; print the ranking and "
                    "the recommended freeze line, and write them as JSON.")
    add_data_arguments(rank)
    add_rank_arguments(rank)
    rank.add_argument("--output", default="rank.json", help="the JSON file to write (default: rank.json)")
    rank.set_defaults(handler=cmd_rank)
    auto = subparsers.add_parser(
        "auto", help="rank, pick encoder + strategy + freeze line, train it and the baselines, report why",
        description="Rank the candidates as `nlptl rank` does, train the recommended configuration within "
                    "--budget-minutes, train the TF-IDF and (when it fits) from-scratch baselines on the same rows, "
                    "and write report.md and metrics.json in --output-dir with a negative-transfer flag.")
    data = auto.add_argument_group("data")
    data.add_argument("--task", choices=["text-classification"], default="text-classification")
    data.add_argument("--dataset", help="a dataset name (see `nlptl datasets`)")
    data.add_argument("--domain", help="amazon_reviews: books, dvd, electronics or kitchen")
    data.add_argument("--data-dir", help="folder with local copies of the named datasets (or set NLPTL_DATA_DIR)")
    data.add_argument("--train-file", help="your own labelled training file")
    data.add_argument("--eval-file", help="your own labelled evaluation file (with --dataset: scored on it instead "
                      "of the dataset's evaluation split, e.g. the target domain of --unlabeled-file)")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")
    data.add_argument("--train-size", type=int, help="train on this many seeded training rows")
    data.add_argument("--unlabeled-file", help="unlabelled text of the target domain (a text column): the report "
                                               "gives its proxy A-distance to the training text")
    data.add_argument("--adapt", action="store_true",
                      help="with --unlabeled-file: also train the chosen configuration with MMD toward it when the "
                           "A-distance is large and the budget holds the unadapted run that checks it (off by "
                           "default: MMD lost to no adaptation on every Amazon pair measured at auto's configuration, "
                           "at weight 1.0 and at its default 0.3)")
    auto.add_argument("--encoders", nargs="+", default=DEFAULT_ENCODERS, help="sources to rank and choose from")
    auto.add_argument("--sample", type=int, default=2000, help="rank on a seeded sample of this many rows")
    auto.add_argument("--budget-minutes", type=float, default=20.0,
                      help="wall-clock budget for ranking and every training run (default 20, sized for a "
                           "2-core CPU and a few thousand sentences)")
    auto.add_argument("--seed", type=int, default=0)
    auto.add_argument("--output-dir", required=True, help="folder for report.md, metrics.json and the run directories")
    auto.add_argument("--overwrite", action="store_true", help="--output-dir holds an earlier auto: replace it")
    auto.set_defaults(handler=cmd_auto)
