"""``nlptl`` command line: train, evaluate, predict, report, encoders, datasets.

Errors end the program with exit code 1 and one line ``nlptl: error: ...`` (set NLPTL_DEBUG=1
for the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from .config import TrainConfig
from .heads import POOLINGS, task_names
from .adaptation import ADAPTATIONS
from .runs import BASELINES, RunConfig


def positive_int(text: str) -> int:
    """argparse type for counts (rows, epochs, tokens): an integer >= 1, refused before anything runs."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected an integer >= 1")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every RunConfig setting as a flag; recipes reuse this so their --help says the same."""
    data = parser.add_argument_group("data")
    data.add_argument("--task", choices=task_names(), default="text-classification")
    data.add_argument("--dataset", help="a dataset name (see `nlptl datasets`), e.g. sst2, ag_news, squad")
    data.add_argument("--domain", help="amazon_reviews: books, dvd, electronics or kitchen")
    data.add_argument("--data-dir", help="folder with local copies of the named datasets (or set NLPTL_DATA_DIR)")
    data.add_argument("--train-file", help="your own CSV/TSV/JSON/JSON-lines training file")
    data.add_argument("--eval-file", help="your own evaluation file, same format")
    data.add_argument("--eval-split", help="evaluation split of a named dataset (default: validation, else test)")
    data.add_argument("--text-column", default="text")
    data.add_argument("--text-pair-column")
    data.add_argument("--label-column", default="label")
    data.add_argument("--train-size", type=int, help="use only this many training rows (seeded sample)")
    data.add_argument("--shots", type=int, help="few-shot: draw this many training examples per class (seeded)")
    data.add_argument("--unlabeled-file", help="unlabelled target-domain text (a text column) for --adaptation")
    data.add_argument("--label-template", help="text classification: also train on this sentence filled with each "
                                               "label, e.g. 'This movie review is {}.' (worth most with --shots)")
    data.add_argument("--label-descriptions", help='JSON: the words that fill --label-template per label instead of '
                                                   'its name, e.g. \'{"positive": ["good", "great"]}\'')
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", help="path, hub id, or 'minilm' / 'glove-6b-50d' (offline assets)")
    model.add_argument("--encoder-kind", help="encoder kind when it cannot be inferred (see `nlptl encoders`)")
    model.add_argument("--max-length", type=int, help="truncate inputs to this many tokens")
    model.add_argument("--pooling", default="mean", choices=POOLINGS)
    model.add_argument("--hidden-size", type=int, help="one hidden layer in the classification head")
    model.add_argument("--lstm-hidden", type=int, help="token classification: a BiLSTM of this width per direction")
    model.add_argument("--baseline", choices=[b for b in BASELINES if b], help="train a baseline instead")
    model.add_argument("--adaptation", choices=ADAPTATIONS,
                       help="domain adaptation to --unlabeled-file: dann, coral, mmd, importance/kmm weights, or "
                            "self_training (fits on the target's confident pseudo-labels; 4 fits)")
    model.add_argument("--method", choices=["contrastive"],
                       help="few-shot: contrastive pairs, then the head refitted by logistic regression; its "
                            "defaults are --epochs 8 --learning-rate 1e-4 --head-learning-rate 1e-2")
    add_training_arguments(parser.add_argument_group("training (nlptl.TrainConfig)"))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="--output-dir holds an earlier run: delete its nlptl files and start fresh")
    parser.add_argument("--output-dir", required=True, help="the run directory to write")


def add_training_arguments(group) -> None:
    """One flag per ``TrainConfig`` field marked for the CLI: names, defaults, choices and help come from there."""
    for f in fields(TrainConfig):
        if not f.metadata.get("cli"):
            continue
        annotation = str(f.type)
        kind = int if annotation.startswith("int") else float if annotation.startswith("float") else str
        default = None if f.default is None else f.default
        text = f.metadata["help"] + (f" (default: {default})" if default is not None else "")
        group.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                           choices=f.metadata.get("choices"), help=text)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in vars(args).items() if k in known and v is not None}
    if values.get("method") == "contrastive":  # a few steps on a few rows: settings for that, unless given
        from .fewshot.contrastive import FEW_SHOT_DEFAULTS

        values = {**FEW_SHOT_DEFAULTS, **values}
    if args.domain:
        values["dataset_options"] = {"domain": args.domain}
    if args.label_descriptions:
        try:
            values["label_descriptions"] = json.loads(args.label_descriptions)
        except json.JSONDecodeError as e:
            raise ValueError(f"--label-descriptions is not JSON ({e}); write it like "
                             '\'{"positive": ["good", "great"]}\'') from None
    if args.max_length is not None:  # 0 too: the encoder says which lengths it takes
        values["encoder_options"] = {"max_length": args.max_length}
    return RunConfig(**values)


def _eval_data_dir(args) -> str | None:
    """--data-dir, else $NLPTL_DATA_DIR, else the local folder the run was trained from (its config.json)."""
    from .data import DATA_DIR_ENV

    if args.data_dir or os.environ.get(DATA_DIR_ENV):
        return args.data_dir
    config = Path(args.run) / "config.json"
    recorded = json.loads(config.read_text()).get("data_dir") if config.is_file() else None
    return recorded if isinstance(recorded, str) and Path(recorded).is_dir() else None


def _load_eval_data(args, model):
    from . import data

    if args.dataset:
        options = {"domain": args.domain} if args.domain else {}
        return data.load_dataset(args.dataset, split=args.split, data_dir=_eval_data_dir(args), **options)
    if args.eval_file:
        return data.load_files(eval_file=args.eval_file, text_column=args.text_column,
                               label_column=args.label_column, label_names=model.labels)["validation"]
    raise ValueError("give --dataset NAME (with --split) or --eval-file FILE")


def cmd_train(args) -> None:
    from .runs import run

    out = run(config_from_args(args), command="nlptl " + " ".join(shlex.quote(a) for a in args.argv))
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    print(json.dumps({"run": str(out), **metrics}))


def load_run_model(args):
    """The model an ``nlptl train`` run saved in ``args.run``, with a clear error when it is not a run."""
    from . import TransferModel

    run = Path(args.run)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {str(run)!r} does not exist: pass the --output-dir of an "
                                "`nlptl train` run that finished")
    if not (run / "model").is_dir():
        raise FileNotFoundError(f"{str(run)!r} holds no model/ folder: pass a run that trained a model (a TF-IDF "
                                "baseline run saves none, and a run writes model/ only when its training ends)")
    return TransferModel.from_pretrained(run / "model", trust_remote_code=args.trust_remote_code)


def cmd_evaluate(args) -> None:
    from . import evaluate
    from .artifacts import write_text_atomically

    model = load_run_model(args)
    dataset = _load_eval_data(args, model)
    from .heads import head_class

    metrics = evaluate(model, dataset, batch_size=args.batch_size, **head_class(model.head.task).run_columns(dataset))
    name = f"eval-{args.dataset}-{args.split}.json" if args.dataset else f"eval-{Path(args.eval_file).stem}.json"
    write_text_atomically(Path(args.run) / name, json.dumps(metrics, indent=2))
    print(json.dumps(metrics))


def cmd_predict(args) -> None:
    model = load_run_model(args)
    texts = list(args.text or [])
    if args.input_file:
        if not Path(args.input_file).is_file():
            raise FileNotFoundError(f"--input-file {args.input_file!r}: no such file (one text per line)")
        with open(args.input_file, encoding="utf-8") as f:
            texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        raise ValueError("nothing to predict: give --text TEXT (repeatable) or --input-file FILE (one text per line)")
    from .heads import ClassificationHead

    if not isinstance(model.head, ClassificationHead):
        from .model import _eval_mode

        with _eval_mode(model):
            predictions = model.head.predict(model, texts, batch_size=args.batch_size)
    else:
        labels, probabilities = model.predict(texts, batch_size=args.batch_size, return_probabilities=True)
        predictions = list(zip(labels, probabilities))
    for text, prediction in zip(texts, predictions):
        print(json.dumps(model.head.describe_prediction(text, prediction)))


def cmd_report(args) -> None:
    from .report import write_report

    path = write_report(args.runs, args.output, title=args.title)
    print(f"report written to {path}")


def cmd_encoders(args) -> None:
    from . import list_encoders

    for kind, takes in list_encoders().items():
        print(f"{kind:13s} {takes}")


def cmd_datasets(args) -> None:
    from .data import list_datasets

    for name, description in list_datasets().items():
        print(f"{name:15s} {description}")


class OneLineErrors(argparse.ArgumentParser):
    """argparse whose usage errors are the one ``nlptl: error:`` line every other failure prints (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"nlptl: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="nlptl", description="Transfer learning for NLP: train, evaluate, compare.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one run and write its run directory")
    add_run_arguments(train)
    train.set_defaults(handler=cmd_train)
    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on a dataset split or file")
    evaluate.add_argument("run", help="a run directory written by `nlptl train`")
    evaluate.add_argument("--dataset")
    evaluate.add_argument("--domain")
    evaluate.add_argument("--split", default="validation")
    evaluate.add_argument("--data-dir", help="local copies of the named datasets (default: $NLPTL_DATA_DIR, "
                          "else the folder the run was trained from)")
    evaluate.add_argument("--eval-file")
    evaluate.add_argument("--text-column", default="text")
    evaluate.add_argument("--label-column", default="label")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--trust-remote-code", action="store_true",
                          help="allow a saved 'module' encoder to import the class its JSON names "
                               "(only for runs you trust)")
    evaluate.set_defaults(handler=cmd_evaluate)
    predict = commands.add_parser("predict", help="predict labels for texts with a trained run")
    predict.add_argument("run")
    predict.add_argument("--text", action="append", help="a text to classify (repeatable)")
    predict.add_argument("--input-file", help="a file with one text per line")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--trust-remote-code", action="store_true",
                         help="allow a saved 'module' encoder to import the class its JSON names "
                              "(only for runs you trust)")
    predict.set_defaults(handler=cmd_predict)
    report = commands.add_parser("report", help="compare run directories in report.md/report.json with plots")
    report.add_argument("runs", nargs="+", help="run directories")
    report.add_argument("--output", required=True, help="folder for report.md, report.json and the plots")
    report.add_argument("--title")
    report.set_defaults(handler=cmd_report)
    commands.add_parser("encoders",
                        help="list the encoder kinds and what each takes").set_defaults(handler=cmd_encoders)
    commands.add_parser("datasets", help="list the dataset names").set_defaults(handler=cmd_datasets)
    __import__("nlptl.rank_cli", fromlist=["add_commands"]).add_commands(commands)  # nlptl rank / auto
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded in config.json by `train`
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # keep stderr for our own progress bars and errors
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("nlptl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; the traceback on request
        if os.environ.get("NLPTL_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError):  # a bare key says nothing on its own
            message = f"{type(exc).__name__}: {message}"
        print(f"nlptl: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
