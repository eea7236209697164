"""Recipe: train one task with several freezing strategies plus two baselines, then write one report.

    python recipes/compare_strategies.py --config demo          # the README demo, offline, minutes
    python recipes/compare_strategies.py --config sst2 --data-dir ../shared/data

Each run happens in its own process (so its peak memory is its own) and writes a run directory
under --runs-dir; the comparison (report.md, report.json, PNG plots) goes to --output.
The baselines are the same architecture from random initialisation ("from_scratch") and
TF-IDF + logistic regression ("tfidf_lr"). Settings are fixed per config below, chosen once and
documented, not tuned on the evaluation split.
"""
import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from nlptl.report import write_report
from nlptl.runs import RunConfig, run, run_in_subprocess

ROOT = Path(__file__).resolve().parents[1]

# config name -> (shared settings, [(run name, settings of that run)])
PRESETS = {
    # 240 template reviews to train, 160 to test whose sentiment words never occur in training
    # (data/make_demo_reviews.py): what does pretraining on English bring?
    "demo": (
        dict(train_file=str(ROOT / "data/demo_reviews/train.tsv"), eval_file=str(ROOT / "data/demo_reviews/test.tsv"),
             encoder="minilm", batch_size=16, epochs=4, seed=0),
        [
            ("feature_extraction", dict(strategy="feature_extraction", learning_rate=2e-3, hidden_size=128)),
            ("top_k_2", dict(strategy="top_k", top_k=2, learning_rate=1e-4, head_learning_rate=1e-3)),
            ("full", dict(strategy="full", learning_rate=5e-5, head_learning_rate=1e-3)),
            ("from_scratch", dict(baseline="from_scratch", strategy="full", learning_rate=1e-4,
                                  head_learning_rate=1e-3)),
            ("tfidf_lr", dict(baseline="tfidf_lr")),
        ],
    ),
    # GLUE SST-2, evaluated on the 872-sentence validation split; --train-size subsamples train.
    "sst2": (
        dict(dataset="sst2", encoder="minilm", batch_size=32, seed=0, encoder_options={"max_length": 64}),
        [
            ("tfidf_lr", dict(baseline="tfidf_lr")),
            ("glove_head", dict(encoder="glove-6b-50d", strategy="feature_extraction", pooling="attention",
                                hidden_size=256, learning_rate=2e-3, epochs=6, encoder_options={})),
            ("glove_full", dict(encoder="glove-6b-50d", strategy="full", pooling="attention", hidden_size=256,
                                learning_rate=1e-3, epochs=4, encoder_options={})),
            ("minilm_feature_extraction", dict(strategy="feature_extraction", hidden_size=256, learning_rate=1e-3,
                                               epochs=6)),
            ("minilm_top_k_2", dict(strategy="top_k", top_k=2, learning_rate=1e-4, head_learning_rate=1e-3,
                                    epochs=1)),
            ("minilm_full", dict(strategy="full", learning_rate=5e-5, head_learning_rate=1e-3, epochs=2)),
            ("minilm_from_scratch", dict(baseline="from_scratch", strategy="full", learning_rate=1e-4, epochs=1,
                                         train_size=20000)),
        ],
    ),
    # AG News: train on the 10k-row sample, evaluate on the official 7,600-row test split.
    "ag_news": (
        dict(dataset="ag_news", eval_split="test", encoder="minilm", batch_size=32, seed=0,
             encoder_options={"max_length": 128}),
        [
            ("tfidf_lr", dict(baseline="tfidf_lr")),
            ("minilm_feature_extraction", dict(strategy="feature_extraction", hidden_size=256, learning_rate=1e-3,
                                               epochs=6)),
            ("minilm_full", dict(strategy="full", learning_rate=5e-5, head_learning_rate=1e-3, epochs=2)),
        ],
    ),
    # SQuAD v1.1 dev subset (12 articles): 70% of the articles train, the other 30% evaluate.
    "squad": (
        dict(task="extractive-qa", dataset="squad", encoder="minilm", batch_size=16, seed=0, epochs=4,
             encoder_options={"max_length": 256}),
        [
            ("minilm_full", dict(strategy="full", learning_rate=1e-4)),
            ("minilm_from_scratch", dict(baseline="from_scratch", strategy="full", learning_rate=1e-4)),
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--data-dir", help="folder with local copies of named datasets (e.g. ../shared/data)")
    parser.add_argument("--only", help="comma-separated run names to train (default: all of the config)")
    parser.add_argument("--train-sizes", help="comma-separated labelled-set sizes: each run is repeated per size")
    parser.add_argument("--runs-dir", help="where the run directories go (default runs/<config>)")
    parser.add_argument("--output", help="where the report goes (default reports/<config>)")
    parser.add_argument("--in-process", action="store_true", help="run in this process (peak memory then shared)")
    args = parser.parse_args()

    shared, runs = PRESETS[args.config]
    runs_dir = Path(args.runs_dir or f"runs/{args.config}")
    only = set(args.only.split(",")) if args.only else None
    sizes = [int(s) for s in args.train_sizes.split(",")] if args.train_sizes else [None]
    directories = []
    for name, settings in runs:
        if only and name not in only:
            continue
        for size in sizes:
            run_name = name if size is None else f"{name}-n{size}"
            # a rerun of the recipe replaces its earlier runs (only their nlptl files; see nlptl.rundir)
            values = {**shared, **settings, "name": run_name, "output_dir": str(runs_dir / run_name),
                      "overwrite": True}
            if size is not None:
                values["train_size"] = size
            if args.data_dir:
                values["data_dir"] = args.data_dir
            config = RunConfig(**values)
            print(f"== {run_name}: {describe(config)}", flush=True)
            command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
            directories.append(run(config, command) if args.in_process else run_in_subprocess(config, command))
    report = write_report(directories, args.output or f"reports/{args.config}", title=f"Strategy comparison: {args.config}")
    print(f"report: {report}")


def describe(config: RunConfig) -> str:
    if config.baseline == "tfidf_lr":
        return "baseline=tfidf_lr"
    keys = ("baseline", "strategy", "top_k", "encoder", "epochs", "learning_rate", "train_size")
    values = dataclasses.asdict(config)
    return ", ".join(f"{k}={values[k]}" for k in keys if values[k] is not None)


if __name__ == "__main__":
    main()
