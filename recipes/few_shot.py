"""Recipe: k-shot text classification, nlptl's contrastive pairs beside SetFit and plain fine-tuning.

    python recipes/few_shot.py --data-dir ../shared/data --dataset sst2 --shots 8 --seeds 0,1,2,3,4 \
        --compare setfit --output reports/sst2-8shot

The defaults (``top_k`` 6: every transformer layer tuned, the embeddings frozen and cached at
the freeze line; 8 epochs, encoder rate 1e-4, head 1e-2, batch 32, 20 pairs per example) were
chosen on SST-2 at 8 shots with seeds 10 and 11 scored on 1,000 held-out *training* rows, never
on the evaluation split: the whole encoder for 6 epochs at 5e-5 scored 0.630, 20 at 5e-5 0.644,
8 at 1e-4 with the refitted head 0.643; embeddings frozen, 8 at 1e-4: 0.647 in 0.87x the CPU
time; SetFit 0.640 there (``benchmarks/few_shot/tune_on_training_rows.py`` reruns these; the
6- and 20-epoch figures predate the head refit, which is now always on for a linear head, so a
rerun of those configs includes it).

For each seed, ``nlptl.fewshot.sample_shots`` draws k training examples per class, and every system
trains on exactly those rows and is scored on the same evaluation rows. With ``--label-examples``
the rows also hold the zero-shot label sentences (``nlptl.fewshot.label_sentences``: the dataset's
template filled with each label's descriptions, e.g. "This movie review is great." -> positive),
for every system alike:

- ``nlptl``: ``ContrastivePairs`` (pair loss + head in one ``nlptl.fit``, the linear head refitted
  by logistic regression at the end), every layer above the embeddings tuned;
- ``plain_fine_tune``: the same model, strategy and steps with the plain ``Supervised`` objective;
- ``setfit`` (``--compare setfit``; ``pip install 'nlptl[bench]'``): SetFit on the same MiniLM with
  its documented defaults (only ``seed`` set, to the draw's seed).

Training seconds are wall time of training alone (nlptl: ``FitResult.train_seconds``, which counts
preparing rows and caches; SetFit: ``Trainer.train()``, which counts pair sampling and its
logistic-regression head); loading the model and scoring are not counted. Systems take turns
going first, by seed number, so a busy machine slows them alike. Writes few_shot.json and report.md,
updated after every seed; ``--resume`` keeps the finished seeds and runs the others. An existing
few_shot.json in --output is never replaced silently: pass ``--resume`` or ``--overwrite``.
"""
import argparse
import json
import statistics
import sys
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import nlptl
from nlptl.artifacts import check_results_table, write_text_atomically
from nlptl.cli import positive_int
from nlptl.fewshot import ContrastivePairs, add_label_sentences, prototypes, sample_shots
from nlptl.fewshot.splits import load_benchmark
from nlptl.devices import default_device_type, resolve_precision
from nlptl.heads import ClassificationHead
from nlptl.objectives import Supervised
from nlptl.runs import resolve_encoder_source


def nlptl_system(bench, shots, seed: int, args, contrastive: bool) -> tuple[float, float, float]:
    """(accuracy, training seconds, training CPU seconds of this process) of one nlptl fit on the shots."""
    path, kind = resolve_encoder_source(args.encoder)
    encoder = nlptl.load_encoder(path, kind=kind)
    wall, cpu = time.perf_counter(), time.process_time()
    if contrastive and args.head == "prototype":  # a cosine classifier started at the support class means
        head = prototypes(encoder, list(shots["text"]), [bench.labels[i] for i in shots["label"]], labels=bench.labels,
                          trainable=True)
    else:
        head = ClassificationHead(len(bench.labels))
    head_wall, head_cpu = time.perf_counter() - wall, time.process_time() - cpu
    model = nlptl.TransferModel(encoder, head, labels=bench.labels)
    objective = ContrastivePairs(pairs_per_example=args.pairs_per_example, seed=seed) if contrastive else Supervised()
    cpu = time.process_time()
    result = nlptl.fit(model, shots, objective=objective, strategy=args.strategy,
                       top_k=args.top_k if args.strategy == "top_k" else None,
                       epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       head_learning_rate=args.head_learning_rate, seed=seed, progress=False)
    cpu = time.process_time() - cpu + head_cpu
    accuracy = nlptl.evaluate(model, bench.evaluation, batch_size=64)["accuracy"]
    return accuracy, result.train_seconds + head_wall, cpu  # computing prototypes counts as training


