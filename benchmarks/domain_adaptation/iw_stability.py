"""Do importance weights keep the source task when the whole encoder fine-tunes (the CLI's default)?

    python benchmarks/domain_adaptation/iw_stability.py --data-dir ../shared/data --output DIR

Why: `cli_defaults_check.py` ran `--adaptation importance` the CLI's way (every default: MiniLM
fully fine-tuned, the domain classifier's density ratio clipped at 10) on dvd -> electronics at 64
tokens: 0.7075 on the 400 held-out dvd reviews and 0.7025 on electronics, where source-only scores
0.7975 / 0.7595 (`cli_defaults_check/weights.json`). On these MiniLM features the two domains are
nearly separable, so the ratio puts most of the weight on a few reviews: an effective sample size of
181 of the 1,600 training reviews (KMM: 165, every weight but 175 at zero). Fine-tuning on that
little loses the source task.

Knob: ``importance_weights(..., strength=s)`` moves the weights toward uniform, (1 - s) + s * w.
Rule, written before this script ran (the same kind as mmd_stability.py's and dann_stability.py's):
on the same development pair and settings, the default strength becomes the largest of 1.0 / 0.5 /
0.25 / 0.1 whose held-out *source* accuracy with `importance` is within 2 points of source-only's
(no target label takes part). 1.0 is known to fail (above) and source-only's 0.7975 was reproduced
to the digit by three runs, so the script tries 0.5, 0.25, 0.1 in that order and stops at the first
that passes. If none passes, the default stays 1.0 and the README says that importance weighting
loses the source task under full fine-tuning. The default serves `kmm` too (one knob for both), so
the script then trains `kmm` at the chosen strength and flags it the same way. Target accuracy is
printed for information.
"""
import argparse
import json
import time

from development_pair import TOLERANCE, development_pair, new_model, new_output, write_result
from mmd_stability import SOURCE_ONLY_HELD_OUT

import nlptl
from nlptl.adaptation import importance_weights

STRENGTHS = (0.5, 0.25, 0.1)  # 1.0 already measured: 0.7075 held-out source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    out = new_output(args.output)
    train, held_out, target = development_pair(args.data_dir)

    def weighted_run(method: str, strength: float) -> dict:
        """`nlptl train --adaptation importance|kmm` as runs._transfer_method does it, at ``strength``."""
        model = new_model(train.features["label"].names)
        started = time.perf_counter()
        weights, info = importance_weights(model.encoder, list(train["text"]), list(target["text"]), method=method,
                                           seed=0, strength=strength, return_info=True)
        result = nlptl.fit(model, train.add_column("importance_weight", [float(w) for w in weights]),
                           {"source": held_out, "target": target}, weight_column="importance_weight", seed=0,
                           progress=False, mixed_precision="no")
        row = {"method": method, "strength": strength, "effective_sample_size": round(info["effective_sample_size"], 1),
               "source_held_out": result.metrics["source/accuracy"],
               "target_for_information": result.metrics["target/accuracy"],
               "seconds": round(time.perf_counter() - started, 1)}
        row["keeps_source_task"] = row["source_held_out"] >= SOURCE_ONLY_HELD_OUT - TOLERANCE
        print(json.dumps(row), flush=True)
        return row

    rows, chosen = [], None
    for strength in STRENGTHS:
        rows.append(weighted_run("classifier", strength))
        if rows[-1]["keeps_source_task"]:
            chosen = strength
            break
    if chosen is not None:
        rows.append(weighted_run("kmm", chosen))
    summary = {"rows": rows, "chosen_strength": chosen if chosen is not None else 1.0,
               "rule": f"largest of 1.0 / {' / '.join(map(str, STRENGTHS))} with held-out source accuracy >= "
                       f"{SOURCE_ONLY_HELD_OUT} - {TOLERANCE}; 1.0 measured before (0.7075); none passing keeps 1.0",
               "pair": "dvd->electronics", "max_length": 64}
    print(json.dumps(summary, indent=2))
    write_result(out, "iw_stability.json", summary)


if __name__ == "__main__":
    main()
