"""Does every `--adaptation` keep the source task with the CLI's defaults (the whole encoder fine-tuning)?

    python benchmarks/domain_adaptation/cli_defaults_check.py --data-dir ../shared/data --output DIR

Why: DANN's defaults, chosen on frozen features, sent the README's full fine-tuning command to
chance (see dann_stability.py). CORAL, MMD, the importance / KMM weights and self-training were
also chosen on frozen features and had never run with the whole encoder training. This script
runs each one the way `nlptl train --adaptation NAME` does (the same objective, weights or
self-training rounds, every default) on the development pair dvd -> electronics, with
--max-length 64 for time. Nothing is chosen here: it checks.

Flags, written before it ran: a method "loses the source task" when its accuracy on 400 held-out
dvd reviews is more than 2 points below source-only's (the tolerance dann_stability.py used), and
shows "negative transfer" when its electronics accuracy is below source-only's.
"""
import argparse
import json
import time

from development_pair import TOLERANCE, development_pair, new_model as minilm_classifier, new_output, write_result

import nlptl
from nlptl.adaptation import ADAPTATIONS, OBJECTIVES, importance_weights, objective_for, self_training, \
    weights_method_for



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--source", default="dvd")
    parser.add_argument("--target", default="electronics")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--methods", default=",".join(("source_only", *ADAPTATIONS)),
                        help="comma-separated; source_only first (the flags compare against it)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in ("source_only", *ADAPTATIONS)]
    if unknown or methods[0] != "source_only":
        raise SystemExit(f"--methods: start with source_only, then any of {', '.join(ADAPTATIONS)} (got {unknown})")
    out = new_output(args.output)
    train, held_out, target = development_pair(args.data_dir, args.source, args.target)
    target_texts = target.remove_columns("label")
    evaluation = {"source": held_out, "target": target}
    names = train.features["label"].names

    def new_model():
        return minilm_classifier(names, args.max_length)

    options = {"seed": 0, "progress": False, "mixed_precision": "no"}
    rows = []
    for method in methods:
        started = time.perf_counter()
        model = new_model()
        if method == "source_only":
            result = nlptl.fit(model, train, evaluation, **options)
        elif method in OBJECTIVES:
            result = nlptl.fit(model, {"source": train, "target": target_texts}, evaluation,
                               objective=objective_for(method), **options)
        elif method == "self_training":  # as runs._self_train: fresh models, only the last fit evaluates
            fresh = [model]
            result = self_training(lambda: fresh.pop() if fresh else new_model(), train, list(target["text"]),
                                   final_fit_options={"eval_data": evaluation}, **options).fit
        else:  # importance / kmm weights, as runs._transfer_method
            weights = importance_weights(model.encoder, list(train["text"]), list(target["text"]),
                                         method=weights_method_for(method), seed=0)
            weighted = train.add_column("importance_weight", [float(w) for w in weights])
            result = nlptl.fit(model, weighted, evaluation, weight_column="importance_weight", **options)
        row = {"method": method, "source_held_out": result.metrics["source/accuracy"],
               "target": result.metrics["target/accuracy"], "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)

    baseline = rows[0]
    for row in rows[1:]:
        row["loses_source_task"] = row["source_held_out"] < baseline["source_held_out"] - TOLERANCE
        row["negative_transfer"] = row["target"] < baseline["target"]
    summary = {"rows": rows, "pair": f"{args.source}->{args.target}", "max_length": args.max_length,
               "flags": f"loses_source_task: held-out source < source-only - {TOLERANCE}; "
                        "negative_transfer: target < source-only"}
    print(json.dumps(summary, indent=2))
    write_result(out, "cli_defaults_check.json", summary)


if __name__ == "__main__":
    main()
