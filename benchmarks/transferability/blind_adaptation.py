"""Does `nlptl auto` gain by adapting when its budget has no room to check? MMD against none, pair by pair.

    python benchmarks/transferability/blind_adaptation.py --data-dir ../shared/data

Given an ``--unlabeled-file`` whose proxy A-distance to the training text is at least 1.0 (every
Amazon pair is at 1.74-1.96), ``nlptl auto`` trains its chosen configuration with MMD toward that
text. When the budget also holds the same run without MMD, the report says which won; when it does
not (a 20-minute budget on books->kitchen), auto adapts without checking. This script measures
what that blind choice is worth, on the Amazon pairs, at the configuration auto trains there:
MiniLM, the freeze line its ranking advises for the source (``rank_texts``, as auto calls it,
seed 0), one epoch, every other setting at its default. For each pair it trains that run twice,
with ``--adaptation mmd`` toward the target text and without, and scores both on the target
reviews (the transductive protocol of ``../shared/data/README.md``, as in
``auto_target_domain.py``, whose target files it writes).

The pairs and the rule were fixed before any of these runs: books->kitchen (where auto's
20-minute run adapted blind and scored 4.5 points below its 6-minute run without MMD), then one
pair per source domain, each to the next domain in the order books, dvd, electronics, kitchen.
If MMD beats the unadapted run on at least 3 of the 5 pairs and on their mean, auto keeps adapting
blind; otherwise it adapts only when the budget also holds the unadapted run.

``--epochs 2`` asks the same question one rung up: at the default 20-minute budget on books->kitchen,
auto now trains two epochs with MMD and two without (its check), and there MMD lost 0.704 to 0.7545.
Rule, fixed before any two-epoch run, on the same five pairs and seed 0: if MMD beats the unadapted
run on at least 3 of the 5 pairs and on their mean, auto keeps planning the MMD run beside its check;
otherwise MMD has lost at one epoch and at two, and auto stops spending its budget on it by default
(the A-distance is still measured and reported; adapting becomes something a user asks for).

The runs above used MMD's weight at 1.0. When the default became 0.3 (MMD at 1.0 took the whole
encoder to chance; benchmarks/domain_adaptation/mmd_stability.py), auto's notes still said "MMD lost
on every Amazon pair measured", a claim about 1.0 only. Run again, the script records the weight it
used (``MMD().trade_off``) and, for a weight other than 1.0, applies this rule, fixed before the
0.3 run (2026-12-08), on the same five pairs, seed 0, one epoch: if MMD beats the unadapted run on
at least 3 of the 5 pairs and on their mean, auto's notes and ``--adapt`` help say MMD at its
default paid at auto's configuration; otherwise they say it lost at 1.0 and at its default. Either
way adapting stays something a user asks for (two epochs at 0.3 are not measured).

Runs go under ``--runs`` (not committed); ``--output`` gets blind_adaptation.json (with the command)
and report.md. A pair's finished runs are read back, not retrained, when the script is run again.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from auto_target_domain import DOMAINS, write_target_files

from nlptl.adaptation import MMD
from nlptl.artifacts import write_text_atomically
from nlptl.data import load_dataset
from nlptl.runs import RunConfig, run
from nlptl.transferability.pipeline import rank_texts

HERE = Path(__file__).resolve().parent
PAIRS = ("books->kitchen", "books->dvd", "dvd->electronics", "electronics->kitchen", "kitchen->books")
VERDICTS = {  # per --epochs: what MMD winning (True) or not (False) on at least 3 of 5 pairs and the mean decides
    1: {True: "keep adapting blind", False: "adapt only when the check fits",
        "rule": "keep adapting blind only if MMD wins on at least 3 of 5 pairs and on the mean"},
    2: {True: "keep planning the checked MMD run", False: "stop planning MMD by default",
        "rule": "keep planning MMD beside its check only if MMD wins on at least 3 of 5 pairs and on the mean"},
}
RECHECK = {  # a weight other than the 1.0 the verdicts above were written for (one epoch only)
    True: "auto's notes say MMD at its default paid at auto's configuration",
    False: "auto's notes say MMD lost at 1.0 and at its default",
    "rule": "say MMD at its default paid only if it wins on at least 3 of 5 pairs and on the mean",
}


def parse_pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in value.split(","):
        source, _, target = pair.strip().partition("->")
        if source not in DOMAINS or target not in DOMAINS or source == target:
            raise argparse.ArgumentTypeError(f"{pair!r} is not SOURCE->TARGET over {', '.join(DOMAINS)}")
        pairs.append((source, target))
    return pairs


def trained(config: RunConfig) -> dict:
    """Train ``config`` unless its run directory already holds a finished run; its accuracy and seconds."""
    metrics = Path(config.output_dir) / "metrics.json"
    if not metrics.exists():
        started = time.perf_counter()
        run(config)
        seconds = time.perf_counter() - started
        write_text_atomically(metrics.with_name("wall_seconds.json"), json.dumps({"seconds": seconds}))
    seconds = json.loads(metrics.with_name("wall_seconds.json").read_text())["seconds"]
    return {"accuracy": json.loads(metrics.read_text())["metrics"]["accuracy"], "seconds": round(seconds, 1)}


def report(result: dict) -> str:
    epochs = result.get("epochs", 1)
    lines = ["# Blind adaptation: MMD against none at auto's configuration", "",
             f"Command: `{result['command']}`. Seed {result['seed']}; accuracy on the 2,000 target reviews; "
             f"each run: MiniLM, the advised freeze line, {epochs} epoch{'s' * (epochs > 1)}, defaults otherwise; "
             f"MMD's weight {result.get('mmd_trade_off', 1.0)}.", "",
             "| pair | advised | unadapted | mmd | mmd - unadapted (points) | seconds (unadapted / mmd) |",
             "|---|---|---|---|---|---|"]
    for pair, row in result["pairs"].items():
        lines.append(f"| {pair} | {row['advised']} | {row['unadapted']['accuracy']:.4f} | {row['mmd']['accuracy']:.4f} "
                     f"| {100 * (row['mmd']['accuracy'] - row['unadapted']['accuracy']):+.2f} "
                     f"| {row['unadapted']['seconds']:.0f} / {row['mmd']['seconds']:.0f} |")
    summary = result.get("summary")
    if summary:
        lines += ["", f"MMD better on {summary['mmd_better']} of {summary['pairs']} pairs; mean difference "
                      f"{summary['mean_difference_points']:+.2f} points. Rule fixed before the runs: "
                      f"{summary['rule']}: **{summary['verdict']}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--pairs", type=parse_pairs, default=parse_pairs(",".join(PAIRS)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, choices=[1, 2], default=1, help="of every run (the rule differs)")
    parser.add_argument("--runs", type=Path, default=Path("runs/blind-adaptation"))
    parser.add_argument("--output", type=Path, help="default: blind-adaptation[-2epochs]/ beside this script")
    args = parser.parse_args()
    trade_off = MMD().trade_off  # what --adaptation mmd trains with
    if trade_off != 1.0 and args.epochs != 1:
        sys.exit(f"--epochs {args.epochs}: the rule for MMD's weight {trade_off} was fixed for one epoch only")
    tag = (f"-{args.epochs}epochs" if args.epochs != 1 else "") + (f"-mmd{trade_off}" if trade_off != 1.0 else "")
    args.output = args.output or HERE / f"blind-adaptation{tag}"
    if not Path(args.data_dir, "amazon_multidomain").is_dir():
        sys.exit(f"--data-dir: {args.data_dir} has no amazon_multidomain/ folder (see ../shared/data/README.md)")

    command = shlex.join(["python", "benchmarks/transferability/blind_adaptation.py", *sys.argv[1:]])
    result = {"command": command, "seed": args.seed, "epochs": args.epochs, "mmd_trade_off": trade_off, "pairs": {}}
    args.output.mkdir(parents=True, exist_ok=True)
    advice: dict[str, dict] = {}  # per source domain: what auto's ranking advises for its labelled reviews
    files: dict[str, tuple[Path, Path]] = {}  # per target domain: (labelled, text-only) files
    for source, target in args.pairs:
        pair = f"{source}->{target}"
        if target not in files:
            files[target] = write_target_files(args.data_dir, target, args.runs / f"{target}-data")
        labelled, text = files[target]
        data = {"task": "text-classification", "dataset": "amazon_reviews", "dataset_options": {"domain": source},
                "data_dir": args.data_dir, "eval_file": str(labelled), "seed": args.seed}
        if source not in advice:
            train = load_dataset("amazon_reviews", domain=source, data_dir=args.data_dir)["train"]
            advice[source] = rank_texts(list(train["text"]), list(train["label"]), seed=args.seed)["recommendation"]
        rec = advice[source]
        if rec["encoder"] != "minilm":
            sys.exit(f"{pair}: the ranking chose {rec['encoder'] or rec['baseline']}, not MiniLM; "
                     "auto would not adapt it")
        settings = {"encoder": "minilm", "strategy": rec["strategy"], "epochs": args.epochs}
        if rec["strategy"] == "top_k":
            settings["top_k"] = rec["top_k"]
        folder = args.runs / f"seed{args.seed}" / f"{source}-{target}{tag}"  # read back only for the same seed,
        # epochs and MMD weight
        row = {"advised": f"top_k={rec['top_k']}" if rec["strategy"] == "top_k" else rec["strategy"]}
        row["unadapted"] = trained(RunConfig(output_dir=str(folder / "unadapted"), **data, **settings))
        row["mmd"] = trained(RunConfig(output_dir=str(folder / "mmd"), unlabeled_file=str(text), adaptation="mmd",
                                       **data, **settings))
        result["pairs"][pair] = row
        print(pair, json.dumps(row), flush=True)
        write_text_atomically(args.output / "blind_adaptation.json", json.dumps(result, indent=1) + "\n")
    differences = [row["mmd"]["accuracy"] - row["unadapted"]["accuracy"] for row in result["pairs"].values()]
    wins = sum(d > 0 for d in differences)
    mean = 100 * sum(differences) / len(differences)
    fixed = list(result["pairs"]) == list(PAIRS) and args.seed == 0
    keep = (wins >= 3 and mean > 0) if fixed else None
    verdicts = VERDICTS[args.epochs] if trade_off == 1.0 else RECHECK
    verdict = verdicts[keep] if keep is not None else "not the fixed pairs and seed 0: no verdict"
    result["summary"] = {"pairs": len(differences), "mmd_better": wins, "mean_difference_points": round(mean, 2),
                         "verdict": verdict, "rule": verdicts["rule"]}
    write_text_atomically(args.output / "blind_adaptation.json", json.dumps(result, indent=1) + "\n")
    write_text_atomically(args.output / "report.md", report(result))
    print(report(result))


if __name__ == "__main__":
    main()
