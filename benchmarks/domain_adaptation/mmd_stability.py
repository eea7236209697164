"""Does MMD keep the source task when the whole encoder fine-tunes (the CLI's default strategy)?

    python benchmarks/domain_adaptation/mmd_stability.py --data-dir ../shared/data --output DIR

Why: `cli_defaults_check.py` ran `--adaptation mmd` the CLI's way (every default: MiniLM fully
fine-tuned, MMD trade-off 1.0, chosen on frozen features) on dvd -> electronics at 64 tokens: 0.49
on the 400 held-out dvd reviews and 0.5005 on electronics, chance, where source-only scores
0.7975 / 0.7595. The kernel bandwidths follow the features' own scale, so the encoder cannot
shrink the term by shrinking the features; at weight 1 it outweighs the task loss instead.

Rule, written before this script ran (the same as dann_stability.py's for DANN's coefficient): on
the same development pair and settings, the default trade-off becomes the largest of 1.0 / 0.3 /
0.1 / 0.03 whose held-out *source* accuracy is within 2 points of source-only's (no target label
takes part). 1.0 is known to fail (above) and source-only's 0.7975 is known from
dann_stability.json (same split, seed and settings; cli_defaults_check.py reproduced it to the
digit), so the script tries 0.3, 0.1, 0.03 in that order and stops at the first that passes.
Target accuracy is printed for information.
"""
import argparse
import json
import time

from development_pair import TOLERANCE, development_pair, new_model, new_output, write_result

import nlptl
from nlptl.adaptation import MMD

TRADE_OFFS = (0.3, 0.1, 0.03)  # 1.0 already measured: 0.49 held-out source
SOURCE_ONLY_HELD_OUT = 0.7975  # dann_stability.json, the same split, seed and settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    out = new_output(args.output)
    train, held_out, target = development_pair(args.data_dir)
    rows, chosen = [], None
    for trade_off in TRADE_OFFS:
        model = new_model(train.features["label"].names)
        started = time.perf_counter()
        result = nlptl.fit(model, {"source": train, "target": target.remove_columns("label")},
                           {"source": held_out, "target": target}, objective=MMD(trade_off=trade_off), seed=0,
                           progress=False, mixed_precision="no")
        row = {"trade_off": trade_off, "source_held_out": result.metrics["source/accuracy"],
               "target_for_information": result.metrics["target/accuracy"],
               "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if row["source_held_out"] >= SOURCE_ONLY_HELD_OUT - TOLERANCE:
            chosen = trade_off
            break
    summary = {"rows": rows, "known": {"source_only": {"source_held_out": SOURCE_ONLY_HELD_OUT, "target": 0.7595},
                                       "mmd@1.0": {"source_held_out": 0.49, "target": 0.5005}},
               "rule": f"largest trade_off with source held-out >= {SOURCE_ONLY_HELD_OUT} - {TOLERANCE}",
               "chosen_trade_off": chosen, "pair": "dvd->electronics", "max_length": 64}
    print(json.dumps(summary, indent=2))
    write_result(out, "mmd_stability.json", summary)


if __name__ == "__main__":
    main()
