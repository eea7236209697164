"""One training run, end to end, as the CLI and the recipes use it.

``RunConfig`` says everything about a run (data, encoder, head, strategy or baseline, training
settings, seed); ``run(config)`` trains and writes a *run directory*::

    config.json       the RunConfig, the command, environment and data fingerprints: enough to rerun
    metrics.json      final metrics, per-epoch history, time, parameter counts, peak memory, sizes
    predictions.json  classification: label names, reference and predicted ids on the eval split
    log.jsonl         every optimizer step's loss and every evaluation
    model/            the saved TransferModel (``TransferModel.from_pretrained``)

Baselines sit behind the same config: ``baseline="from_scratch"`` trains the same architecture
from random initialisation; ``baseline="tfidf_lr"`` is TF-IDF + logistic regression.
``run_in_subprocess`` runs a config in a fresh Python process so peak memory is the run's own.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .checkpoint import write_text_atomically
from .rundir import check_run_directory
from .config import TrainConfig, option, require_int, training_fields
from .heads import head_class, task_names

BASELINES = (None, "from_scratch", "tfidf_lr")


@dataclass(kw_only=True)
class RunConfig(TrainConfig):
    """Data and model settings of a run; the training settings are ``TrainConfig``'s, inherited."""

    output_dir: str = option(None, "the run directory to write", cli=False)
    task: str = "text-classification"
    name: str | None = None
    # data: a named dataset (local copy under data_dir or the hub) or your own files
    dataset: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    train_file: str | None = None
    eval_file: str | None = None
    train_split: str = "train"
    eval_split: str | None = None  # default: "validation" if present, else "test"
    qa_eval_fraction: float = 0.3  # SQuAD without a train split: hold out this share of articles
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    train_size: int | None = None  # subsample the labelled set (seeded), for learning-vs-size curves
    shots: int | None = None  # few-shot: draw this many training examples per class (seeded)
    unlabeled_file: str | None = None  # unlabelled target text (a text column) for domain adaptation
    # text classification: "This movie review is {}." filled with each label name (or its
    # label_descriptions, e.g. {"positive": ["good", "great"]}) joins the training rows as examples
    label_template: str | None = None
    label_descriptions: dict[str, Any] = field(default_factory=dict)
    # model
    encoder: str | None = None
    encoder_kind: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    pooling: str = "mean"
    hidden_size: int | None = None
    lstm_hidden: int | None = None  # token classification: a BiLSTM of this width per direction
    baseline: str | None = None
    adaptation: str | None = None  # with unlabeled_file: dann, coral, mmd (objectives), importance, kmm (weights)
    # or self_training (rounds of fits on the target's confident pseudo-labels)
    method: str | None = None  # few-shot training method: "contrastive" (SetFit-style pairs + head)
    # training: every TrainConfig field (strategy, epochs, learning_rate, seed, ...)

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir is required: the run directory to write (CLI: --output-dir)")
        super().__post_init__()
        if self.task not in task_names():
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(task_names())}")
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; choose one of {BASELINES[1:]}")
        if self.baseline != "tfidf_lr" and not self.encoder:
            raise ValueError("encoder is required (a path, hub id or 'minilm'/'glove-6b-50d' for the offline assets)")
        from .adaptation import ADAPTATIONS

        if self.adaptation is not None and self.adaptation not in ADAPTATIONS:
            raise ValueError(f"unknown adaptation {self.adaptation!r}; choose one of {', '.join(ADAPTATIONS)}")
        if self.adaptation == "self_training" and self.task != "text-classification":
            raise ValueError(f"adaptation='self_training' pseudo-labels whole texts: it needs task="
                             f"'text-classification', not {self.task!r}; use dann, coral or mmd for {self.task}")
        if (self.adaptation is None) != (self.unlabeled_file is None):
            raise ValueError("adaptation and unlabeled_file go together: --adaptation METHOD adapts to the text "
                             "of --unlabeled-file FILE")
        if self.method not in (None, "contrastive"):
            raise ValueError(f"unknown method {self.method!r}; choose 'contrastive' (or leave it out)")
        if self.method is not None and self.adaptation is not None:
            raise ValueError("choose one of method= (few-shot) and adaptation= (domain adaptation)")
        if self.shots is not None:
            require_int("shots", self.shots, 1, " (examples per class)")
        if self.train_size is not None:
            require_int("train_size", self.train_size, 1, " (training rows in all; leave it out for every row)")
        if self.shots is not None and self.train_size is not None:
            raise ValueError("give shots= (per class) or train_size= (in all), not both")
        if self.label_template is not None:
            if self.task != "text-classification":
                raise ValueError(f"label_template adds labelled sentences to a text classifier's rows; task="
                                 f"{self.task!r} cannot take them")
            if not isinstance(self.label_template, str) or "{}" not in self.label_template:
                raise ValueError(f"label_template={self.label_template!r} needs a '{{}}' where the label goes, "
                                 "e.g. 'This movie review is {}.'")
        if self.label_descriptions and self.label_template is None:
            raise ValueError("label_descriptions fill label_template: give --label-template too")
        if not isinstance(self.label_descriptions, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(w, str) for w in v))
                for v in self.label_descriptions.values()):
            raise ValueError(f"label_descriptions={self.label_descriptions!r}: expected a mapping from label name "
                             'to a word or a list of words, e.g. {"positive": ["good", "great"]}')
        if self.dataset is None and self.train_file is None:
            raise ValueError("give a dataset name (--dataset) or your own files (--train-file/--eval-file)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def load_splits(config: RunConfig):
    """(train, eval) datasets for a config, subsampled to ``train_size`` with the run's seed."""
    from . import data

    if config.dataset is not None:
        splits = data.load_dataset(config.dataset, data_dir=config.data_dir, **config.dataset_options)
        if config.eval_file is not None:  # a named dataset to train, your own file to evaluate
            if config.train_split not in splits:
                raise ValueError(f"no {config.train_split!r} split; the data has {list(splits)}")
            names = splits[config.train_split].features["label"].names
            own = data.load_files(eval_file=config.eval_file, text_column=config.text_column,
                                  label_column=config.label_column, label_names=names)["validation"]
            splits = {**splits, "validation": own}
            config = dataclasses.replace(config, eval_split="validation")
    else:
        splits = data.load_files(config.train_file, config.eval_file, text_column=config.text_column,
                                 text_pair_column=config.text_pair_column, label_column=config.label_column)
    if config.task == "extractive-qa" and config.train_split not in splits:
        only = splits[next(iter(splits))]
        train, evaluation = data.split_by_article(only, eval_fraction=config.qa_eval_fraction, seed=config.seed)
    else:
        if config.train_split not in splits:
            raise ValueError(f"no {config.train_split!r} split; the data has {list(splits)}")
        eval_split = config.eval_split or next((s for s in ("validation", "test") if s in splits), None)
        if eval_split is None and config.dataset is None:
            raise ValueError("no evaluation data: pass an evaluation file too (eval_file= / --eval-file)")
        if eval_split is None or eval_split not in splits:
            others = [s for s in splits if s != config.train_split]
            found = (f"no {eval_split!r} split" if eval_split else
                     f"{config.dataset!r} has no evaluation split here") + f" (the data has {list(splits)})"
            raise ValueError(f"{found}: pass --eval-file FILE with labelled evaluation rows"
                             + (f", or --eval-split with one of {others}" if others else ""))
        train, evaluation = splits[config.train_split], splits[eval_split]
    if config.train_size is not None:
        if config.train_size > len(train):
            raise ValueError(f"train_size={config.train_size} but the training split has {len(train)} rows")
        train = train.shuffle(seed=config.seed).select(range(config.train_size))
    if config.shots is not None:
        from .fewshot import sample_shots

        train = sample_shots(train, config.shots, config.seed)
    if config.label_template is not None:
        from .fewshot import add_label_sentences

        train = add_label_sentences(train, config.label_template, config.label_descriptions)
    return train, evaluation


def load_unlabeled(config: RunConfig):
    """The unlabelled target text of ``unlabeled_file`` as a one-column ``text`` dataset, or None."""
    if config.unlabeled_file is None:
        return None
    from . import data

    return data.load_files(train_file=config.unlabeled_file, text_column=config.text_column,
                           label_column=None)["train"].select_columns(["text"])


def resolve_encoder_source(name: str) -> tuple[str, str | None]:
    """Short names for the offline assets: 'minilm' and 'glove-6b-50d'; anything else passes through."""
    from . import assets

    if name == "minilm":
        return assets.minilm_path(), "transformer"
    if name == "glove-6b-50d":
        return str(assets.glove_6b_50d_path()), "glove"
    return name, None


def build_model(config: RunConfig, train, evaluation=None):
    """Encoder (with from_scratch: reinitialised under the run's seed) plus the task's head."""
    from . import TransferModel, load_encoder

    source, kind = resolve_encoder_source(config.encoder)
    options = dict(config.encoder_options)
    if (config.encoder_kind or kind) in ("glove", "word2vec", "fasttext"):
        # Keep only the words the texts use (training and evaluation text, never labels): 400k vectors
        # need not sit in memory for a task that reads 15k of them.
        texts = [t for split in (train, evaluation) if split is not None for t in _texts_of(split)]
        if texts:
            options.setdefault("vocab_from", texts)
    encoder = load_encoder(source, kind=config.encoder_kind or kind, **options)
    if config.baseline == "from_scratch":
        reinitialize(encoder, config.seed)
    head, labels = head_class(config.task).for_run(config, train)
    return TransferModel(encoder, head, labels=labels)


def _texts_of(split) -> list[str]:
    """The raw text a split feeds the encoder: sentences, word lists (token classification) or QA pairs."""
    columns = split.column_names
    if "text" in columns:
        return list(split["text"]) + (list(split["text_pair"]) if "text_pair" in columns else [])
    if "tokens" in columns:
        return [" ".join(words) for words in split["tokens"]]
    return [t for c in ("question", "context") if c in columns for t in split[c]]


def reinitialize(encoder, seed: int = 0) -> None:
    """Same architecture, random weights: every submodule's own ``reset_parameters``, under ``seed``.

    The global RNG is left as it was: the run's own seeding (in ``fit``) is not disturbed.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in encoder.modules():
            if hasattr(module, "reset_parameters") and module is not encoder:
                module.reset_parameters()


def run(config: RunConfig, command: str | None = None) -> Path:
    """Train one run and write its run directory; returns the directory."""
    from .data import dataset_fingerprint

    out = Path(config.output_dir)
    _check_precision(config)
    train, evaluation = load_splits(config)  # bad data fails here, before anything is written
    # A fresh run refuses an earlier run here. With overwrite the earlier run is cleared by fit's own
    # check, which runs once the new model is built (a bad encoder or option loses nothing), or, for the
    # TF-IDF baseline, once it has trained. fit checks a resume against the checkpoints' fingerprint.
    # config.json is written last, so a failed run leaves none behind.
    check_run_directory(out, config.resume, None, config.overwrite, remove=False)
    record = {**asdict(config), "name": config.name or out.name, "command": command or " ".join(sys.argv),
              "environment": environment(),
              "data_fingerprint": {"train": dataset_fingerprint(train), "eval": dataset_fingerprint(evaluation)}}
    started = time.perf_counter()
    if config.baseline == "tfidf_lr":
        result, predictions = _tfidf_baseline(config, train, evaluation)
        check_run_directory(out, config.resume, None, config.overwrite)  # no fit: clear here
    else:
        result, predictions = _train(config, train, evaluation)
        record["applied"] = result.get("extra", {}).get("config")  # defaults as filled in: learning rates
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "config.json", json.dumps(record, indent=2))
    result.setdefault("train_seconds", time.perf_counter() - started)
    write_results(out, result, predictions, train_size=len(train), eval_size=len(evaluation))
    return out


def _check_precision(config: RunConfig) -> None:
    """fp16 needs a GPU: refuse it up front rather than train in fp32 and record fp16."""
    if config.mixed_precision == "fp16" and config.baseline != "tfidf_lr":
        import torch

        if config.cpu or not torch.cuda.is_available():
            raise ValueError("mixed_precision='fp16' needs a GPU; on CPU use 'bf16' or 'no' (--mixed-precision)")


def write_results(out: Path, result: dict, predictions: dict | None, train_size: int, eval_size: int) -> None:
    """metrics.json (with this process's peak memory) and predictions.json of a run directory."""
    result = {**result, "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "train_size": train_size, "eval_size": eval_size}
    write_text_atomically(Path(out) / "metrics.json", json.dumps(result, indent=2, default=str))
    if predictions is not None:
        write_text_atomically(Path(out) / "predictions.json", json.dumps(predictions))


def _train(config: RunConfig, train, evaluation) -> tuple[dict, dict | None]:
    from .training import fit

    model = build_model(config, train, evaluation)
    training = TrainConfig.from_kwargs(TrainConfig(**training_fields(config)),
                                       columns={**head_class(config.task).run_columns(train), **config.columns})
    if config.adaptation == "self_training":
        model, result = _self_train(config, model, train, evaluation, training)
    else:
        train_data, objective, training = _transfer_method(config, model, train, training)
        result = fit(model, train_data, evaluation, config=training, objective=objective)
    model.eval()
    predictions = model.head.predictions_record(model, evaluation, batch_size=config.batch_size * 2)
    return asdict(result), predictions


def _self_train(config: RunConfig, model, train, evaluation, training: TrainConfig):
    """--adaptation self_training: rounds of fits on the target's pseudo-labels; only the last writes the run."""
    from .adaptation import self_training

    fresh = [model]  # the first round uses the model already built; later rounds build their own
    rounds = dataclasses.replace(training, output_dir=None, resume=False, overwrite=False)
    started = time.perf_counter()
    done = self_training(lambda: fresh.pop() if fresh else build_model(config, train, evaluation),
                         train, load_unlabeled(config)["text"], config=rounds,
                         final_fit_options={"config": training, "eval_data": evaluation})
    done.fit.extra["self_training_rounds"] = done.rounds
    done.fit.train_seconds = time.perf_counter() - started  # all rounds, not just the last fit
    return done.model, done.fit


def _transfer_method(config: RunConfig, model, train, training: TrainConfig):
    """(train data, objective, training config) for the run's adaptation or few-shot method, if any."""
    if config.method == "contrastive":
        from .fewshot import ContrastivePairs

        return train, ContrastivePairs(), training
    target = load_unlabeled(config)
    if target is None:
        return train, None, training
    from .adaptation import OBJECTIVES, importance_weights, objective_for, weights_method_for

    if config.adaptation in OBJECTIVES:  # source and target batches in every step
        return {"source": train, "target": target}, objective_for(config.adaptation), training
    weights = importance_weights(model.encoder, list(train["text"]), list(target["text"]),
                                 method=weights_method_for(config.adaptation), seed=config.seed)
    weighted = train.add_column("importance_weight", [float(w) for w in weights])
    return weighted, None, dataclasses.replace(training, weight_column="importance_weight")


def _tfidf_baseline(config: RunConfig, train, evaluation) -> tuple[dict, dict]:
    """TF-IDF (word 1-2 grams) + logistic regression: the classical baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from .metrics import compute_classification_metrics

    if config.task != "text-classification":
        raise ValueError("baseline 'tfidf_lr' is for text classification")
    started = time.perf_counter()
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                             LogisticRegression(C=4.0, max_iter=2000, random_state=config.seed))
    pipeline.fit(list(train["text"]), list(train["label"]))
    train_seconds = time.perf_counter() - started
    predicted = pipeline.predict(list(evaluation["text"])).tolist()
    references = list(evaluation["label"])
    metrics = compute_classification_metrics(predictions=predicted, references=references)
    n_params = int(pipeline[-1].coef_.size + pipeline[-1].intercept_.size)
    summary = {"metrics": metrics, "history": [], "train_seconds": train_seconds,
               "trainable_parameters": n_params, "total_parameters": n_params}
    labels = train.features["label"].names
    return summary, {"labels": labels, "references": references, "predictions": predicted}


def environment() -> dict[str, Any]:
    import torch
    import transformers

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "nlptl": __version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def run_in_subprocess(config: RunConfig, command: str | None = None) -> Path:
    """Run in a fresh interpreter, so the recorded peak memory belongs to this run alone."""
    with tempfile.TemporaryDirectory(prefix="nlptl-run-") as scratch:  # outside the run directory it checks
        spec = Path(scratch) / "run_config.json"
        spec.write_text(json.dumps({"config": asdict(config), "command": command or " ".join(sys.argv)}, indent=2))
        subprocess.run([sys.executable, "-m", "nlptl.runs", str(spec)], check=True)
    return Path(config.output_dir)


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    run(RunConfig.from_dict(spec["config"]), command=spec["command"])