def setfit_system(bench, shots, seed: int, args) -> tuple[float, float, float]:
    """(accuracy, training seconds, training CPU seconds) of SetFit with its defaults on the same encoder and shots."""
    from setfit import SetFitModel, Trainer, TrainingArguments

    path, _ = resolve_encoder_source(args.encoder)
    model = SetFitModel.from_pretrained(path)
    # its documented defaults, except where its checkpoints go: a temporary folder, not ./checkpoints
    scratch = tempfile.mkdtemp(prefix="setfit-")
    trainer = Trainer(model=model, args=TrainingArguments(seed=seed, output_dir=scratch), train_dataset=shots)
    started, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(scratch, ignore_errors=True)  # the folder this function made
    predicted = np.asarray(model.predict(list(bench.evaluation["text"]), batch_size=64))
    return float((predicted == np.asarray(bench.evaluation["label"])).mean()), seconds, cpu


def summary(per_seed: list[dict], name: str) -> dict:
    accuracies = [row[name] for row in per_seed if row.get(name) is not None]
    if not accuracies:
        return {"mean": None, "std": None, "seconds": None, "cpu_seconds": None, "seeds": 0}
    return {"mean": statistics.fmean(accuracies), "std": statistics.pstdev(accuracies),
            "seconds": sum(row[f"{name}_seconds"] for row in per_seed if row.get(name) is not None),
            "cpu_seconds": sum(row[f"{name}_cpu_seconds"] for row in per_seed if row.get(name) is not None),
            "seeds": len(accuracies)}


def write(out: Path, result: dict) -> None:
    write_text_atomically(out / "few_shot.json", json.dumps(result, indent=2))  # a stopped run keeps its last table
    lines = [f"# {result['dataset']}, {result['shots']} examples per class, seeds {result['seeds']}", "",
             f"Command: `{result['command']}`", "", f"Scored on {result['evaluation']}. Encoder: {result['encoder']}.",
             f"nlptl settings: `{json.dumps(result['settings'])}`.", "",
             "| system | mean accuracy | std | training seconds (all seeds) | training CPU seconds | seeds |",
             "|---|---|---|---|---|---|"]
    for name in result["systems"]:
        s = result[name]
        if s.get("error"):
            lines.append(f"| {name} | failed: `{s['error']}` | | | | |")
        elif s["mean"] is not None:
            lines.append(f"| {name} | {s['mean']:.3f} | {s['std']:.3f} | {s['seconds']:.1f} | {s['cpu_seconds']:.1f} "
                         f"| {s['seeds']} |")
    if result.get("setfit", {}).get("seconds") and result["nlptl"]["seconds"]:
        lines += ["", f"nlptl / SetFit training time: {result['nlptl']['seconds'] / result['setfit']['seconds']:.2f}x wall, "
                  f"{result['nlptl']['cpu_seconds'] / result['setfit']['cpu_seconds']:.2f}x CPU (process time, "
                  "steadier on a shared machine)"]
    lines += ["", "Per seed: " + json.dumps(result["per_seed"])]
    write_text_atomically(out / "report.md", "\n".join(lines) + "\n")


def resumed(path: Path, result: dict) -> set[int]:
    """Take the finished seeds of an earlier run into ``result``; exit if it measured something else."""
    if not path.exists():
        return set()
    earlier = json.loads(path.read_text())
    for field in ("dataset", "shots", "encoder", "evaluation", "settings", "systems"):
        if earlier.get(field) != result[field]:
            sys.exit(f"few_shot.py: error: --resume: {path} has {field}={earlier.get(field)!r}, this run "
                     f"{result[field]!r}; use the same options or another --output")
    rows = [row for row in earlier["per_seed"] if all(row.get(name) is not None for name in result["systems"])]
    result["per_seed"] = rows
    result["command"] = f"{earlier['command']} ; {result['command']}"
    result["seeds"] = sorted({row["seed"] for row in rows} | set(result["seeds"]))
    for name in result["systems"]:
        result[name] = summary(rows, name)
    return {row["seed"] for row in rows}


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1,2,3,4") from None


