"""Recipe: fine-tune a pretrained encoder for text classification and write a run directory.

    python recipes/text_classification.py --dataset sst2 --data-dir ../shared/data \
        --encoder minilm --strategy top_k --top-k 2 --epochs 1 --output-dir runs/sst2-topk

Every flag is a RunConfig setting (nlptl/runs.py); `nlptl train` takes the same ones.
"""
import argparse
import json

from nlptl.cli import add_run_arguments, config_from_args
from nlptl.runs import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    config = config_from_args(parser.parse_args())  # data, encoder, head, strategy, seed ...
    out = run(config)  # load data -> build model -> nlptl.fit -> write the run directory
    print(json.dumps({"run": str(out), **json.loads((out / "metrics.json").read_text())["metrics"]}))


if __name__ == "__main__":
    main()
