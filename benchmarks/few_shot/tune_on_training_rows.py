"""How the few-shot defaults were chosen: candidates scored on held-out *training* rows, never the evaluation split.

    python benchmarks/few_shot/tune_on_training_rows.py --dataset sst2 \
        --configs '[{"setfit": true}, {"epochs": 20, "learning_rate": 5e-5, "strategy": "full"},
                    {"epochs": 8, "learning_rate": 1e-4, "strategy": "top_k", "top_k": 6}]'
    python benchmarks/few_shot/tune_on_training_rows.py --dataset ag_news \
        --configs '[{"epochs": 8}, {"epochs": 16}, {"epochs": 24}]'

The last 1,000 rows of a seeded shuffle (seed 123) of the training pool are the held-out rows;
the shots (8 per class, seeds 10 and 11: not the reported seeds 0-4) are drawn from the first
len - 1,000 rows of another shuffle (seed 7), as in the session that chose the defaults, so a
drawn shot can (rarely: 16 of ~66,000 rows) also be a held-out row. Each config
overrides the recipe's nlptl settings (``recipes/few_shot.py``); ``{"setfit": true}`` runs SetFit
with its defaults instead; ``{"label_examples": true}`` adds the label sentences to the shots, as the
recipe's ``--label-examples`` does. Prints one JSON line per config: accuracies, their mean, CPU seconds.
"""
import argparse
import json
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import few_shot  # noqa: E402  (recipes/few_shot.py: the systems being compared)
from nlptl.fewshot import add_label_sentences, sample_shots  # noqa: E402
from nlptl.fewshot.splits import load_benchmark  # noqa: E402

RECIPE = dict(encoder="minilm", head="linear", strategy="top_k", top_k=6, epochs=8, batch_size=32,
              learning_rate=1e-4, head_learning_rate=1e-2, pairs_per_example=20, label_examples=False)
SEEDS = (10, 11)
HELD_OUT = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2", choices=["sst2", "ag_news", "amazon_books"])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--configs", required=True, help="JSON list of overrides of the recipe's settings")
    args = parser.parse_args()

    bench = load_benchmark(args.dataset, args.data_dir, None, 0)
    held_out = bench.pool.shuffle(seed=123)
    bench.evaluation = held_out.select(range(len(held_out) - HELD_OUT, len(held_out)))  # scored on these
    draw_from = bench.pool.shuffle(seed=7).select(range(len(bench.pool) - HELD_OUT))
    for config in json.loads(args.configs):
        options = types.SimpleNamespace(**{**RECIPE, **{k: v for k, v in config.items() if k != "setfit"}})
        accuracies, cpu = [], []
        for seed in SEEDS:
            shots = sample_shots(draw_from, args.shots, seed)
            if options.label_examples:
                shots = add_label_sentences(shots, bench.template, bench.descriptions)
            if config.get("setfit"):
                accuracy, _, seconds = few_shot.setfit_system(bench, shots, seed, options)
            else:
                accuracy, _, seconds = few_shot.nlptl_system(bench, shots, seed, options, contrastive=True)
            accuracies.append(accuracy)
            cpu.append(seconds)
        print(json.dumps({"config": config, "accuracy": [round(a, 4) for a in accuracies],
                          "mean": round(sum(accuracies) / len(accuracies), 4), "cpu_seconds": [round(c, 1) for c in cpu]}),
              flush=True)


if __name__ == "__main__":
    main()