def compared(text: str) -> list[str]:
    names = [c for c in text.split(",") if c]
    if any(c != "setfit" for c in names):
        raise argparse.ArgumentTypeError(f"{text!r}: the only system to compare with is 'setfit'")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="sst2", choices=["sst2", "ag_news", "amazon_books"])
    parser.add_argument("--shots", type=positive_int, default=8, help="examples per class")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--compare", type=compared, default=[], help="comma list; 'setfit' adds SetFit")
    parser.add_argument("--output", required=True)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--eval-rows", type=int, default=None, help="score a fixed seeded subset (default: all)")
    parser.add_argument("--strategy", default="top_k")
    parser.add_argument("--top-k", type=int, default=6, help="with --strategy top_k: layers tuned (MiniLM has 6)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--head-learning-rate", type=float, default=1e-2)
    parser.add_argument("--pairs-per-example", type=int, default=20)
    parser.add_argument("--skip-plain", action="store_true", help="leave out the plain fine-tuning row")
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds OUTPUT/few_shot.json already holds (same settings) and run the rest: "
                             "a long table can be finished over several runs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the few_shot.json an earlier run left in --output (without --resume or "
                             "--overwrite an existing one is refused)")
    parser.add_argument("--head", default="linear", choices=["linear", "prototype"],
                        help="nlptl's head: a new linear classifier, or trainable prototypes from the shots")
    parser.add_argument("--label-examples", action="store_true",
                        help="every system also trains on the label sentences of the zero-shot template and "
                             "descriptions ('This movie review is great.' -> positive) beside the shots")
    args = parser.parse_args(argv)
    out = Path(args.output)
    try:
        check_results_table(out / "few_shot.json", args.resume, args.overwrite)
    except (FileExistsError, ValueError) as e:
        sys.exit(f"few_shot.py: error: {e}")

    bench = load_benchmark(args.dataset, args.data_dir, args.eval_rows)
    seeds = args.seeds
    systems = ["nlptl"] + ([] if args.skip_plain else ["plain_fine_tune"]) + args.compare
    settings = {k: getattr(args, k) for k in ("strategy", "top_k", "epochs", "batch_size", "learning_rate",
                                              "head_learning_rate", "pairs_per_example", "head")}
    if args.label_examples:  # only when on, so tables made before the option still --resume
        settings["label_examples"] = True
    # each system at its default precision: nlptl's "auto" (bf16 autocast where native), SetFit float32
    settings["mixed_precision"] = resolve_precision("auto", default_device_type())
    result = {"dataset": args.dataset, "shots": args.shots, "seeds": seeds, "encoder": args.encoder,
              "evaluation": bench.note, "settings": settings, "systems": systems,
              "command": "python " + " ".join(sys.argv if argv is None else ["recipes/few_shot.py", *argv]),
              "per_seed": []}
    errors: dict[str, str] = {}
    done = resumed(out / "few_shot.json", result) if args.resume else set()
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        if seed in done:
            continue
        shots = sample_shots(bench.pool, args.shots, seed)
        if args.label_examples:  # every system trains on the same rows
            shots = add_label_sentences(shots, bench.template, bench.descriptions)
        row = {"seed": seed}
        first = seed % len(systems)  # by seed number, so a --resume run of seed 3 orders them as a full run would
        for name in systems[first:] + systems[:first]:  # take turns going first
            if name in errors:
                continue
            try:
                if name == "setfit":
                    accuracy, seconds, cpu = setfit_system(bench, shots, seed, args)
                else:
                    accuracy, seconds, cpu = nlptl_system(bench, shots, seed, args, contrastive=name == "nlptl")
            except Exception as error:  # SetFit is optional and may not run on this transformers version
                if name != "setfit":
                    raise
                errors[name] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
                continue
            row.update({name: accuracy, f"{name}_seconds": seconds, f"{name}_cpu_seconds": cpu})
            print(json.dumps({"seed": seed, "system": name, "accuracy": accuracy, "seconds": seconds}), flush=True)
        result["per_seed"].append(row)
        for name in systems:
            result[name] = {**summary(result["per_seed"], name), **({"error": errors[name]} if name in errors else {})}
        write(out, result)
    print(json.dumps({name: result[name] for name in systems}))


if __name__ == "__main__":
    main()
