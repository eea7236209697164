"""Choose between one zero-shot template and a template ensemble on held-out *training* rows.

    python benchmarks/few_shot/tune_zero_shot_templates.py --data-dir ../shared/data \
        --output benchmarks/few_shot/tune-zero-shot-templates.json

Zero-shot already averages each label's descriptions ("good", "great") through one template. A
prompt ensemble (Radford et al. 2021, CLIP) also averages over several phrasings of the template,
so no single wording's quirks decide the label embedding. The candidates below were written down
before the first run of this script, as was the rule:

  single     the template fixed in ``nlptl/fewshot/splits.py`` (what ``recipes/zero_shot.py`` uses)
  ensemble   that template and the four in ``ENSEMBLES``, every one filled with every description

Both are scored centred on the 4,000 unlabelled training texts (``zero_shot``'s ``center_on``, the
recipe's headline) and, for information, uncentred. Rows are those of
``tune_zero_shot_calibration.py``: the next 2,000 training rows of the recipe's shuffle (Amazon
books: the 945 reviews that can be drawn as shots), never the evaluation split.

Rule: the recipe adopts the ensemble if its centred accuracy, averaged over the three datasets,
beats the single template's by at least 1 point and it loses 1 point or more on none of them;
otherwise the single template stays.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
from tune_zero_shot_calibration import training_rows, unit

import nlptl
from nlptl import assets
from nlptl.artifacts import write_text_atomically
from nlptl.fewshot import zero_shot
from nlptl.fewshot.splits import load_benchmark

ENSEMBLES = {  # each list starts with the single template of splits.py
    "sst2": ["This movie review is {}.", "The movie is {}.", "It was {}.", "A {} movie.", "Overall, it was {}."],
    "ag_news": ["This news article is about {}.", "This article is about {}.", "A news story about {}.",
                "The topic is {}.", "News about {}."],
    "amazon_books": ["This book review is {}.", "The book is {}.", "It was {}.", "A {} book.", "Overall, it was {}."],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0, help="the zero-shot recipe's seed (its unlabelled sample)")
    args = parser.parse_args()
    encoder = nlptl.load_encoder(assets.minilm_path(), kind="transformer")
    result = {"command": "python benchmarks/few_shot/tune_zero_shot_templates.py --data-dir ../shared/data "
                         f"--output {args.output}" + (f" --seed {args.seed}" if args.seed else ""),
              "seed": args.seed, "templates": ENSEMBLES, "datasets": {}}
    for name, templates in ENSEMBLES.items():
        started = time.perf_counter()
        bench = load_benchmark(name, args.data_dir, seed=args.seed)
        assert templates[0] == bench.template, f"{name}: the ensemble must start with splits.py's template"
        unlabelled, scored = training_rows(bench, args.seed)
        texts = list(scored["text"])
        feats = unit(encoder.encode(texts))  # (N, D)
        pool_feats = unit(encoder.encode(list(unlabelled["text"])))  # (M, D)
        gold = np.asarray(scored["label"])
        row = {"scored_rows": len(scored), "unlabelled_rows": len(unlabelled)}
        for candidate, template in (("single", bench.template), ("ensemble", templates)):
            for suffix, center_on in (("", pool_feats), ("_uncentred", None)):
                predicted = zero_shot(encoder, texts, bench.labels, template, bench.descriptions,
                                      text_features=feats, center_on=center_on)
                row[candidate + suffix] = float(np.mean([bench.labels.index(p) == g for p, g in zip(predicted, gold)]))
        row["seconds"] = time.perf_counter() - started
        result["datasets"][name] = row
        print(name, json.dumps(row), flush=True)
    gains = {name: row["ensemble"] - row["single"] for name, row in result["datasets"].items()}
    mean_gain = float(np.mean(list(gains.values())))
    adopt = mean_gain >= 0.01 and min(gains.values()) > -0.01
    result["rule"] = {"gain_points": {n: round(100 * g, 2) for n, g in gains.items()},
                      "mean_gain_points": round(100 * mean_gain, 2),
                      "verdict": "adopt the ensemble" if adopt else "keep the single template"}
    write_text_atomically(Path(args.output), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["rule"]))


if __name__ == "__main__":
    main()
