"""Recipe: extractive question answering (SQuAD format) with a pretrained encoder.

    python recipes/extractive_qa.py --dataset squad --data-dir ../shared/data --encoder minilm \
        --strategy full --epochs 3 --learning-rate 1e-4 --output-dir runs/squad-minilm

A dataset with no training split (such as the SQuAD dev subset) is split by article, so no
context is shared between training and evaluation (--qa-eval-fraction, seeded by --seed).
"""
import argparse
import json

from nlptl.cli import add_run_arguments, config_from_args
from nlptl.runs import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--qa-eval-fraction", type=float, default=0.3, help="share of articles held out")
    parser.set_defaults(task="extractive-qa", max_length=256)
    args = parser.parse_args()
    config = config_from_args(args)
    config.qa_eval_fraction = args.qa_eval_fraction
    out = run(config)
    print(json.dumps({"run": str(out), **json.loads((out / "metrics.json").read_text())["metrics"]}))


if __name__ == "__main__":
    main()
